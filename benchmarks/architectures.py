"""Real architectures: opening ResNet50's .keras file, and predict of ResNet50 and MobileNetV2.

Run: ``python benchmarks/architectures.py [--rounds 3] [--quick]`` (``./dev bench`` runs it).

A setup process builds ``keras.applications.ResNet50`` and ``MobileNetV2`` (``weights=None``,
224x224x3, seeded) and saves them as ``.keras`` files in a temporary folder. Then each
contender runs alone in its own process (``benchmarks/_common.py``):

* convlens: ``convlens.load_model`` + ``summary()``; ``predict`` of a batch of 8;
* Keras 3 on torch: ``keras.saving.load_model`` + ``summary()``; ``predict`` of the same batch;
* PyTorch: the model as a ``torch.nn.Module`` (``convlens.io.to_torch`` of the same file, in
  eval mode, under ``torch.no_grad``), called on the batch (NCHW and channels_last layouts;
  the faster is kept). Opening a file is not timed for it (a torch module has no such file).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

CONTENDERS = ("convlens", "keras", "torch")
MODELS = ("ResNet50", "MobileNetV2")
BATCH, SIZE = 8, 224


def _batch():
    import numpy as np

    return np.random.default_rng(0).random((BATCH, SIZE, SIZE, 3), dtype=np.float32)


def _quiet(function):
    with contextlib.redirect_stdout(io.StringIO()):
        return function()


def child_setup(args) -> dict:
    import keras

    keras.utils.set_random_seed(0)
    for name in MODELS:
        model = getattr(keras.applications, name)(weights=None, input_shape=(SIZE, SIZE, 3))
        model.save(os.path.join(args.folder, f"{name}.keras"))
    return {}


def _child_keras_api(args, load) -> dict:
    """The same measurements for convlens and Keras: both open files with ``load``."""
    times, repeats = {}, 2 if args.quick else 5
    for name in MODELS:
        path = os.path.join(args.folder, f"{name}.keras")
        if name == "ResNet50":
            times["open ResNet50 .keras + summary"] = _common.sample_ms(
                lambda p=path: _quiet(lambda: load(p).summary()), repeats, 1)
        model, x = load(path), _batch()
        times[f"{name} predict, batch {BATCH}"] = _common.sample_ms(
            lambda m=model, x=x: m.predict(x, batch_size=BATCH, verbose=0), repeats, 1)
    return {"times": times}


def child_convlens(args) -> dict:
    import convlens

    return _child_keras_api(args, convlens.load_model)


def child_keras(args) -> dict:
    import keras

    return _child_keras_api(args, keras.saving.load_model)


def child_torch(args) -> dict:
    import torch

    import convlens
    from convlens.io import to_torch

    times, repeats = {}, 2 if args.quick else 5
    for name in MODELS:
        module = to_torch(convlens.load_model(os.path.join(args.folder, f"{name}.keras")))
        x = torch.from_numpy(_batch())  # to_torch takes convlens's NHWC layout
        for layout, fmt in (("NCHW", torch.contiguous_format), ("channels_last",
                                                                  torch.channels_last)):
            module = module.to(memory_format=fmt)

            def call(m=module, x=x):
                with torch.no_grad():
                    return m(x)

            times[f"{name} predict, batch {BATCH} [{layout}]"] = _common.sample_ms(
                call, repeats, 1)
    return {"times": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for development")
    parser.add_argument("--child", choices=(*CONTENDERS, "setup"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runners = {"convlens": child_convlens, "torch": child_torch, "keras": child_keras,
                   "setup": child_setup}
        _common.child_main(lambda: runners[args.child](args))
        return

    print(_common.header(__doc__.splitlines()[0], args.threads, args.rounds))
    print("command: python benchmarks/architectures.py " + " ".join(sys.argv[1:]), flush=True)
    with tempfile.TemporaryDirectory() as folder:
        env = _common.child_env(args.threads, {"KERAS_BACKEND": "torch"})
        start = time.perf_counter()
        _common.run_child([sys.executable, __file__, "--child", "setup", "--folder", folder],
                          env)
        print(f"built the Keras models in {time.perf_counter() - start:.0f} s", flush=True)
        extra = ["--folder", folder] + (["--quick"] if args.quick else [])
        results, load = _common.run_rounds(os.path.abspath(__file__), CONTENDERS, args.rounds,
                                           args.threads, extra)
    samples = _common.report_run(results, load, CONTENDERS)
    print(report(samples))


def report(samples) -> str:
    lines = ["", "times: median of all samples (range of the per-round medians); "
             "ratio = convlens / other, lower is better"]
    rows = []
    for case in samples["convlens"]:
        ours = _common.summarize(samples["convlens"][case])
        keras = _common.summarize(samples["keras"][case])
        torch_options = [(_common.summarize(samples["torch"][key]), key.rsplit("[", 1)[1][:-1])
                         for key in samples["torch"] if key.startswith(case + " [")]
        best = min(torch_options) if torch_options else None
        rows.append([
            case, _common.fmt_time(*ours), _common.fmt_time(*keras),
            f"{ours[0] / keras[0]:.2f}",
            _common.fmt_time(*best[0]) + f" {best[1]}" if best else "-",
            f"{ours[0] / best[0][0]:.2f}" if best else "-",
        ])
    lines.append(_common.table(["case", "convlens", "Keras 3 (torch)", "ratio",
                                "PyTorch", "ratio"], rows))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
