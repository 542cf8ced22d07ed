"""The compiled loops themselves (numba), imported only by :func:`convlens.ops.compiled.kernels`.

Read :mod:`convlens.ops.compiled` first: what these loops are for, their layout and why the
indices are unsigned. Each loop is compiled on its first call for the dtypes it receives and
cached on disk (``__pycache__``), so a later process loads it instead of compiling again.
"""

from __future__ import annotations

import numba
import numpy as np

u = numba.uint64
jit = numba.njit(nogil=True, cache=True, boundscheck=False)


@jit
def window(shift, stride, size, out):
    """Outputs ``t`` in ``[lo, hi)`` read input ``t*stride + shift`` inside ``[0, size)``."""
    lo = 0
    if shift < 0:
        lo = (-shift + stride - 1) // stride
    hi = min(out, (size - 1 - shift) // stride + 1) if size - 1 - shift >= 0 else 0
    return lo, max(lo, hi)


@jit
def grouped_forward(x, w, bias, y, groups, n0, n1, sh, sw, dh, dw, ph, pw):
    """``y[n, oh, ow, g*m + q] = bias + sum_taps x[n, ih, iw, g] * w[i, j, g*m + q]``.

    ``x`` ``(N, H, W*G)``, ``w`` ``(kh, kw, G*m)``, ``bias`` ``(G*m,)``, ``y``
    ``(N, Ho, Wo*G*m)``; ``ih = oh*sh + i*dh - ph``, ``iw = ow*sw + j*dw - pw``.
    """
    kh, kw, c_out = w.shape
    mult = c_out // groups
    height, width = x.shape[1], x.shape[2] // groups
    out_h, out_w = y.shape[1], y.shape[2] // c_out
    for n in range(n0, n1):
        for oh in range(out_h):
            yr = y[n, oh]
            for t in range(out_w):
                yb = u(t * c_out)
                for c in range(c_out):
                    yr[yb + u(c)] = bias[u(c)]
            for i in range(kh):
                ih = oh * sh + i * dh - ph
                if ih < 0 or ih >= height:
                    continue
                xr = x[n, ih]
                for j in range(kw):
                    shift = j * dw - pw
                    lo, hi = window(shift, sw, width, out_w)
                    wv = w[i, j]
                    if mult == 1:  # the inner loop runs over the channels
                        for t in range(lo, hi):
                            yb, xb = u(t * c_out), u((t * sw + shift) * groups)
                            for c in range(c_out):
                                yr[yb + u(c)] += xr[xb + u(c)] * wv[u(c)]
                    else:
                        for t in range(lo, hi):
                            yb, xb = u(t * c_out), u((t * sw + shift) * groups)
                            for g in range(groups):
                                s, gb = xr[xb + u(g)], u(g * mult)
                                for q in range(mult):
                                    yr[yb + gb + u(q)] += s * wv[gb + u(q)]


@jit
def grouped_backward(
    x, grad_y, w, grad_x, total, bias_total, groups, n0, n1, sh, sw, dh, dw, ph, pw
):
    """The gradients of :func:`grouped_forward` in one pass over ``grad_y`` ``(N, Ho, Wo*G*m)``.

    The kernel's is added to ``total`` ``(kh, kw, G*m)`` and the bias's to ``bias_total``
    ``(G*m,)``: each output row is summed in the input's dtype (``Wo`` terms) and the rows into
    the totals (float64), so long sums keep their digits. The input's is written to ``grad_x``
    ``(N, H, W*G)``, unless ``grad_x`` holds no samples (``shape[0] == 0``: not wanted).
    """
    kh, kw, c_out = w.shape
    mult = c_out // groups
    height, width = x.shape[1], x.shape[2] // groups
    out_h, out_w = grad_y.shape[1], grad_y.shape[2] // c_out
    with_input = grad_x.shape[0] > 0
    row = np.zeros((kh, kw, c_out), x.dtype)
    bias_row = np.zeros(c_out, x.dtype)
    for n in range(n0, n1):
        if with_input:
            grad_x[n] = 0
        for oh in range(out_h):
            row[:] = 0
            bias_row[:] = 0
            gr = grad_y[n, oh]
            for t in range(out_w):
                yb = u(t * c_out)
                for c in range(c_out):
                    bias_row[u(c)] += gr[yb + u(c)]
            for c in range(c_out):
                bias_total[c] += bias_row[c]
            for i in range(kh):
                ih = oh * sh + i * dh - ph
                if ih < 0 or ih >= height:
                    continue
                xr = x[n, ih]
                gxr = grad_x[n, ih] if with_input else xr  # (xr unused then)
                for j in range(kw):
                    shift = j * dw - pw
                    lo, hi = window(shift, sw, width, out_w)
                    acc, wv = row[i, j], w[i, j]
                    for t in range(lo, hi):
                        yb, xb = u(t * c_out), u((t * sw + shift) * groups)
                        if mult == 1 and with_input:
                            for c in range(c_out):
                                g = gr[yb + u(c)]
                                acc[u(c)] += xr[xb + u(c)] * g
                                gxr[xb + u(c)] += g * wv[u(c)]
                        elif mult == 1:
                            for c in range(c_out):
                                acc[u(c)] += xr[xb + u(c)] * gr[yb + u(c)]
                        else:
                            for g in range(groups):
                                s, gb = xr[xb + u(g)], u(g * mult)
                                back = gxr[xb + u(g)] if with_input else s
                                for q in range(mult):
                                    acc[gb + u(q)] += s * gr[yb + gb + u(q)]
                                    back += gr[yb + gb + u(q)] * wv[gb + u(q)]
                                if with_input:
                                    gxr[xb + u(g)] = back
            for i in range(kh):
                for j in range(kw):
                    for c in range(c_out):
                        total[i, j, c] += row[i, j, c]


@jit
def col2im_add(cols, grad_x, channels, n0, first, kh, kw, sh, sw, dh, dw):
    """Adds every column of a chunk of output rows back onto the input it was read from.

    ``cols`` ``(b, rows, Wo*kh*kw*C)`` holds, per output pixel, one ``C``-vector per tap
    (tap-major, as the Keras kernel orders its rows); ``grad_x`` ``(N, Hp, Wp*C)`` is the
    padded input's gradient. Row ``r`` of sample ``n`` is output row ``first + r`` of
    sample ``n0 + n``; its tap ``(i, j)`` at ``ow`` lands on
    ``grad_x[n0 + n, (first + r)*sh + i*dh, (ow*sw + j*dw)*C + c]``.
    """
    b, rows = cols.shape[0], cols.shape[1]
    taps = kh * kw
    out_w = cols.shape[2] // (taps * channels)
    for n in range(b):
        for r in range(rows):
            cr = cols[n, r]
            for i in range(kh):
                gxr = grad_x[n0 + n, (first + r) * sh + i * dh]
                for ow in range(out_w):
                    for j in range(kw):
                        cb = u((ow * taps + i * kw + j) * channels)
                        xb = u((ow * sw + j * dw) * channels)
                        for c in range(channels):
                            gxr[xb + u(c)] += cr[cb + u(c)]


@jit
def max_pool_forward(x, y, channels, n0, n1, kh, kw, sh, sw, ph, pw):
    """``y[n, oh, ow, c]``: the maximum of ``x[n, ih, iw, c]`` over the window's real cells.

    ``x`` ``(N, H, W*C)``, ``y`` ``(N, Ho, Wo*C)``; a NaN wins, as in ``np.maximum``.
    """
    height, width = x.shape[1], x.shape[2] // channels
    out_h, out_w = y.shape[1], y.shape[2] // channels
    for n in range(n0, n1):
        for oh in range(out_h):
            yr = y[n, oh]
            yr[:] = -np.inf
            for i in range(kh):
                ih = oh * sh + i - ph
                if ih < 0 or ih >= height:
                    continue
                xr = x[n, ih]
                for j in range(kw):
                    shift = j - pw
                    lo, hi = window(shift, sw, width, out_w)
                    for t in range(lo, hi):
                        yb, xb = u(t * channels), u((t * sw + shift) * channels)
                        for c in range(channels):  # stores without a branch vectorise
                            v, best = xr[xb + u(c)], yr[yb + u(c)]
                            yr[yb + u(c)] = v if (v > best) | (v != v) else best


@jit
def max_pool_backward(x, y, grad_y, grad_x, channels, n0, n1, kh, kw, sh, sw, ph, pw):
    """Each output's gradient goes to the first cell, in window order, equal to its maximum."""
    height, width = x.shape[1], x.shape[2] // channels
    out_h, out_w = y.shape[1], y.shape[2] // channels
    still_open = np.empty(y.shape[2], np.bool_)  # outputs of the row without a winner yet
    zero = grad_y.dtype.type(0)
    for n in range(n0, n1):
        grad_x[n] = 0
        for oh in range(out_h):
            yr, gr = y[n, oh], grad_y[n, oh]
            still_open[:] = True
            for i in range(kh):
                ih = oh * sh + i - ph
                if ih < 0 or ih >= height:
                    continue
                xr, gxr = x[n, ih], grad_x[n, ih]
                for j in range(kw):
                    shift = j - pw
                    lo, hi = window(shift, sw, width, out_w)
                    for t in range(lo, hi):
                        yb, xb = u(t * channels), u((t * sw + shift) * channels)
                        for c in range(channels):  # stores without a branch vectorise
                            is_open = still_open[yb + u(c)]
                            wins = is_open & (xr[xb + u(c)] == yr[yb + u(c)])
                            gxr[xb + u(c)] += gr[yb + u(c)] if wins else zero
                            still_open[yb + u(c)] = is_open ^ wins


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def single_channel_forward(xp, w3, bias, y, n0, n1, sh, sw, dh, dw):
    """A convolution of one input channel, taps summed three at a time along each row.

    ``xp`` ``(N, Hp, Wp)`` is the padded input, ``w3`` ``(kh, kw3, C_out)`` the kernel with
    ``kw3`` a multiple of 3 (missing taps are zeros, read from extra padding), ``y``
    ``(N, Ho, Wo*C_out)``. Three taps of a kernel row add into the output row in one pass,
    a multiply-add each (``contract``: fused, so rounding differs from NumPy's by an ulp).
    """
    kh, kw3, c_out = w3.shape
    out_h, out_w = y.shape[1], y.shape[2] // c_out
    for n in range(n0, n1):
        for oh in range(out_h):
            yr = y[n, oh]
            for i in range(kh):
                xr = xp[n, oh * sh + i * dh]
                for j0 in range(0, kw3, 3):
                    w0, w1, w2 = w3[i, j0], w3[i, j0 + 1], w3[i, j0 + 2]
                    first = i == 0 and j0 == 0
                    for t in range(out_w):
                        at = t * sw + j0 * dw
                        s0, s1, s2 = xr[u(at)], xr[u(at + dw)], xr[u(at + 2 * dw)]
                        b = u(t * c_out)
                        if first:
                            for c in range(c_out):
                                yr[b + u(c)] = (
                                    bias[u(c)] + s0 * w0[u(c)] + s1 * w1[u(c)] + s2 * w2[u(c)]
                                )
                        else:
                            for c in range(c_out):
                                yr[b + u(c)] += s0 * w0[u(c)] + s1 * w1[u(c)] + s2 * w2[u(c)]


@numba.njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def single_channel_forward_3x3(xp, w3, bias, y, n0, n1, sh, sw, dh, dw):
    """:func:`single_channel_forward` for a kernel of at most 3x3 taps, ``w3`` ``(3, 3, C)``:
    each output vector is the bias plus its nine products, summed in registers and stored
    once, where the row-by-row loop loads and stores it three times (~20% faster)."""
    c_out = w3.shape[2]
    out_h, out_w = y.shape[1], y.shape[2] // c_out
    w00, w01, w02 = w3[0, 0], w3[0, 1], w3[0, 2]
    w10, w11, w12 = w3[1, 0], w3[1, 1], w3[1, 2]
    w20, w21, w22 = w3[2, 0], w3[2, 1], w3[2, 2]
    for n in range(n0, n1):
        for oh in range(out_h):
            yr = y[n, oh]
            top = oh * sh
            x0, x1, x2 = xp[n, top], xp[n, top + dh], xp[n, top + 2 * dh]
            for t in range(out_w):
                l0, l1, l2 = u(t * sw), u(t * sw + dw), u(t * sw + 2 * dw)
                a0, a1, a2 = x0[l0], x0[l1], x0[l2]
                b0, b1, b2 = x1[l0], x1[l1], x1[l2]
                c0, c1, c2 = x2[l0], x2[l1], x2[l2]
                base = u(t * c_out)
                for c in range(c_out):
                    k = u(c)
                    yr[base + k] = (bias[k] + a0 * w00[k] + a1 * w01[k] + a2 * w02[k]
                                    + b0 * w10[k] + b1 * w11[k] + b2 * w12[k]
                                    + c0 * w20[k] + c1 * w21[k] + c2 * w22[k])


@jit
def adam_update(w, g, m, v, beta_1, keep_1, beta_2, keep_2, alpha, epsilon):
    """Adam's step on flat arrays in one pass: the NumPy path's operations in its order, with
    its scalars (``keep_i = 1 - beta_i``) in the arrays' dtype, so the results are the same
    bits."""
    for k in range(w.size):
        gk = g[k]
        mk = m[k] * beta_1 + gk * keep_1
        vk = v[k] * beta_2 + gk * gk * keep_2
        m[k], v[k] = mk, vk
        w[k] -= (mk * alpha) / (np.sqrt(vk) + epsilon)
