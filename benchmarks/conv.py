"""Conv layers and a CIFAR-size training step: convlens, PyTorch and Keras 3 on torch, each alone.

Run: ``python benchmarks/conv.py [--rounds 3] [--threads N] [--quick]`` (``./dev bench`` runs it).

Contenders, each in its own process (see ``_common``):

* ``convlens``: the public layer call, ``layer(x)`` (forward) and ``layer(x, training=True)``
  then ``layer.backward(grad)`` (forward + backward), NumPy arrays in and out.
* ``torch``: ``torch.nn`` modules in eager mode, in both memory layouts (contiguous NCHW and
  ``channels_last``); the report takes the faster layout per case and names it.
* ``keras``: Keras 3 with ``KERAS_BACKEND=torch``, the API a convlens user would otherwise
  pick: ``layer(x)`` under ``torch.no_grad()`` (what ``predict`` does) and autograd's
  ``backward`` for the gradients; torch tensors in, so no conversion is timed.

Cases: the seed's two layers at batch 128 (3x3 'valid'; the first layer computes no input
gradient, as a first layer in a network), ``DepthwiseConv2D`` 3x3 'same', a strided 'same'
``Conv2D``, a ``Conv2DTranspose``, one training step (forward, backward, Adam) of a CIFAR-size
network, and how conv2's forward time grows with the batch and the image size.

Measured and kept or dropped (CPU time of one thread, AMD EPYC, OpenBLAS 0.3.31 Haswell kernel,
unless said otherwise; the machine shared, so best of repeats):

* Splitting the batch into one part per core, each on its own thread with single-threaded BLAS
  (``convlens.ops.workers``): kept. Under load (load average 11-15 on 2 cores) conv2 forward
  went from 1130-1380 ms to 315-350 ms and its forward + backward from 11-13 s to 1.2-1.5 s,
  because no GEMM waits for a descheduled BLAS helper; on a quiet machine the copies and
  scatters, which NumPy runs on one core, use both.
* Winograd F(2x2, 3x3) for conv2 forward in NumPy (strided-view input transform, 16 batched
  GEMMs, output transform written straight into the output): 56 ms against 51 ms for im2col +
  GEMM; the GEMMs alone took 25 ms (K = 32 input channels runs BLAS at ~50 GFLOPS) but the
  transforms, elementwise passes over 4x4 tiles with 32 contiguous channels, took ~31 ms.
  Dropped. torch (oneDNN) takes 38 ms on one thread for this layer, ~72 GFLOPS, about this
  core's peak, so the GEMM itself (50 ms, ~55 GFLOPS at N = 64 output channels) is most of
  the gap.
* GEMM orientation for conv2 forward, ``(M, 288) @ (288, 64)`` against
  ``(64, 288) @ (288, M)``: 52-61 against 55-65 GFLOPS, within noise, and the second needs a
  transpose of the output. Dropped.
* Adam with two preallocated scratch buffers instead of temporaries, on the 9216x128 kernel:
  3.3 against 3.5 ms. Within noise; dropped.
* C_in = 1: elementwise multiply-accumulate over the 9 taps, 25 ms (NumPy's inner loop is only
  32 channels long); as_strided gather into pixel-major (M, 9) patches, 2-3 ms copy vs 0.3 ms
  for 9 contiguous tap copies into tap-major (9, M) read transposed by the GEMM (kept). The
  bias rides in the GEMM as a row of ones (3.9 -> 2.3 ms). Chunks below 1 MiB lose (~70 us
  fixed cost per K=9 GEMM).
* C_in = 32, grad_x: one GEMM (M, 64) @ (64, 288) then col2im from pixel-major columns,
  41 + 29 ms; nine per-tap GEMMs into tap-major (9, M, 32) slabs then contiguous scatter-adds,
  44 + 10 ms (kept). A "full" convolution of the padded grad_y with the flipped kernel: 72 ms.
* Patch chunk size for conv2 forward: 1-4 MiB 39-42 ms, 16 MiB 51 ms.
* Depthwise (128, 26, 26, 32), 3x3, 'same': the tap multiply-accumulate with the weights tiled
  along the row (inner loop width*C instead of C) went from 25 to 16 ms; torch has a dedicated
  kernel.
* Depthwise, stride 1, as flat taps (each tap one contiguous slice of the flattened padded
  sample, the weights repeated every C values, junk columns computed and dropped): forward
  22-30 -> 11-13 ms, forward + backward 71-100 -> 33-38 ms (CPU time of one thread, machine
  busy, best chunk of each). Kept. NumPy needs a multiply and an add per tap (17 passes over
  the output at ~0.2 ns per value), so ~10 ms of one core is its floor here; torch's forward
  takes ~3 ms of CPU. Tried and dropped: summing the 9 products with one BLAS gemv (slower),
  numexpr on the 9 shifted views (36-54 ms). numba (not a dependency) ran a plain loop in
  3.9 ms on one thread.
* BatchNormalization training on channels last, as rows of the last two axes with the
  per-channel numbers repeated along them and per-channel sums as BLAS matrix-vector
  products: its share of the CIFAR-size step fell from ~40% to ~15% of the CPU time (step
  947 -> 674 ms on one thread, busy machine, with the split below). Kept.
* ReLU, its gradient, max pooling and BatchNormalization split across the worker threads
  like the convolutions (elementwise passes ran on one core, a quarter of the MNIST
  training's CPU time); the worker threads started once per process instead of per call
  (a hand-off ~20 us against ~100 us for a new thread). Kept; not measurable on the busy
  machine, where the second core was taken.
* Tried and dropped: a thread-split zero padding in place of ``np.pad`` (same CPU time on one
  thread); smaller chunks for conv1's K=10 GEMM (256 KiB-1 MiB: 3-5 ms against 2.1-2.5 ms at
  4-16 MiB on one thread).

Compiled loops (numba, ``convlens/ops/loops.py``; 2 threads, quiet machine, median ms):

* Depthwise (128, 26, 26, 32), 3x3 'same': one pass per output row, all taps adding into the
  row while it is in cache, the padding skipped instead of copied. Forward 8-12 -> 3.1-3.5
  (PyTorch 1.4-1.6), forward + backward 40 -> 9-10 with the three gradients in one pass
  over ``grad_y`` (two passes and a BLAS sum for the bias: 18-19). Kept. How the loop is
  written matters more than anything: a signed index makes numba test it for wraparound and
  LLVM then does not vectorise (28 ms); per-pixel slices of 2-d views, 8.5-30 ms; a running
  row with unsigned flat indices, 3.1.
* Max pooling 2x2 on (128, 24, 24, 64): the backward pass as one loop that keeps, per
  output, whether its winner was found, with branch-free stores (a branchy loop was slower
  than NumPy, 23 against 12): 6.8-7.4 -> 2.4. The forward stays at NumPy's ~2.1. Kept.
* conv2's input gradient: one GEMM per chunk to (M, K*C_in) pixel-major columns (N = 288
  instead of nine GEMMs with N = 32) and a compiled col2im that adds them while they are in
  cache: 43 -> 27. Kept.
* conv1 forward (one input channel): each output vector is the bias plus its nine products,
  summed in registers (multiply-adds fused, ``fastmath={"contract"}``) and stored once:
  2.5 -> 1.1-1.2 (PyTorch 0.9-1.3). Three taps of a kernel row per pass, adding into the
  output row in cache: 1.4-1.6 (kept for kernels larger than 3x3); one tap per pass: 2.9;
  eight scalar accumulators per pixel for the SLP vectoriser: 5.5; a general loop over 3x3
  blocks that starts each row from the bias: no faster than three taps per pass. The
  backward stays on the GEMM (the loop's was 2x slower).
* Each loop runs on the worker threads' batch parts, like the NumPy code; numba compiles it
  on first use and caches it on disk (as closures inside a function, numba missed its cache
  and compiled again in every process, ~4 s; at module level a later process loads it in
  0.3 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common  # noqa: E402

# name, layer kind, input shape (N, H, W, C), layer arguments, with backward, input gradient
LAYER_CASES = [
    ("conv1 forward", "Conv2D", (128, 28, 28, 1), dict(filters=32, kernel_size=3), False, False),
    ("conv1 forward+backward", "Conv2D", (128, 28, 28, 1), dict(filters=32, kernel_size=3),
     True, False),
    ("conv2 forward", "Conv2D", (128, 26, 26, 32), dict(filters=64, kernel_size=3), False, False),
    ("conv2 forward+backward", "Conv2D", (128, 26, 26, 32), dict(filters=64, kernel_size=3),
     True, True),
    ("depthwise 3x3 'same' forward", "DepthwiseConv2D", (128, 26, 26, 32),
     dict(kernel_size=3, padding="same"), False, False),
    ("depthwise 3x3 'same' forward+backward", "DepthwiseConv2D", (128, 26, 26, 32),
     dict(kernel_size=3, padding="same"), True, True),
    ("conv 3x3 stride 2 'same' forward", "Conv2D", (128, 26, 26, 32),
     dict(filters=64, kernel_size=3, strides=2, padding="same"), False, False),
    ("Conv2DTranspose 3x3 stride 2 forward", "Conv2DTranspose", (128, 12, 12, 64),
     dict(filters=32, kernel_size=3, strides=2, padding="same"), False, False),
]
# conv2's layer at other batch sizes and image sizes: convlens and torch only.
GROWTH = [(1, 26), (32, 26), (128, 26), (512, 26), (32, 28), (32, 56), (32, 112)]
CIFAR = "CIFAR-size training step, batch 128"
CONTENDERS = ("convlens", "torch", "keras")


def repeats_for(shape, quick: bool) -> int:
    size = 1
    for n in shape:
        size *= n
    base = 15 if size < 5_000_000 else 5 if size < 20_000_000 else 3
    return max(3, base // 3) if quick else base


# --------------------------------------------------------------------------------------------
# children
# --------------------------------------------------------------------------------------------


def child_convlens(args) -> dict:
    import numpy as np

    import convlens.layers as L
    from convlens.models import Sequential

    rng = np.random.default_rng(0)
    times = {}
    for name, kind, shape, options, backward, input_grad in LAYER_CASES:
        layer = getattr(L, kind)(**options)
        x = rng.standard_normal(shape, dtype=np.float32)
        y = layer(x)
        layer.needs_input_grad = input_grad
        grad = rng.standard_normal(y.shape, dtype=np.float32)
        if backward:
            def run(layer=layer, x=x, grad=grad):
                layer(x, training=True)
                layer.backward(grad)
        else:
            def run(layer=layer, x=x):
                layer(x)
        times[name] = _common.sample_ms(run, repeats_for(shape, args.quick))
    for batch, size in GROWTH:
        layer = L.Conv2D(64, 3)
        x = rng.standard_normal((batch, size, size, 32), dtype=np.float32)
        times[_growth_name(batch, size)] = _common.sample_ms(
            lambda layer=layer, x=x: layer(x), repeats_for(x.shape, args.quick)
        )
    model = Sequential([L.Input((32, 32, 3)), *_cifar_layers(L), L.Dense(10)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.standard_normal((128, 32, 32, 3), dtype=np.float32)
    labels = rng.integers(0, 10, 128)
    times[CIFAR] = _common.sample_ms(lambda: model.train_on_batch(x, labels),
                                     3 if args.quick else 8)
    return {"times": times}


def _cifar_layers(L) -> list:
    """Three blocks of Conv 3x3 'same' - BatchNorm - ReLU - MaxPool (64, 128, 256), Flatten."""
    layers = []
    for filters in (64, 128, 256):
        layers += [L.Conv2D(filters, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
                   L.MaxPooling2D(2)]
    return [*layers, L.Flatten()]


def child_keras(args) -> dict:
    import keras
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    times = {}
    for name, kind, shape, options, backward, input_grad in LAYER_CASES:
        layer = getattr(keras.layers, kind)(**options)
        x = torch.from_numpy(rng.standard_normal(shape, dtype=np.float32))
        with torch.no_grad():
            y = layer(x)
        grad = torch.from_numpy(rng.standard_normal(tuple(y.shape), dtype=np.float32))
        x_grad = x.clone().requires_grad_(input_grad)
        if backward:
            def run(layer=layer, x=x_grad, grad=grad):
                for w in layer.trainable_weights:
                    w.value.grad = None
                x.grad = None
                layer(x).backward(grad)
        else:
            def run(layer=layer, x=x):
                with torch.no_grad():
                    layer(x)
        times[name] = _common.sample_ms(run, repeats_for(shape, args.quick))
    model = keras.Sequential([keras.Input((32, 32, 3)), *_cifar_layers(keras.layers),
                              keras.layers.Dense(10)])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.standard_normal((128, 32, 32, 3), dtype=np.float32)
    labels = rng.integers(0, 10, 128)
    times[CIFAR] = _common.sample_ms(lambda: model.train_on_batch(x, labels),
                                     3 if args.quick else 8)
    return {"times": times}


def child_torch(args) -> dict:
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    times = {}
    for layout in ("NCHW", "channels_last"):
        memory_format = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}[
            layout
        ]

        def prepare(a, memory_format=memory_format):
            # (N, H, W, C) -> (N, C, H, W), stored in the layout under test
            t = torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))
            return t.contiguous(memory_format=memory_format)

        for name, kind, shape, options, backward, input_grad in LAYER_CASES:
            module = _torch_module(nn, kind, shape[-1], options).to(memory_format=memory_format)
            x = prepare(rng.standard_normal(shape, dtype=np.float32))
            with torch.no_grad():
                y = module(x)
            grad = torch.randn(y.shape).contiguous(memory_format=memory_format)
            x_grad = x.clone().requires_grad_(input_grad)
            if backward:
                def run(module=module, x=x_grad, grad=grad):
                    module.zero_grad(set_to_none=True)
                    x.grad = None
                    module(x).backward(grad)
            else:
                def run(module=module, x=x):
                    with torch.no_grad():
                        module(x)
            times[f"{name} [{layout}]"] = _common.sample_ms(run, repeats_for(shape, args.quick))
        for batch, size in GROWTH:
            module = nn.Conv2d(32, 64, 3).to(memory_format=memory_format)
            x = prepare(rng.standard_normal((batch, size, size, 32), dtype=np.float32))

            def run(module=module, x=x):
                with torch.no_grad():
                    module(x)
            times[f"{_growth_name(batch, size)} [{layout}]"] = _common.sample_ms(
                run, repeats_for((batch, size, size, 32), args.quick)
            )
        blocks = []
        for c_in, c_out in ((3, 64), (64, 128), (128, 256)):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out, eps=1e-3),
                       nn.ReLU(), nn.MaxPool2d(2)]
        net = nn.Sequential(*blocks, nn.Flatten(), nn.Linear(256 * 4 * 4, 10))
        net = net.to(memory_format=memory_format)
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
        x = prepare(rng.standard_normal((128, 32, 32, 3), dtype=np.float32))
        labels = torch.from_numpy(rng.integers(0, 10, 128))

        def step(net=net, optimizer=optimizer, x=x, labels=labels):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x), labels).backward()
            optimizer.step()
        times[f"{CIFAR} [{layout}]"] = _common.sample_ms(step, 3 if args.quick else 8)
    return {"times": times}


def _torch_module(nn, kind, c_in, options):
    padding = options.get("padding", "valid")
    stride = options.get("strides", 1)
    k = options["kernel_size"]
    if kind == "Conv2D":
        pad = (k // 2 if padding == "same" else 0)
        if padding == "same" and stride > 1:
            # Keras's 'same' pads the total (k - 1) - (n - 1) % s ... here even sizes need (0, 1)
            return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(c_in, options["filters"],
                                                                         k, stride))
        return nn.Conv2d(c_in, options["filters"], k, stride, pad)
    if kind == "DepthwiseConv2D":
        return nn.Conv2d(c_in, c_in, k, 1, k // 2 if padding == "same" else 0, groups=c_in)
    if kind == "Conv2DTranspose":
        # Keras 'same' with stride 2 on 12 -> 24: crop 0 before, 1 after the full 25
        return nn.ConvTranspose2d(c_in, options["filters"], k, stride, padding=1,
                                  output_padding=1)
    raise ValueError(kind)


def _growth_name(batch: int, size: int) -> str:
    return f"conv2 forward, batch {batch}, {size}x{size}"


# --------------------------------------------------------------------------------------------
# the parent
# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, for development")
    parser.add_argument("--contenders", nargs="*", default=list(CONTENDERS),
                        choices=CONTENDERS)
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        runners = {"convlens": child_convlens, "torch": child_torch, "keras": child_keras}
        _common.child_main(lambda: runners[args.child](args))
        return

    print(_common.header(__doc__.splitlines()[0], args.threads, args.rounds))
    print("command: python benchmarks/conv.py " + " ".join(sys.argv[1:]), flush=True)
    results, load = _common.run_rounds(
        os.path.abspath(__file__), args.contenders, args.rounds, args.threads,
        ["--quick"] if args.quick else [],
    )
    samples = _common.report_run(results, load, args.contenders)
    print(report(samples, args.contenders))


def _best_torch(samples, case):
    """The faster torch layout for ``case``: (summary, layout)."""
    options = []
    for layout in ("NCHW", "channels_last"):
        runs = samples.get("torch", {}).get(f"{case} [{layout}]")
        if runs:
            options.append((_common.summarize(runs), layout))
    return min(options) if options else (None, None)


def report(samples, contenders) -> str:
    lines = ["", "times: median of all samples (range of the per-round medians); "
             "ratio = convlens / other, lower is better"]
    rows = []
    cases = [c[0] for c in LAYER_CASES] + [CIFAR]
    for case in cases:
        ours = _common.summarize(samples["convlens"][case]) if "convlens" in samples else None
        theirs, layout = _best_torch(samples, case)
        keras = _common.summarize(samples["keras"][case]) if "keras" in samples else None
        rows.append([
            case,
            _common.fmt_time(*ours) if ours else "-",
            f"{_common.fmt_time(*theirs)} {layout}" if theirs else "-",
            f"{ours[0] / theirs[0]:.2f}" if ours and theirs else "-",
            _common.fmt_time(*keras) if keras else "-",
            f"{ours[0] / keras[0]:.2f}" if ours and keras else "-",
        ])
    lines.append(_common.table(["case", "convlens", "torch (best layout)", "vs torch",
                                "keras on torch", "vs keras"], rows))
    lines += ["", "how conv2's forward time grows (3x3, 32 -> 64 channels, 'valid'):"]
    rows = []
    for batch, size in GROWTH:
        case = _growth_name(batch, size)
        ours = _common.summarize(samples["convlens"][case]) if "convlens" in samples else None
        theirs, layout = _best_torch(samples, case)
        rows.append([
            batch, f"{size}x{size}",
            _common.fmt_time(*ours) if ours else "-",
            f"{_common.fmt_time(*theirs)} {layout}" if theirs else "-",
            f"{ours[0] / theirs[0]:.2f}" if ours and theirs else "-",
        ])
    lines.append(_common.table(["batch", "image", "convlens", "torch (best layout)", "ratio"],
                               rows))
    if "torch" in samples:
        lines += ["", "torch by layout (median ms, NCHW / channels_last):"]
        for case in cases:
            pair = [samples["torch"].get(f"{case} [{layout}]") for layout in
                    ("NCHW", "channels_last")]
            if all(pair):
                a, b = (statistics.median([t for run in p for t in run]) for p in pair)
                lines.append(f"  {case}: {a:.2f} / {b:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
