"""Write convlens/datasets/mnist_digits.npz: the first five test images of each digit 0-9
from the official MNIST test set (``t10k-*`` IDX files), so the web page and the demo work
offline. Run once from the checkout:

    python scripts/make_digits.py /path/to/mnist    # the folder with t10k-images-idx3-ubyte.gz
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from convlens.datasets.mnist import read_idx
from convlens.fileio import atomic_write

PER_DIGIT = 5
OUT = Path(__file__).resolve().parents[1] / "convlens" / "datasets" / "mnist_digits.npz"


def main(folder: str) -> None:
    images = read_idx(Path(folder) / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(Path(folder) / "t10k-labels-idx1-ubyte.gz")
    # The first PER_DIGIT of each digit, in test-set order: 0..9, then 0..9 again, ...
    chosen = [np.flatnonzero(labels == digit)[:PER_DIGIT] for digit in range(10)]
    order = np.stack(chosen, axis=1).reshape(-1)  # (PER_DIGIT * 10,)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images[order], labels=labels[order],
                        test_indices=order.astype(np.int32))
    atomic_write(OUT, buffer.getvalue())
    print(f"wrote {len(order)} digits to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
