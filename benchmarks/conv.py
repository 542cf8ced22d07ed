"""convlens conv kernels against torch.nn.functional.conv2d, measured in one run.

Run: ``python benchmarks/conv.py [--threads N] [--repeats R] [--chunk-bytes B ...]``

Layers are the two convolutions of the seed MNIST model at batch 128, 3x3 kernel, 'valid':
``(128, 28, 28, 1) -> 32`` and ``(128, 26, 26, 32) -> 64``. Data are channels_last NumPy
arrays; torch gets the NHWC array permuted to NCHW (a view with channels_last strides, no
copy) and an OIHW weight. Only the conv call is timed (plus ``backward`` in the second
table). Both libraries use the same thread count. Times are medians of interleaved repeats
after warmup, so background load on a shared machine hits both sides alike.

Forward + backward: layer 1 is a first layer, so neither side computes the input gradient
(torch input without requires_grad, ``need_input_grad=False``); layer 2 computes all three
gradients on both sides.

Measured on a 2-core AMD EPYC (OpenBLAS 0.3.31, torch 2.13 CPU), the machine shared with other
engineers' test runs (load average 0.7-3), so single numbers swing by 2x; the ratios below are
typical of several runs (median ratio / ratio of best times):

    threads  layer   forward           forward + backward
    2        conv1   0.5-1.2 / 0.9-1.4 1.1-1.3 / 1.1-1.5
    2        conv2   0.9-1.0 / 1.0-1.2 0.95-1.05 / 0.75-0.95
    1        conv1   1.4-1.7 / 1.5     ~1.0 / ~0.95
    1        conv2   1.2-1.3 / 1.1-1.3 ~0.92 / ~0.92

Under heavy load (load average > 3 on the 2 cores) 2-thread OpenBLAS collapses far more than
torch (many short GEMM calls each waiting for a descheduled thread): conv2 forward measured
275 ms against torch's 115 ms. Check the printed load average before trusting a run.

Alternatives measured and dropped (1 thread, best of runs):

* C_in=1: elementwise multiply-accumulate over the 9 taps, 25 ms (NumPy's inner loop is only
  32 channels long); as_strided gather into pixel-major (M, 9) patches, 2-3 ms copy vs 0.3 ms
  for 9 contiguous tap copies into tap-major (9, M) read transposed by the GEMM. Adding the
  bias after the GEMM cost a pass over y (3.9 -> 2.3 ms when it rides in the GEMM as a row of
  ones). Chunks below 1 MiB lose (~70 us fixed cost per K=9 GEMM): 256 KiB 5.1 ms, 16 MiB 2.0.
* C_in=32, grad_x: one GEMM (M, 64) @ (64, 288) then col2im from pixel-major columns, 41 + 29 ms;
  nine per-tap GEMMs into tap-major (9, M, 32) slabs then contiguous scatter-adds, 44 + 10 ms
  (kept). A "full" convolution of the padded grad_y with the flipped kernel: 72 ms.
* Patch chunk size for conv2 forward: 1-4 MiB 39-42 ms, 16 MiB 51 ms (1 thread); bigger chunks
  only help under heavy load, where fewer BLAS calls wait less.
* Depthwise (128, 26, 26, 32), 3x3, 'same': the tap multiply-accumulate with the weights tiled
  along the row (inner loop width*C instead of C) went from 25 to 16 ms; torch has a dedicated
  kernel (~2-3 ms), so depthwise stays ~6x behind.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common  # noqa: E402  (must set thread variables before NumPy loads)

LAYERS = [
    ("conv1 (128,28,28,1)->32", (128, 28, 28, 1), 32, False),
    ("conv2 (128,26,26,32)->64", (128, 26, 26, 32), 64, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--chunk-bytes", type=int, nargs="*", default=None)
    args = parser.parse_args()
    threads = _common.set_threads(args.threads)

    import numpy as np
    import torch

    from convlens.ops import conv

    torch.set_num_threads(threads)
    print(_common.describe_threads(threads))
    print(
        "torch input: NHWC array permuted to NCHW (channels_last strides, no copy); "
        "only the conv call is timed"
    )
    print(_common.load_average())
    print(f"median of {args.repeats} interleaved repeats after 3 warmups; 'best' = ratio of minima")
    columns = ["convlens ms", "torch ms", "ratio", "ratio (best)"]
    rng = np.random.default_rng(0)
    for chunk in args.chunk_bytes or [conv.CHUNK_BYTES]:
        conv.CHUNK_BYTES = chunk
        forward_rows, backward_rows = [], []
        for name, shape, filters, input_grad in LAYERS:
            ours_forward, torch_forward, ours_both, torch_both = _contenders(
                rng, shape, filters, input_grad
            )
            (ours, ours_best), (theirs, theirs_best) = _common.interleaved_times(
                [ours_forward, torch_forward], repeats=args.repeats
            )
            forward_rows.append(
                [
                    name,
                    f"{ours:.2f}",
                    f"{theirs:.2f}",
                    f"{ours / theirs:.2f}",
                    f"{ours_best / theirs_best:.2f}",
                ]
            )
            (ours, ours_best), (theirs, theirs_best) = _common.interleaved_times(
                [ours_both, torch_both], repeats=args.repeats
            )
            backward_rows.append(
                [
                    name,
                    "yes" if input_grad else "no",
                    f"{ours:.2f}",
                    f"{theirs:.2f}",
                    f"{ours / theirs:.2f}",
                    f"{ours_best / theirs_best:.2f}",
                ]
            )
        print(f"\nCHUNK_BYTES = {chunk}")
        print("forward")
        print(_common.table(["layer", *columns], forward_rows))
        print("\nforward + backward")
        print(_common.table(["layer", "grad_x", *columns], backward_rows))


def _contenders(rng, shape, filters, input_grad):
    """convlens and torch forward, and forward + backward, on the same data."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from convlens.ops import conv

    x = rng.standard_normal(shape, dtype=np.float32)
    kernel = rng.standard_normal((3, 3, shape[-1], filters), dtype=np.float32) * 0.1
    bias = np.zeros(filters, np.float32)
    out_shape = (shape[0], shape[1] - 2, shape[2] - 2, filters)
    grad_y = rng.standard_normal(out_shape, dtype=np.float32)
    x_t = torch.from_numpy(x).permute(0, 3, 1, 2)  # (N, C, H, W) view of the NHWC array
    w_t = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()  # (O, I, KH, KW)
    b_t = torch.from_numpy(bias)
    g_t = torch.from_numpy(grad_y).permute(0, 3, 1, 2)  # (N, O, H_out, W_out)
    valid = ((0, 0), (0, 0))
    x_g = x_t.detach().requires_grad_(input_grad)
    w_g = w_t.detach().requires_grad_(True)
    b_g = b_t.detach().requires_grad_(True)

    def ours_forward():
        return conv.conv_forward(x, kernel, bias, (1, 1), valid, (1, 1))

    def torch_forward():
        with torch.no_grad():
            return F.conv2d(x_t, w_t, b_t)

    def ours_both():
        _, cache = conv.conv_forward(x, kernel, bias, (1, 1), valid, (1, 1))
        return conv.conv_backward(grad_y, cache, need_input_grad=input_grad)

    def torch_both():
        x_g.grad = w_g.grad = b_g.grad = None
        F.conv2d(x_g, w_g, b_g).backward(g_t)

    return ours_forward, torch_forward, ours_both, torch_both


if __name__ == "__main__":
    main()
