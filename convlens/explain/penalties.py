"""What a layer's regularizers and constraints do to training, in words with its numbers.

Each line is computed from the layer: the penalty a regularizer adds to the loss now (the value
``model.losses`` holds), its gradient, and for a constraint the projection applied after each
optimizer step with the norms the weight has now.

>>> import numpy as np
>>> from convlens.layers import Dense
>>> layer = Dense(2, kernel_regularizer="l2", kernel_initializer="ones")
>>> _ = layer(np.ones((1, 3), np.float32))
>>> print(training_rule_lines(layer)[0].split(";")[0])
kernel: penalty `0.01 * sum(kernel^2)` = 0.06 added to the loss
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["training_rule_lines"]


def training_rule_lines(layer) -> list[str]:
    """One line per regularizer (weights, then the output) and per constraint of ``layer``."""
    lines = []
    for variable in layer.weights:
        if variable.regularizer is not None:
            lines.append(_penalty_line(variable))
    activity = layer.activity_regularizer
    if activity is not None:
        last = ("" if layer.activity_loss is None
                else f" (last call: {_number(float(layer.activity_loss))})")
        lines.append(f"output: penalty `{_formula(activity, 'y')}` of each call's output y, "
                     f"divided by the batch size, added to the loss{last}; its gradient joins "
                     "the one arriving at the output")
    for variable in layer.weights:
        if variable.constraint is not None:
            lines.append(_constraint_line(variable))
    return lines


def _number(value: float) -> str:
    return f"{value:.6g}"


def _formula(regularizer, name: str, gradient: bool = False) -> str:
    """``l1 * sum(|w|) + l2 * sum(w^2)``, or its gradient ``l1 * sign(w) + 2*l2 * w``."""
    l1 = f"{_number(regularizer.l1)} * " + (f"sign({name})" if gradient else f"sum(|{name}|)")
    l2 = (f"{_number(2 * regularizer.l2)} * {name}" if gradient
          else f"{_number(regularizer.l2)} * sum({name}^2)")
    terms = [term for term, strength in ((l1, regularizer.l1), (l2, regularizer.l2)) if strength]
    return " + ".join(terms) or "0"


def _penalty_line(variable) -> str:
    name, rule = variable.name, variable.regularizer
    if not variable.trainable:
        return (f"{name}: penalty `{_formula(rule, name)}`, not counted while the weight is "
                "frozen (Keras penalises trainable weights only)")
    value = _number(float(rule(variable.value)))
    return (f"{name}: penalty `{_formula(rule, name)}` = {value} added to the loss; its "
            f"gradient `{_formula(rule, name, gradient=True)}` joins {name}'s")


def _vectors(variable, axis) -> tuple[str, np.ndarray]:
    """Which vectors a norm constraint measures, and their norms now."""
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    shape = variable.shape
    kept = [size for i, size in enumerate(shape) if i not in {a % len(shape) for a in axes}]
    norms = np.sqrt(np.square(variable.value).sum(axis=axes))
    where = f"axis {axes[0]}" if len(axes) == 1 else f"axes {list(axes)}"
    count = math.prod(kept)
    which = "the vector" if count == 1 else f"each of the {count:,} vectors"
    return f"{which} of {variable.name} along {where}", norms


def _constraint_line(variable) -> str:
    rule = variable.constraint
    config = rule.get_config()
    head = f"{variable.name}: after each optimizer step, "
    kind = type(rule).__name__
    if kind == "NonNeg":
        negative = int((variable.value < 0).sum())
        return head + f"negative entries become 0 ({negative:,} negative now)"
    vectors, norms = _vectors(variable, config["axis"])
    low, high = (_number(float(norms.min())), _number(float(norms.max()))) if norms.size else (
        "-", "-")
    now = f"norm now {low}" if low == high else f"norms now {low} to {high}"
    if kind == "MaxNorm":
        what = f"longer than {config['max_value']} is scaled back to norm {config['max_value']}"
    elif kind == "UnitNorm":
        what = "is scaled to norm 1"
    elif kind == "MinMaxNorm":
        what = (f"has its norm moved {config['rate']} of the way into "
                f"[{config['min_value']}, {config['max_value']}]")
    else:
        return head + f"{kind}({config}) is applied"
    hint = ""
    if len(variable.shape) > 2 and config["axis"] in (0, [0], (0,)):
        # Keras's default axis=0 on a kernel (kh, kw, in, filters) bounds columns of taps.
        hint = (f"; to bound whole filters pass axis={list(range(len(variable.shape) - 1))}")
    return head + f"{vectors} {what} ({now}){hint}"
