"""Optional columns for ``model.summary(columns=[...])``: kernel shape, MACs, field, memory.

``summary_columns(model, names)`` returns ``(title, fn(layer) -> str)`` pairs that
``convlens.summary`` prints after Keras's columns.
"""

from __future__ import annotations

from collections.abc import Callable

from convlens.explain.cost import format_bytes, layer_cost
from convlens.explain.receptive_field import receptive_fields

COLUMN_NAMES = ("kernel", "macs", "receptive_field", "memory")
TITLES = {
    "kernel": "Kernel",
    "macs": "MACs",
    "receptive_field": "Receptive field",
    "memory": "Act. memory",
}


def kernel_text(layer) -> str:
    """``(3, 3, 32, 64)``; both kernels for a separable conv; empty without a kernel."""
    depthwise = getattr(layer, "depthwise", None)
    pointwise = getattr(layer, "pointwise", None)
    if depthwise is not None and pointwise is not None and depthwise.kernel is not None:
        return f"{tuple(depthwise.kernel.shape)} + {tuple(pointwise.kernel.shape)}"
    kernel = getattr(layer, "kernel", None)
    return "" if kernel is None else str(tuple(kernel.shape))


def summary_columns(model, names) -> list[tuple[str, Callable]]:
    """The ``(title, fn)`` pairs for ``names`` (a subset of ``COLUMN_NAMES``)."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in COLUMN_NAMES]
    if unknown:
        raise ValueError(
            f"Unknown summary column(s): {', '.join(repr(n) for n in unknown)}. Allowed: "
            f"{', '.join(repr(n) for n in COLUMN_NAMES)}."
        )
    fields = {}
    if "receptive_field" in names and model.built:
        fields = {id(layer): f for layer, f in zip(model.layers, receptive_fields(model))}

    def macs(layer) -> str:
        value = layer_cost(layer).macs
        return "?" if value is None else f"{value:,}"

    def memory(layer) -> str:
        return format_bytes(layer_cost(layer).memory_bytes)

    def field(layer) -> str:
        found = fields.get(id(layer))
        return "?" if found is None else found.describe()

    functions = {"kernel": kernel_text, "macs": macs, "receptive_field": field,
                 "memory": memory}
    return [(TITLES[n], functions[n]) for n in names]
