"""What compile() sets up per model output, and the per-output arrays fit/evaluate read.

A model with several outputs trains each output against its own target with its own loss,
loss weight and metrics, as Keras 3's ``CompileLoss``/``CompileMetrics``
(``keras.src.trainers.compile_utils``) resolve them:

- ``loss``: one loss for every output, a list with one entry per output, or a dict keyed
  by output name (every output named; ``None`` leaves an output without a loss);
- ``loss_weights``: a list or a dict like ``loss``; the total loss is the weighted sum;
- ``metrics``/``weighted_metrics``: a list with one entry per output (a metric or a list of
  them) or a dict keyed by output name (outputs left out get none). A flat list of another
  length is refused, as Keras refuses it.

The logged names are Keras's: ``loss`` (the weighted total), ``<output>_loss`` (each
output's own, unweighted loss, when more than one output has a loss) and
``<output>_<metric>``. A model with one output keeps its unprefixed names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convlens import losses, metrics, weighting


@dataclass
class Head:
    """One output as the trainer sees it (``name`` is None for a model's only output)."""

    name: str | None
    loss: losses.Loss | None
    loss_weight: float | None = None
    #: ``(logged name, metric name, fn)``; the metric name is what Keras orders evaluate by
    metrics: list = field(default_factory=list)
    weighted_metrics: list = field(default_factory=list)
    #: the name this output's own loss is logged under (``<output>_loss``), or None
    loss_log: str | None = None


def output_names(model) -> list[str]:
    """The names Keras gives a model's outputs: the layers that produce them."""
    if getattr(model, "graph", None) is None:  # a Sequential: one output, its last layer
        return [model.layers[-1].name] if model.layers else [model.name]
    return [tensor.layer.name for tensor in model.outputs]


def _per_output(value, names: list[str], argument: str, model_name: str) -> list:
    """A list/tuple with one entry per output, or a dict keyed by output names, as a list
    in output order (dict entries left out are None)."""
    if isinstance(value, dict):
        unknown = [key for key in value if key not in names]
        if unknown:
            raise ValueError(
                f"compile(): `{argument}` names {unknown}, which are not outputs of model "
                f"'{model_name}'; its outputs are {names}. Key the dict by output name."
            )
        return [value.get(name) for name in names]
    if len(value) != len(names):
        raise ValueError(
            f"compile(): model '{model_name}' has {len(names)} outputs {names}, so `{argument}` "
            f"needs one entry per output (a list of {len(names)}) or a dict keyed by output "
            f"name; received {len(value)} entries: {value!r}."
        )
    return list(value)


def _loss_weights(loss_weights, names: list[str], model_name: str) -> list:
    """One loss weight (or None: 1) per output, from a list or a dict keyed by output name."""
    if loss_weights is None:
        return [None] * len(names)
    if not isinstance(loss_weights, (list, tuple, dict)):
        raise ValueError(
            f"`loss_weights` must match the number of losses: model '{model_name}' has "
            f"{len(names)} outputs {names}, each with its loss, so give a list of "
            f"{len(names)} numbers or a dict keyed by output name; received {loss_weights!r}."
        )
    return [None if value is None else weighting.check_loss_weights(value)
            for value in _per_output(loss_weights, names, "loss_weights", model_name)]


def _loss_or_none(entry) -> losses.Loss | None:
    return None if entry is None else losses.get(entry)


def _flat(entries) -> list:
    """The metrics of a model's only output: a list, possibly nested or a dict by name."""
    if isinstance(entries, dict):
        entries = list(entries.values())
    if not isinstance(entries, (list, tuple)):
        return [] if entries is None else [entries]
    return [m for entry in entries for m in _flat(entry)]


def _metric_entries(entry) -> list:
    if entry is None:
        return []
    return list(entry) if isinstance(entry, (list, tuple)) else [entry]


def resolve_heads(model, loss, loss_weights, metric_names, weighted_metrics) -> list[Head]:
    """One Head per output of ``model`` from compile()'s arguments."""
    names = output_names(model)
    if len(names) == 1:  # Keras also takes the per-output forms, with one entry
        if isinstance(loss, (list, tuple, dict)):
            loss = _per_output(loss, names, "loss", model.name)[0]
        head = Head(None, losses.get(loss), weighting.check_loss_weights(loss_weights))
        plain = [metrics.resolve(m) for m in _flat(metric_names)]
        weighted = [metrics.resolve(m) for m in _flat(weighted_metrics)]
        _name_metrics([head], [plain], [weighted])
        return [head]
    if isinstance(loss, (list, tuple, dict)):
        per_output = [_loss_or_none(e) for e in _per_output(loss, names, "loss", model.name)]
        if isinstance(loss, dict) and set(loss) != set(names):
            missing = [name for name in names if name not in loss]
            raise ValueError(
                f"compile(): the `loss` dict has no entry for {missing}; model '{model.name}' "
                f"has the outputs {names} and Keras needs every one named (give None to train "
                "an output without a loss)."
            )
    else:  # one loss for every output; Keras then takes one loss weight for all of them
        per_output = [losses.get(loss)] * len(names)
        if isinstance(loss_weights, (list, tuple, dict)):
            raise ValueError(
                f"compile(): one loss ({loss!r}) serves the {len(names)} outputs {names}, so "
                "`loss_weights` must be one number (as Keras requires: it must match the "
                f"number of losses); received {loss_weights!r}. To weigh the outputs apart, "
                "give a loss per output: loss=[...] or loss={name: ...}."
            )
        if loss_weights is not None:
            loss_weights = [loss_weights] * len(names)
    if all(entry is None for entry in per_output):
        raise ValueError(f"compile(): every output of model '{model.name}' has loss None; "
                         "give at least one output a loss.")
    weights = _loss_weights(loss_weights, names, model.name)
    heads = [Head(name, entry, weight) for name, entry, weight in zip(names, per_output, weights)]
    if sum(head.loss is not None for head in heads) > 1:
        for head in heads:
            if head.loss is not None:
                head.loss_log = f"{head.name}_loss"
    sets = []
    for argument, value in (("metrics", metric_names), ("weighted_metrics", weighted_metrics)):
        entries = [[]] * len(names) if not value else _per_output(value, names, argument,
                                                                 model.name)
        sets.append([[metrics.resolve(m) for m in _metric_entries(e)] for e in entries])
    _name_metrics(heads, *sets)
    return heads


def _name_metrics(heads: list[Head], plain: list, weighted: list) -> None:
    """Keras's ``CompileMetrics.result`` names: ``<output>_<metric>``, a repeated name gets
    ``_1``, ``_2``...; a weighted metric whose name is taken becomes ``<output>_weighted_<m>``."""
    taken: dict[str, int] = {}

    def unique(name: str) -> str:
        if name not in taken:
            taken[name] = 1
            return name
        index = taken[name]
        taken[name] += 1
        return f"{name}_{index}"

    for head, entries in zip(heads, plain):
        prefix = f"{head.name}_" if head.name else ""
        head.metrics = [(unique(prefix + name), name, fn) for name, fn in entries]
    for head, entries in zip(heads, weighted):
        prefix = f"{head.name}_" if head.name else ""
        head.weighted_metrics = []
        for name, fn in entries:
            logged = prefix + name
            if logged in taken:
                logged = unique(f"{prefix}weighted_{name}")
            else:
                taken[logged] = 1
            head.weighted_metrics.append((logged, name, fn))


# ----- the arrays fit/evaluate read, one per output ------------------------------------------
def split_targets(y, heads: list[Head], model, n: int, what: str) -> list:
    """``y`` as one checked target array per output (None for an output without a loss)."""
    if len(heads) == 1:
        if isinstance(y, dict):
            y = _from_dict(y, output_names(model), model.name, what, "y")[0]
        elif isinstance(y, (list, tuple)) and len(y) == 1 and isinstance(y[0], np.ndarray):
            y = y[0]  # [labels]: the targets of the one output, as Keras takes them
        return [_as_targets(y, n, what, "y")]
    names = [head.name for head in heads]
    if isinstance(y, dict):
        arrays = _from_dict(y, names, model.name, what, "y")
    elif isinstance(y, (list, tuple)) and len(y) == len(heads):
        arrays = list(y)
    else:
        received = (f"a {type(y).__name__} of {len(y)}" if isinstance(y, (list, tuple)) else
                    f"one array of shape {np.shape(y)}" if y is not None else "None")
        raise ValueError(
            f"{what}(): model '{model.name}' has {len(heads)} outputs {names}, so `y` needs "
            f"one target array per output: a list of {len(heads)} in that order or a dict "
            f"keyed by output name; received {received}."
        )
    return [None if head.loss is None and array is None
            else _as_targets(array, n, what, f"y['{head.name}']")
            for head, array in zip(heads, arrays)]


def split_sample_weights(sample_weight, heads: list[Head], n: int, what: str,
                         name: str = "sample_weight") -> list:
    """One ``(N,)`` weight array (or None) per output: a single array weighs every output."""
    if sample_weight is None:
        return [None] * len(heads)
    if len(heads) > 1 and isinstance(sample_weight, (list, tuple, dict)):
        names = [head.name for head in heads]
        if isinstance(sample_weight, dict):
            unknown = [key for key in sample_weight if key not in names]
            if unknown:
                raise ValueError(f"{what}(): `{name}` names {unknown}, which are not outputs; "
                                 f"the outputs are {names}.")
            entries = [sample_weight.get(key) for key in names]
        elif len(sample_weight) == len(heads) and not np.isscalar(sample_weight[0]):
            entries = list(sample_weight)
        else:
            entries = None
        if entries is not None:
            return [weighting.check_sample_weight(w, n, what, f"{name}['{head.name}']")
                    for w, head in zip(entries, heads)]
    weights = weighting.check_sample_weight(sample_weight, n, what, name)
    return [weights] * len(heads)


def _from_dict(values: dict, names: list[str], model_name: str, what: str, argument: str):
    missing = [name for name in names if name not in values]
    unknown = [key for key in values if key not in names]
    if missing or unknown:
        detail = (f"lacks {missing}" if missing else "") + (
            " and " if missing and unknown else "") + (
            f"names {unknown}, which are not outputs" if unknown else "")
        raise ValueError(
            f"{what}(): the `{argument}` dict {detail}; model '{model_name}' has the outputs "
            f"{names}: give one entry per output name."
        )
    return [values[name] for name in names]


def _as_targets(y, n: int, what: str, name: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"{what}() needs targets `{name}` for the inputs `x`.")
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"{what}(): `{name}` must be numeric; received dtype {y.dtype}.")
    if y.ndim == 0 or len(y) != n:
        raise ValueError(
            f"{what}(): x and {name} must have the same number of samples; received x with {n} "
            f"and {name} with {len(y) if y.ndim else 'a scalar'}."
        )
    return y


def check_targets(heads: list[Head], ys: list, model) -> None:
    shapes = model.output_shape if len(heads) > 1 else [model.output_shape]
    for head, y, shape in zip(heads, ys, shapes):
        if head.loss is None:
            continue
        if len(heads) == 1:
            head.loss.check_targets(y, shape)
            continue
        try:
            head.loss.check_targets(y, shape)
        except ValueError as error:
            raise ValueError(f"The targets of output '{head.name}' of model '{model.name}': "
                             f"{error}") from None
