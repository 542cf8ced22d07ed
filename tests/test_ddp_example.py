"""examples/ddp_train.py under torchrun: 2 processes, gloo, CPU, a few steps of DDP training of a
convlens-defined model; the parameters agree across ranks and the convlens model with the
trained weights predicts what the torch module predicts."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convlens.io.keras_format import load_model

torch = pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parent.parent


def test_two_processes_train_the_same_parameters_and_convlens_predicts_as_torch(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node", "2", str(ROOT / "examples" / "ddp_train.py"),
               "--steps", "4", "--batch-size", "16", "--lr", "0.01", "--out", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "largest |convlens - torch|" in run.stdout
    assert "Grad strides do not match" not in run.stderr  # gradients laid out as DDP expects

    rank0, rank1 = (np.load(tmp_path / f"params_rank{r}.npy") for r in (0, 1))
    np.testing.assert_array_equal(rank0, rank1)

    import examples.ddp_train as example
    from convlens import utils

    utils.set_random_seed(0)
    initial = np.concatenate([w.ravel() for w in example.build_model().get_weights()])
    assert rank0.size == initial.size and not np.allclose(rank0, initial)  # it trained

    check = np.load(tmp_path / "check.npz")
    np.testing.assert_allclose(check["convlens"], check["torch"], rtol=1e-5, atol=1e-5)
    model = load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(model.predict(check["x"], verbose=0), check["torch"], rtol=1e-5,
                               atol=1e-5)
