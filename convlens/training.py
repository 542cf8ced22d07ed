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
from convlens import losses, metrics, optimizers, progress, regularizers, weighting
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
        if value is not None and not isinstance(value, (list, tuple)):
            raise ValueError(
                f"`{argument}` must be a list of metric names or functions, e.g. "
                f"{argument}=['accuracy']; received {value!r}."
            )
    loss_weight = weighting.check_loss_weights(loss_weights)
    model.loss = losses.get(loss)
    model.optimizer = optimizers.get(optimizer)
    model.loss_weight = loss_weight
    model.metrics_list = [metrics.resolve(name, model.loss.name) for name in (metric_names or [])]
    plain_names = {name for name, _ in model.metrics_list}
    # Keras logs a weighted metric under its own name, or "weighted_<name>" if a plain metric
    # already has that name (keras.src.trainers.compile_utils.CompileMetrics.result).
    model.weighted_metrics_list = [
        (f"weighted_{name}" if name in plain_names else name, fn)
        for name, fn in (metrics.resolve(m, model.loss.name) for m in (weighted_metrics or []))
    ]
    model.compiled = True


def _check_compiled(model, what: str) -> None:
    if not model.compiled:
        raise ValueError(
            f"You must call compile() before {what}(): e.g. model.compile(optimizer='adam', "
            "loss='sparse_categorical_crossentropy', metrics=['accuracy'])."
        )


def _as_targets(y, n: int, what: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"{what}() needs targets `y` for the inputs `x`.")
    y = np.asarray(y)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise TypeError(f"{what}(): `y` must be numeric; received dtype {y.dtype}.")
    if len(y) != n:
        raise ValueError(
            f"{what}(): x and y must have the same number of samples; received x with {n} "
            f"and y with {len(y)}."
        )
    return y


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


