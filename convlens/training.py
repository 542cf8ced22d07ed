"""compile / fit / evaluate / predict for Sequential, with Keras 3 arguments and logs.

One training step: forward with ``training=True``, the loss and its gradient wrt the
model output (fused with a final softmax when the loss is a cross-entropy, which is
both faster and numerically stable), backward through every layer, optimizer update.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np

from convlens import callbacks as callbacks_module
from convlens import losses, metrics, optimizers, outputs, progress, regularizers, weighting
from convlens.utils import rng

# Keras compile() arguments that change nothing for an eager float32 NumPy engine.
_NO_OP_COMPILE_ARGUMENTS = ("run_eagerly", "jit_compile", "auto_scale_loss")


def compile_model(model, optimizer, loss, metric_names, loss_weights=None,
                  weighted_metrics=None, steps_per_execution=1, **kwargs) -> None:
    unsupported = sorted(k for k in kwargs if k not in _NO_OP_COMPILE_ARGUMENTS)
    if unsupported:
        raise TypeError(f"compile() got unexpected keyword arguments: {unsupported}.")
    if steps_per_execution != 1:
        raise ValueError(
            "convlens runs one training step per execution; steps_per_execution="
            f"{steps_per_execution!r} is not supported (use 1, the default)."
        )
    if loss is None:
        raise ValueError(
            "compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'. Allowed "
            f"names: {', '.join(losses.NAMES)}."
        )
    for argument, value in (("metrics", metric_names), ("weighted_metrics", weighted_metrics)):
        if value is not None and not isinstance(value, (list, tuple, dict)):
            raise ValueError(
                f"`{argument}` must be a list of metric names or functions, e.g. "
                f"{argument}=['accuracy'] (or, for several outputs, a dict keyed by output "
                f"name); received {value!r}."
            )
    heads = outputs.resolve_heads(model, loss, loss_weights, metric_names, weighted_metrics)
    model.heads = heads
    model.optimizer = optimizers.get(optimizer)
    if len(heads) == 1:
        model.loss, model.loss_weight = heads[0].loss, heads[0].loss_weight
        model.weighted_metrics_list = [(logged, fn) for logged, _, fn in heads[0].weighted_metrics]
    else:  # Keras's model.loss/loss_weights: one entry per output
        model.loss = [head.loss for head in heads]
        model.loss_weight = [head.loss_weight for head in heads]
        model.weighted_metrics_list = [(name, fn) for head in heads
                                       for _, name, fn in head.weighted_metrics]
    # The metrics' own names (unprefixed), which EarlyStopping's mode='auto' looks up as
    # Keras does (it finds 'accuracy', not 'out_accuracy').
    model.metrics_list = [(name, fn) for head in heads for _, name, fn in head.metrics]
    model.compiled = True


def _check_compiled(model, what: str) -> None:
    if not model.compiled:
        raise ValueError(
            f"You must call compile() before {what}(): e.g. model.compile(optimizer='adam', "
            "loss='sparse_categorical_crossentropy', metrics=['accuracy'])."
        )


def _batch_size(batch_size, default: int = 32, name: str = "batch_size") -> int:
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size <= 0
    ):
        raise ValueError(f"`{name}` must be a positive int; received {batch_size!r}.")
    return int(batch_size)


def _steps(steps, samples: int, batch_size: int, name: str = "steps", warn: bool = True) -> int:
    """Batches to run: all of them, or the first ``steps`` (Keras warns if there are fewer)."""
    available = max(1, math.ceil(samples / batch_size))
    if steps is None:
        return available
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise ValueError(f"`{name}` must be a positive int or None; received {steps!r}.")
    if steps > available and warn:
        warnings.warn(
            f"{name}={steps} but the {samples} samples make only {available} batches of "
            f"{batch_size}; running {available} (Keras: 'Your input ran out of data').",
            stacklevel=3,
        )
    return min(int(steps), available)


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2; received {verbose!r}.")
    return int(verbose)


def _count(x) -> int:
    """Samples in the checked input(s): one array, or a list for several inputs."""
    return len(x[0]) if isinstance(x, list) else len(x)


def _rows(x, index):
    """Rows ``index`` of the input(s); a list of inputs (or targets) stays a list."""
    return [None if a is None else a[index] for a in x] if isinstance(x, list) else x[index]


def _data(model, x, y, sample_weight, what: str, weight_name: str = "sample_weight"):
    """``(x, ys, weights)``: the checked input(s), one target and one weight array (or None)
    per output."""
    x = model.check_input(x)
    n = _count(x)
    ys = outputs.split_targets(y, model.heads, model, n, what)
    weights = outputs.split_sample_weights(sample_weight, model.heads, n, what, weight_name)
    return x, ys, weights


def _validation_tuple(model, validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(
            "`validation_data` must be a tuple (x_val, y_val) or (x_val, y_val, "
            f"val_sample_weight); received {type(validation_data).__name__}."
        )
    weights = validation_data[2] if len(validation_data) == 3 else None
    return _data(model, validation_data[0], validation_data[1], weights, "fit",
                 "val_sample_weight")


def _output_layers(model) -> list:
    """The layer that produces each output, or None where the trainer must not fuse its
    softmax with the loss: a layer called more than once or producing several outputs, or an
    output that other layers read too (its gradient then sums two kinds)."""
    if getattr(model, "graph", None) is None:
        return [model.layers[-1]]
    read = {id(tensor) for node in model.graph.nodes for tensor in node.inputs}
    layers = [tensor.layer for tensor in model.outputs]
    return [None if id(layer) in model.graph.shared or layers.count(layer) > 1
            or id(tensor) in read else layer
            for tensor, layer in zip(model.outputs, layers)]


def _losses(model, ys, preds, weights, training: bool):
    """(weighted total, each output's own loss or None, gradients, fused flags).

    With ``training``, a cross-entropy after a softmax is fused with it: the gradient is wrt
    the output layer's input to its activation, which is faster and numerically stable."""
    total, values, grads, fused = 0.0, [], [], []
    layers = _output_layers(model) if training else [None] * len(preds)
    for head, layer, y, pred, weight in zip(model.heads, layers, ys, preds, weights):
        if head.loss is None:
            values.append(None), grads.append(None), fused.append(False)
            continue
        logits = None
        if (layer is not None and head.loss.fusable_with_softmax
                and getattr(getattr(layer, "activation", None), "name", None) == "softmax"):
            logits = layer.pre_activation()
        if logits is not None:
            value, grad = head.loss.from_logits_fused(y, logits, weight)
        else:
            value, grad = head.loss(y, pred, weight)
        values.append(value)
        if head.loss_weight is not None:  # Keras weights the total, not the logged own loss
            value = value * head.loss_weight
            grad = grad * grad.dtype.type(head.loss_weight)
        total += value
        grads.append(grad)
        fused.append(logits is not None)
    return total, values, grads, fused


def train_step(model, x, ys, weights):
    """One optimizer step on a batch; (total loss, each output's loss, predictions)."""
    preds = model.forward(x, training=True)
    preds = preds if isinstance(preds, list) else [preds]
    total, values, grads, fused = _losses(model, ys, preds, weights, training=True)
    if len(preds) == 1:
        model.backward(grads[0], pre_activation=fused[0])
    else:
        model.backward(grads, pre_activation=fused)
    total += regularizers.penalty(model, add_gradients=True)  # as Keras adds model.losses
    model.optimizer.apply(model.trainable_weights)
    return total, values, preds


def test_step(model, x, ys, weights):
    preds = model.forward(x, training=False)
    preds = preds if isinstance(preds, list) else [preds]
    total, values, _, _ = _losses(model, ys, preds, weights, training=False)
    total += regularizers.penalty(model)  # as Keras adds model.losses
    return total, values, preds


class _Trackers:
    """The running loss and metrics of one epoch or one evaluate, as Keras keeps them: the
    loss (the weighted total) and each output's own loss are means weighted by batch size
    (each batch's loss already carries the sample weights); ``metrics`` ignore sample
    weights; ``weighted_metrics`` are weighted means."""

    def __init__(self, heads):
        self.loss = metrics.Mean()
        self.own_losses = [(head.loss_log, index, metrics.Mean())
                           for index, head in enumerate(heads) if head.loss_log]
        self.plain = [(logged, name, fn, index, metrics.Mean())
                      for index, head in enumerate(heads) for logged, name, fn in head.metrics]
        self.weighted = [(logged, name, fn, index, metrics.Mean())
                         for index, head in enumerate(heads)
                         for logged, name, fn in head.weighted_metrics]

    def update(self, loss: float, values: list, ys: list, preds: list, weights: list) -> None:
        count = len(preds[0])
        self.loss.update(loss, count)
        for _, index, tracker in self.own_losses:
            tracker.update(values[index], count)
        for _, _, fn, index, tracker in self.plain:
            if ys[index] is not None:
                tracker.update(float(np.mean(fn(ys[index], preds[index]))), count)
        for _, _, fn, index, tracker in self.weighted:
            if ys[index] is not None:
                tracker.update_state(fn(ys[index], preds[index]), weights[index])

    def logs(self) -> dict:
        logs = {name: tracker.result() for name, *_, tracker in
                self.own_losses + self.plain + self.weighted}
        logs["loss"] = self.loss.result()
        return dict(sorted(logs.items()))

    def values(self) -> list:
        """evaluate()'s list, in Keras's ``_flatten_metrics_in_order``: the loss, then each
        metric looked up by the metric's own name (so a weighted metric logged as
        ``weighted_<name>`` repeats the plain value, and a model with several outputs, whose
        metrics are logged as ``<output>_<name>``, finds none), then each output's loss,
        then the logs not yet named, sorted."""
        logs = self.logs()
        names = (["loss"] + [name for _, name, *_ in self.plain + self.weighted]
                 + [name for name, _, _ in self.own_losses])
        return [logs[name] for name in names if name in logs] + [
            logs[key] for key in sorted(logs) if key not in names
        ]


def _should_validate(epoch: int, validation_freq) -> bool:
    if isinstance(validation_freq, (list, tuple)):
        return epoch + 1 in validation_freq
    return (epoch + 1) % validation_freq == 0


def _check_validation_freq(validation_freq) -> None:
    items = validation_freq if isinstance(validation_freq, (list, tuple)) else [validation_freq]
    if not items or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items
    ):
        raise ValueError(
            "`validation_freq` must be a positive int (validate every that many epochs) or a "
            f"list of epoch numbers counted from 1; received {validation_freq!r}."
        )


