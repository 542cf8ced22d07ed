"""How explanations write numbers: products, boxes, counts, parameter formulas, weight rows.

Shared by the per-layer derivations (``derivation_conv.py``, ``derivation_core.py``), the
contrast (``contrast.py``) and the explanation objects (``derivation.py``).
"""

from __future__ import annotations


def _prod(values) -> str:
    return "*".join(str(v) for v in values)


def _box(values) -> str:
    return "x".join(str(v) for v in values)


def _count(number: int, word: str, plural: str | None = None) -> str:
    """``_count(1, 'unit')`` -> ``'1 unit'``; ``_count(10, 'unit')`` -> ``'10 units'``."""
    return f"{number:,} {word if number == 1 else plural or word + 's'}"


def _int_or_tuple(values) -> str:
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else str(values)



# ----- weights and parameters --------------------------------------------------------------
def params_formula(weights) -> tuple[str, int, int]:
    """``('3*3*32*64 + 64 = 18,496', 18496, 18496)``: formula, total and trainable count."""
    total = sum(int(w.size) for w in weights)
    trainable = sum(int(w.size) for w in weights if w.trainable)
    if not weights:
        return "0 (no weights)", 0, 0
    shapes = [tuple(w.shape) for w in weights]
    if len(shapes) > 1 and len(set(shapes)) == 1 and len(shapes[0]) == 1:
        text = f"{len(shapes)}*{shapes[0][0]} = {total:,}"
    else:
        text = " + ".join(_prod(s) for s in shapes)
        text = f"{text} = {total:,}" if (len(shapes) > 1 or len(shapes[0]) > 1) else f"{total:,}"
    if trainable != total:
        text += f", of which {trainable:,} trainable"
    return text, total, trainable


def _weights(layer, meanings: dict) -> list[dict]:
    return [
        {"name": w.name, "shape": tuple(w.shape), "size": int(w.size),
         "trainable": bool(w.trainable), "meaning": meanings.get(w.name, "")}
        for w in layer.weights
    ]


def _activation_line(layer) -> list[str]:
    activation = getattr(layer, "activation", None)
    if activation is None or activation.is_linear:
        return []
    if activation.name in ("softmax", "log_softmax"):
        return [f"Then {activation.name} is taken over the last axis (each value depends on "
                "every pre-activation along it)."]
    return [f"Then the activation {activation.name} is applied to each value."]