def _validation_tuple(model, validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError(
            "`validation_data` must be a tuple (x_val, y_val) or (x_val, y_val, "
            f"val_sample_weight); received {type(validation_data).__name__}."
        )
    x_val = model.check_input(validation_data[0])
    y_val = _as_targets(validation_data[1], len(x_val), "fit")
    weights = validation_data[2] if len(validation_data) == 3 else None
    weights = weighting.check_sample_weight(weights, len(x_val), "fit", "val_sample_weight")
    return x_val, y_val, weights


def _loss_and_grad(model, y_true, y_pred, sample_weight=None):
    """(loss, gradient wrt the last layer's input to its activation or its output, fused?)."""
    last = model.layers[-1]
    logits = last.pre_activation() if model.loss.fusable_with_softmax else None
    fused = (
        logits is not None
        and getattr(getattr(last, "activation", None), "name", None) == "softmax"
    )
    if fused:
        loss, grad = model.loss.from_logits_fused(y_true, logits, sample_weight)
    else:
        loss, grad = model.loss(y_true, y_pred, sample_weight)
    loss_weight = model.loss_weight
    if loss_weight is not None:  # Keras multiplies the loss itself, so the logged loss too
        loss *= loss_weight
        grad *= grad.dtype.type(loss_weight)
    return loss, grad, fused


def train_step(model, x, y, sample_weight=None) -> tuple[float, np.ndarray]:
    y_pred = model.forward(x, training=True)
    loss, grad, fused = _loss_and_grad(model, y, y_pred, sample_weight)
    model.backward(grad, pre_activation=fused)
    loss += regularizers.penalty(model, add_gradients=True)  # as Keras adds model.losses
    model.optimizer.apply(model.trainable_weights)
    return loss, y_pred


class _Trackers:
    """The running loss and metrics of one epoch or one evaluate, as Keras keeps them: the
    loss is a mean weighted by batch size (each batch's loss already carries the sample
    weights); ``metrics`` ignore sample weights; ``weighted_metrics`` are weighted means."""

    def __init__(self, model):
        self.loss = metrics.Mean()
        self.plain = [(name, fn, metrics.Mean()) for name, fn in model.metrics_list]
        self.weighted = [(name, fn, metrics.Mean())
                         for name, fn in model.weighted_metrics_list]

    def update(self, loss: float, y_true, y_pred, sample_weight) -> None:
        self.loss.update(loss, len(y_pred))
        for _, fn, tracker in self.plain:
            tracker.update(float(np.mean(fn(y_true, y_pred))), len(y_pred))
        for _, fn, tracker in self.weighted:
            tracker.update_state(fn(y_true, y_pred), sample_weight)

    def logs(self) -> dict:
        logs = {name: tracker.result() for name, _, tracker in self.plain + self.weighted}
        logs["loss"] = self.loss.result()
        return dict(sorted(logs.items()))

    def values(self) -> list:
        """evaluate()'s list, in Keras's ``_flatten_metrics_in_order``: the loss, then each
        metric by its own name (a weighted metric renamed ``weighted_<name>`` is looked up as
        ``<name>``, so Keras repeats the plain value), then the logs not yet named, sorted."""
        logs = self.logs()
        plain_names = {name for name, _, _ in self.plain}
        names = ["loss"] + [name for name, _, _ in self.plain] + [
            name.removeprefix("weighted_") if name.removeprefix("weighted_") in plain_names
            else name for name, _, _ in self.weighted
        ]
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


def _check_one_input_and_output(model, what: str) -> None:
    """Training reads one input array and one target array (several: a clear refusal)."""
    for side in ("input", "output"):
        shape = getattr(model, f"{side}_shape")
        if isinstance(shape, list):
            raise ValueError(
                f"{what}() trains models with one input and one output; model "
                f"'{model.name}' has {len(shape)} {side}s. predict() takes several; to train, "
                f"build a model with one {side} (e.g. concatenate the {side}s)."
            )


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
    _check_one_input_and_output(model, "fit")
    x = model.check_input(x)
    y = _as_targets(y, len(x), "fit")
    sample_weight = weighting.check_sample_weight(sample_weight, len(x), "fit")
    if class_weight is not None and sample_weight is not None:
        raise ValueError(
            "fit(): pass either `sample_weight` or `class_weight`, not both (Keras: 'You "
            "cannot `class_weight` and `sample_weight` at the same time')."
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
        split_at = int(math.floor(len(x) * (1.0 - validation_split)))
        if split_at in (0, len(x)):
            raise ValueError(
                f"validation_split={validation_split} of {len(x)} samples leaves "
                f"{split_at} for training and {len(x) - split_at} for validation; both need "
                "at least one."
            )
        # The last samples validate, weights included (Keras's train_validation_split).
        validation_data = (x[split_at:], y[split_at:],
                           None if sample_weight is None else sample_weight[split_at:])
        x, y = x[:split_at], y[:split_at]
        if sample_weight is not None:
            sample_weight = sample_weight[:split_at]
    elif validation_data is not None:
        validation_data = _validation_tuple(model, validation_data)
    model.loss.check_targets(y, model.output_shape)
    if validation_data is not None:
        model.loss.check_targets(validation_data[1], model.output_shape)
        _steps(validation_steps, len(validation_data[0]), validation_batch_size,
               "validation_steps", warn=False)
    if class_weight is not None:  # training samples only: validation stays unweighted
        sample_weight = weighting.class_weight_to_sample_weight(class_weight, y, model)

    steps = max(1, math.ceil(len(x) / batch_size))
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
        order = rng().permutation(len(x)) if shuffle else np.arange(len(x))
        trackers = _Trackers(model)
        logs: dict = {}
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            index = order[step * batch_size:(step + 1) * batch_size]
            x_batch, y_batch = x[index], y[index]
            w_batch = None if sample_weight is None else sample_weight[index]
            loss, y_pred = train_step(model, x_batch, y_batch, w_batch)
            if not np.isfinite(loss):
                logs = {"loss": float(loss)}
                callback_list.on_train_batch_end(step, logs)
                print(
                    f"Epoch {epoch + 1}, step {step + 1}: the loss is {loss}; stopping training.",
                    file=sys.stderr,
                )
                model.stop_training = True
                break
            trackers.update(loss, y_batch, y_pred, w_batch)
            logs = trackers.logs()
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if (validation_data is not None and np.isfinite(logs.get("loss", 0.0))
                and _should_validate(epoch, validation_freq)):
            x_val, y_val, w_val = validation_data
            val_logs = evaluate(model, x_val, y_val, batch_size=validation_batch_size, verbose=0,
                                sample_weight=w_val, steps=validation_steps,
                                callbacks=callback_list, return_dict=True)
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
    x = model.check_input(x)
    y = _as_targets(y, len(x), "evaluate")
    sample_weight = weighting.check_sample_weight(sample_weight, len(x), "evaluate")
    model.loss.check_targets(y, model.output_shape)
    batch_size = _batch_size(batch_size)
    verbose = _verbosity(verbose)
    steps = _steps(steps, len(x), batch_size)
    callback_list = _hooks(callbacks, model, verbose, steps)
    bar = progress.Progbar(steps, verbose=verbose, stateless_metrics=()) if verbose else None
    trackers = _Trackers(model)
    callback_list.on_test_begin()
    for step in range(steps):
        callback_list.on_test_batch_begin(step)
        batch = slice(step * batch_size, (step + 1) * batch_size)
        x_batch, y_batch = x[batch], y[batch]
        w_batch = None if sample_weight is None else sample_weight[batch]
        y_pred = model.forward(x_batch, training=False)
        loss, _ = model.loss(y_batch, y_pred, w_batch)
        if model.loss_weight is not None:
            loss *= model.loss_weight
        loss += regularizers.penalty(model)  # as Keras adds model.losses
        trackers.update(loss, y_batch, y_pred, w_batch)
        logs = trackers.logs()
        callback_list.on_test_batch_end(step, logs)
        if bar is not None:
            bar.update(step + 1, list(logs.items()), finalize=step + 1 == steps)
    callback_list.on_test_end(logs)
    if return_dict:
        return logs
    values = trackers.values()
    return values[0] if len(values) == 1 else values


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