_UNSUPPORTED_FIT = {
    "steps_per_epoch": "fit() runs over all of x in each epoch; pass fewer samples instead",
}


def fit(model, x, y, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
        sample_weight=None, initial_epoch=0, steps_per_epoch=None, validation_steps=None,
        validation_batch_size=None, validation_freq=1, **kwargs):
    """Train ``model`` like ``keras.Model.fit``; returns a History."""
    if kwargs:
        raise TypeError(f"fit() got unexpected keyword arguments: {sorted(kwargs)}.")
    if steps_per_epoch is not None:
        raise ValueError(
            f"convlens does not support steps_per_epoch={steps_per_epoch!r}: "
            f"{_UNSUPPORTED_FIT['steps_per_epoch']}."
        )
    _check_compiled(model, "fit")
    x, ys, weights = _data(model, x, y, sample_weight, "fit")
    samples = _count(x)
    if class_weight is not None and sample_weight is not None:
        raise ValueError(
            "fit(): pass either `sample_weight` or `class_weight`, not both (Keras: 'You "
            "cannot `class_weight` and `sample_weight` at the same time')."
        )
    if class_weight is not None and len(model.heads) > 1:
        raise ValueError(
            f"fit(): `class_weight` is only supported for models with one output (as in "
            f"Keras); model '{model.name}' has {len(model.heads)}. Pass per-output "
            "`sample_weight` instead, e.g. a dict keyed by output name."
        )
    batch_size = _batch_size(batch_size)
    validation_batch_size = _batch_size(validation_batch_size, batch_size,
                                        "validation_batch_size")
    verbose = _verbosity(verbose)
    _check_validation_freq(validation_freq)
    for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` must be a non-negative int; received {value!r}.")
    if not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1); received {validation_split!r}.")
    if validation_data is None and validation_split:
        split_at = int(math.floor(samples * (1.0 - validation_split)))
        if split_at in (0, samples):
            raise ValueError(
                f"validation_split={validation_split} of {samples} samples leaves "
                f"{split_at} for training and {samples - split_at} for validation; both need "
                "at least one."
            )
        # The last samples validate, weights included (Keras's train_validation_split).
        train, held_out = slice(0, split_at), slice(split_at, samples)
        validation_data = (_rows(x, held_out), _rows(ys, held_out), _rows(weights, held_out))
        x, ys, weights = _rows(x, train), _rows(ys, train), _rows(weights, train)
        samples = split_at
    elif validation_data is not None:
        validation_data = _validation_tuple(model, validation_data)
    outputs.check_targets(model.heads, ys, model)
    if validation_data is not None:
        outputs.check_targets(model.heads, validation_data[1], model)
        _steps(validation_steps, _count(validation_data[0]), validation_batch_size,
               "validation_steps", warn=False)
    if class_weight is not None:  # training samples only: validation stays unweighted
        weights = [weighting.class_weight_to_sample_weight(class_weight, ys[0], model)]

    steps = max(1, math.ceil(samples / batch_size))
    history = callbacks_module.History()
    callback_list = callbacks_module.CallbackList(
        list(callbacks or []) + [history], model=model, verbose=verbose, epochs=epochs,
        steps=steps, add_progbar=verbose != 0,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict = {}  # what on_train_end gets when no epoch runs (epochs <= initial_epoch)
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        order = rng().permutation(samples) if shuffle else np.arange(samples)
        trackers = _Trackers(model.heads)
        logs: dict = {}
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            index = order[step * batch_size:(step + 1) * batch_size]
            y_batch, w_batch = _rows(ys, index), _rows(weights, index)
            loss, values, preds = train_step(model, _rows(x, index), y_batch, w_batch)
            if not np.isfinite(loss):
                logs = {"loss": float(loss)}
                callback_list.on_train_batch_end(step, logs)
                print(
                    f"Epoch {epoch + 1}, step {step + 1}: the loss is {loss}; stopping training.",
                    file=sys.stderr,
                )
                model.stop_training = True
                break
            trackers.update(loss, values, y_batch, preds, w_batch)
            logs = trackers.logs()
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if (validation_data is not None and np.isfinite(logs.get("loss", 0.0))
                and _should_validate(epoch, validation_freq)):
            val_logs = _evaluate(model, *validation_data, batch_size=validation_batch_size,
                                 verbose=0, steps=validation_steps, callbacks=callback_list)[0]
            logs.update({f"val_{key}": value for key, value in val_logs.items()})
            logs = dict(sorted(logs.items()))  # Keras's pythonify_logs sorts epoch logs
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    model.history = history
    return history


def evaluate(model, x, y, batch_size=None, verbose="auto", sample_weight=None, steps=None,
             callbacks=None, return_dict=False, **kwargs):
    """Loss and metrics over ``x``; a scalar, a list ``[loss, *metrics]`` or a dict."""
    if kwargs:
        raise TypeError(f"evaluate() got unexpected keyword arguments: {sorted(kwargs)}.")
    _check_compiled(model, "evaluate")
    x, ys, weights = _data(model, x, y, sample_weight, "evaluate")
    outputs.check_targets(model.heads, ys, model)
    logs, trackers = _evaluate(model, x, ys, weights, batch_size=batch_size, verbose=verbose,
                               steps=steps, callbacks=callbacks)
    return _batch_result(trackers, return_dict)


def _evaluate(model, x, ys, weights, batch_size, verbose, steps, callbacks):
    """(logs, trackers) of checked data: one target and one weight array per output."""
    batch_size = _batch_size(batch_size)
    verbose = _verbosity(verbose)
    steps = _steps(steps, _count(x), batch_size)
    callback_list = _hooks(callbacks, model, verbose, steps)
    bar = progress.Progbar(steps, verbose=verbose, stateless_metrics=()) if verbose else None
    trackers = _Trackers(model.heads)
    callback_list.on_test_begin()
    for step in range(steps):
        callback_list.on_test_batch_begin(step)
        batch = slice(step * batch_size, (step + 1) * batch_size)
        y_batch, w_batch = _rows(ys, batch), _rows(weights, batch)
        loss, values, preds = test_step(model, _rows(x, batch), y_batch, w_batch)
        trackers.update(loss, values, y_batch, preds, w_batch)
        logs = trackers.logs()
        callback_list.on_test_batch_end(step, logs)
        if bar is not None:
            bar.update(step + 1, list(logs.items()), finalize=step + 1 == steps)
    callback_list.on_test_end(logs)
    return logs, trackers


def _hooks(callbacks, model, verbose: int, steps: int):
    """The user's callbacks for evaluate/predict hooks; fit passes its own list through."""
    if isinstance(callbacks, callbacks_module.CallbackList):
        return callbacks
    return callbacks_module.CallbackList(list(callbacks or []), model=model, verbose=verbose,
                                         epochs=1, steps=steps)


def predict(model, x, batch_size=None, verbose="auto", steps=None, callbacks=None) -> np.ndarray:
    x = model.check_input(x)
    batch_size = _batch_size(batch_size)
    verbose = _verbosity(verbose)
    several = isinstance(x, list)  # a model with several inputs
    steps = _steps(steps, len(x[0]) if several else len(x), batch_size)
    callback_list = _hooks(callbacks, model, verbose, steps)
    bar = progress.Progbar(steps, verbose=verbose) if verbose else None
    outputs = []
    callback_list.on_predict_begin()
    for step in range(steps):
        callback_list.on_predict_batch_begin(step)
        rows = slice(step * batch_size, (step + 1) * batch_size)
        outputs.append(model.forward([a[rows] for a in x] if several else x[rows]))
        callback_list.on_predict_batch_end(step, {"outputs": outputs[-1]})
        if bar is not None:
            bar.update(step + 1, [], finalize=step + 1 == steps)
    callback_list.on_predict_end()
    if outputs and isinstance(outputs[0], list):  # several outputs: one array each
        return [np.concatenate(parts) for parts in zip(*outputs)]
    return np.concatenate(outputs) if outputs else np.zeros((0,) + model.output_shape[1:],
                                                            np.float32)


def train_on_batch(model, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
    """One optimizer step on the whole of ``x``, as ``keras.Model.train_on_batch``: the
    metrics start afresh, and the result is evaluate()'s (a scalar, a list or a dict)."""
    _check_compiled(model, "train_on_batch")
    x, ys, weights = _data(model, x, y, sample_weight, "train_on_batch")
    if class_weight is not None:
        if sample_weight is not None or len(model.heads) > 1:
            raise ValueError(
                "train_on_batch(): `class_weight` needs a model with one output and no "
                "`sample_weight` (as in Keras); pass per-sample weights with `sample_weight`."
            )
        weights = [weighting.class_weight_to_sample_weight(class_weight, ys[0], model)]
    outputs.check_targets(model.heads, ys, model)
    trackers = _Trackers(model.heads)
    loss, values, preds = train_step(model, x, ys, weights)
    trackers.update(loss, values, ys, preds, weights)
    return _batch_result(trackers, return_dict)


def test_on_batch(model, x, y=None, sample_weight=None, return_dict=False):
    """The loss and metrics of one batch, as ``keras.Model.test_on_batch``."""
    _check_compiled(model, "test_on_batch")
    x, ys, weights = _data(model, x, y, sample_weight, "test_on_batch")
    outputs.check_targets(model.heads, ys, model)
    trackers = _Trackers(model.heads)
    loss, values, preds = test_step(model, x, ys, weights)
    trackers.update(loss, values, ys, preds, weights)
    return _batch_result(trackers, return_dict)


def _batch_result(trackers, return_dict: bool):
    if return_dict:
        return trackers.logs()
    values = trackers.values()
    return values[0] if len(values) == 1 else values


def predict_on_batch(model, x):
    """The output(s) for ``x`` in one pass, as ``keras.Model.predict_on_batch``."""
    return model.forward(model.check_input(x), training=False)
