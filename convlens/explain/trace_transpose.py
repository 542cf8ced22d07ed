"""Trace of one Conv2DTranspose output value: the input positions that scatter into it.

A transposed convolution builds an uncropped output of ``(n - 1)*stride + dilation*(k - 1) + 1``
entries per axis, where input position ``i`` adds ``input[i] * kernel[t]`` at uncropped
position ``i*stride + t*dilation`` for every kernel tap ``t``; then ``padding='same'``
(and ``output_padding``) crop it (the crop is in the layer's window record). So output
position ``o`` (uncropped ``p = o + crop_before``) collects one term per pair ``(i, t)`` with
``i*stride + t*dilation = p``, on every axis, for every input channel, plus the bias.
"""

from __future__ import annotations

import itertools

import numpy as np

from convlens.explain.receptive_field import axis_names
from convlens.explain.render import Block, Table
from convlens.explain.trace_values import activation_value
from convlens.explain.trace_window import capped_rows
from convlens.shapes import transposed_full_length


def reaching_pairs(p: int, length: int, kernel: int, stride: int, dilation: int) -> list:
    """Pairs ``(input position i, kernel tap t)`` with ``i*stride + t*dilation == p``."""
    pairs = []
    for tap in range(kernel):
        step, left = divmod(p - tap * dilation, stride)
        if left == 0 and 0 <= step < length:
            pairs.append((step, tap))
    return sorted(pairs)


def trace_transpose(layer, sample, spatial_index, channel) -> dict:
    """The terms of a ``Trace`` of output ``channel`` at ``spatial_index`` (``sample``: (*S, C))."""
    spatial, in_channels = sample.shape[:-1], sample.shape[-1]
    record = layer.window
    crops = record.pads_for(spatial)
    scatter = []
    for axis, o in enumerate(spatial_index):
        n, k = spatial[axis], record.kernel[axis]
        s, d = record.strides[axis], record.dilation[axis]
        before, after = crops[axis]
        full = transposed_full_length(n, k, s, d)
        scatter.append({"output": o, "uncropped": o + before, "crop": (before, after), "kernel": k,
                        "full": full, "stride": s, "dilation": d,
                        "pairs": reaching_pairs(o + before, n, k, s, d)})
    contributors = [{"position": tuple(i for i, _ in combo), "tap": tuple(t for _, t in combo)}
                    for combo in itertools.product(*(a["pairs"] for a in scatter))]
    kernel_all = layer.kernel.value  # (kh, kw, filters, C_in)
    values = np.array([sample[c["position"]] for c in contributors],
                      np.float32).reshape(-1, in_channels)  # (contributors, C_in)
    kernel = np.array([kernel_all[(*c["tap"], channel)] for c in contributors],
                      np.float32).reshape(-1, in_channels)  # (contributors, C_in)
    products = values.astype(np.float64) * kernel  # (contributors, C_in)
    zs = np.zeros(layer.filters)  # every filter's pre-activation here, for the activation
    for c, row in zip(contributors, values.astype(np.float64)):
        zs += kernel_all[c["tap"]].astype(np.float64) @ row  # (filters, C_in) @ (C_in,)
    bias = None
    if layer.use_bias:
        bias = float(layer.bias.value[channel])
        zs += layer.bias.value
    partial = products.sum(axis=0)  # per input channel
    pre = float(partial.sum() + (bias or 0.0))
    zs[channel] = pre
    return dict(window=values, kernel=kernel, contributors=contributors, scatter=scatter,
                input_channels=list(range(in_channels)), partial_sums=partial, bias=bias,
                pre_activation=pre, value=activation_value(layer, zs, channel))


def _axis_line(name: str, axis: dict) -> str:
    o, p, s, d = axis["output"], axis["uncropped"], axis["stride"], axis["dilation"]
    where = f"output {name} {o}" + (f" (uncropped {name} {p})" if p != o else "")
    equation = f"i*{s} + t*{d} = {p}" if d > 1 else f"i*{s} + t = {p}"
    if not axis["pairs"]:
        why = (f"it is one of the zeros appended after the {axis['full']} uncropped {name}s"
               if p >= axis["full"] else f"it falls in a gap between the stride-{s} patches")
        return (f"{where}: no input {name} i and kernel {name} t give `{equation}`; {why}, "
                f"so no input reaches it along the {name}s")
    found = ", ".join(f"i={i} with t={t}" for i, t in axis["pairs"])
    return f"{where}: input {name} i reaches it through kernel {name} t when `{equation}`: {found}"


def transpose_blocks(t) -> list[Block]:
    """Which input positions scatter into this output value, their products, the sums."""
    names = axis_names(len(t.scatter))
    crops = [a["crop"] for a in t.scatter]
    letters = [name[0] for name in names]  # "r", "c"
    starts = ", ".join(f"{name} {letter}*{a['stride']}"
                       for name, letter, a in zip(names, letters, t.scatter))
    patch = "x".join(str(a["kernel"]) for a in t.scatter)
    gaps = ", ".join(f"{a['dilation']} {name}s apart" for name, a in zip(names, t.scatter))
    lines = [f"Each input position ({', '.join(letters)}) adds its values * the kernel into a "
             f"{patch} patch of the output starting at uncropped {starts}"
             + (f" (taps {gaps})" if any(a["dilation"] > 1 for a in t.scatter) else "")
             + "; this value is the sum over the patches that cover it."]
    if any(before or after for before, after in crops):
        full = "x".join(str(a["full"]) for a in t.scatter)
        listed = ", ".join(f"{name}s {c}" for name, c in zip(names, crops))
        appended = (" (a negative 'after' appends that many zeros)"
                    if any(after < 0 for _, after in crops) else "")
        lines.append(f"The uncropped output is {full}; it is cropped by (before, after) "
                     f"{listed}{appended}.")
    lines += [_axis_line(name, axis) for name, axis in zip(names, t.scatter)]
    count = len(t.contributors)
    channels = len(t.input_channels)
    if count:
        lines.append(f"{count} contributing input position(s), each with all {channels} input "
                     f"channel(s): {count}*{channels} = {count * channels} products.")
    else:
        lines.append("No input position covers this output value: only the bias is left.")
    blocks = [Block("Input positions that reach it", lines)]
    if not count:
        return blocks
    filter_index = t.index[t.axis_names.index("channel")]
    products = t.window.astype(np.float64) * t.kernel + 0.0  # + 0.0: no "-0"
    rows = [[str(c["position"]), str(c["tap"]), str(ch), f"{t.window[n, ch]:.6g}",
             f"{t.kernel[n, ch]:.6g}", f"{products[n, ch]:.6g}"]
            for n, c in enumerate(t.contributors) for ch in range(channels)]
    blocks.append(Block("Products", [
        f"kernel[tap, filter {filter_index}, input channel] * input[position, input channel]:"],
        table=Table(["input position", "kernel tap", "input channel", "input value",
                     "kernel weight", "product"], capped_rows(rows, len(rows), "products"))))
    sums = [[str(ch), f"{s:.6g}"] for ch, s in zip(t.input_channels, t.partial_sums)]
    sums = capped_rows(sums, len(sums), "channel(s)")
    blocks.append(Block("Partial sums", [], table=Table(
        ["input channel", f"sum over the {count} position(s)"], sums)))
    return blocks
