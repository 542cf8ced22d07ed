"""compile / fit / evaluate / predict for Sequential, with Keras 3 arguments and logs.

One training step: forward with ``training=True``, the loss and its gradient wrt the
model output (fused with a final softmax when the loss is a cross-entropy, which is
both faster and numerically stable), backward through every layer, optimizer update.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from convlens import callbacks as callbacks_module
from convlens import losses, metrics, optimizers, progress
from convlens.utils import rng


def compile_model(model, optimizer, loss, metric_names, **kwargs) -> None:
    unsupported = {k: v for k, v in kwargs.items() if k not in ("run_eagerly", "jit_compile",
                                                                  "steps_per_execution",
                                                                  "auto_scale_loss")}
    if unsupported:
        raise TypeError(f"compile() got unsupported arguments: {sorted(unsupported)}.")
    if loss is None:
        raise ValueError(
            "compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'. Allowed "
            f"names: {', '.join(losses.NAMES)}."
        )
    model.loss = losses.get(loss)
    model.optimizer = optimizers.get(optimizer)
    model.metrics_list = [metrics.resolve(name, model.loss.name) for name in (metric_names or [])]
    model.compiled = True


def _check_compiled(model, what: str) -> None:
    if not getattr(model, "compiled", False):
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


def _batch_size(batch_size, default: int = 32) -> int:
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
        batch_size <= 0
    ):
        raise ValueError(f"`batch_size` must be a positive int; received {batch_size!r}.")
    return int(batch_size)


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2; received {verbose!r}.")
    return int(verbose)


def _loss_and_grad(model, y_true, y_pred):
    """(loss, gradient wrt the last layer's input to its activation or its output, fused?)."""
    last = model.layers[-1]
    fused = (
        model.loss.fusable_with_softmax
        and getattr(getattr(last, "activation", None), "name", None) == "softmax"
        and getattr(last, "_activation_cache", None) is not None
    )
    if fused:
        logits = last._activation_cache[0]
        loss, grad = model.loss.from_logits_fused(y_true, logits)
        return loss, grad, True
    loss, grad = model.loss(y_true, y_pred)
    return loss, grad, False


def train_step(model, x, y) -> tuple[float, np.ndarray]:
    y_pred = model.forward(x, training=True)
    loss, grad, fused = _loss_and_grad(model, y, y_pred)
    last = model.layers[-1]
    last.skip_activation_grad = fused
    try:
        model.backward(grad)
    finally:
        last.skip_activation_grad = False
    model.optimizer.apply(model.trainable_weights)
    return loss, y_pred


def _metric_logs(model, trackers, loss_tracker) -> dict:
    logs = {name: tracker.result() for name, tracker in trackers}
    logs["loss"] = loss_tracker.result()
    return dict(sorted(logs.items()))


def fit(model, x, y, batch_size=None, epochs=1, verbose="auto", callbacks=None,
        validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
        **kwargs):
    """Train ``model`` like ``keras.Model.fit``; returns a History."""
    if kwargs:
        raise TypeError(f"fit() got unsupported arguments: {sorted(kwargs)}.")
    _check_compiled(model, "fit")
    x = model.check_input(x)
    y = _as_targets(y, len(x), "fit")
    batch_size = _batch_size(batch_size)
    verbose = _verbosity(verbose)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ValueError(f"`epochs` must be a non-negative int; received {epochs!r}.")
    if not 0 <= validation_split < 1:
        raise ValueError(f"`validation_split` must be in [0, 1); received {validation_split!r}.")
    if validation_data is None and validation_split:
        split_at = int(math.floor(len(x) * (1.0 - validation_split)))
        if split_at == 0:
            raise ValueError(
                f"validation_split={validation_split} leaves no training samples out of "
                f"{len(x)}."
            )
        x, x_val, y, y_val = x[:split_at], x[split_at:], y[:split_at], y[split_at:]
        validation_data = (x_val, y_val)
    elif validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("`validation_data` must be a tuple (x_val, y_val).")
        x_val = model.check_input(validation_data[0])
        validation_data = (x_val, _as_targets(validation_data[1], len(x_val), "fit"))
    model.loss.check_targets(y, model.output_shape)
    if validation_data is not None:
        model.loss.check_targets(validation_data[1], model.output_shape)

    steps = max(1, math.ceil(len(x) / batch_size))
    history = callbacks_module.History()
    callback_list = callbacks_module.CallbackList(
        list(callbacks or []) + [history], model=model, verbose=verbose, epochs=epochs,
        steps=steps, add_progbar=verbose != 0,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback_list.on_epoch_begin(epoch)
        order = rng().permutation(len(x)) if shuffle else np.arange(len(x))
        loss_tracker = metrics.Mean()
        trackers = [(name, metrics.Mean()) for name, _ in model.metrics_list]
        logs: dict = {}
        for step in range(steps):
            callback_list.on_train_batch_begin(step)
            index = order[step * batch_size:(step + 1) * batch_size]
            x_batch, y_batch = x[index], y[index]
            loss, y_pred = train_step(model, x_batch, y_batch)
            if not np.isfinite(loss):
                logs = {"loss": float(loss)}
                callback_list.on_train_batch_end(step, logs)
                print(
                    f"Epoch {epoch + 1}, step {step + 1}: the loss is {loss}; stopping training.",
                    file=sys.stderr,
                )
                model.stop_training = True
                break
            loss_tracker.update(loss, len(index))
            for (_, tracker), (_, fn) in zip(trackers, model.metrics_list):
                tracker.update(float(np.mean(fn(y_batch, y_pred))), len(index))
            logs = _metric_logs(model, trackers, loss_tracker)
            callback_list.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        if validation_data is not None and np.isfinite(logs.get("loss", 0.0)):
            val_logs = evaluate(model, *validation_data, batch_size=batch_size, verbose=0,
                                return_dict=True)
            logs.update({f"val_{key}": value for key, value in val_logs.items()})
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)
    model.history = history
    return history


def evaluate(model, x, y, batch_size=None, verbose="auto", return_dict=False, callbacks=None,
             **kwargs):
    """Loss and metrics over ``x``; a scalar, a list ``[loss, *metrics]`` or a dict."""
    if kwargs:
        raise TypeError(f"evaluate() got unsupported arguments: {sorted(kwargs)}.")
    _check_compiled(model, "evaluate")
    x = model.check_input(x)
    y = _as_targets(y, len(x), "evaluate")
    model.loss.check_targets(y, model.output_shape)
    batch_size = _batch_size(batch_size)
    verbose = _verbosity(verbose)
    steps = max(1, math.ceil(len(x) / batch_size))
    bar = progress.Progbar(steps, verbose=verbose, stateless_metrics=()) if verbose else None
    loss_tracker = metrics.Mean()
    trackers = [(name, metrics.Mean()) for name, _ in model.metrics_list]
    for step in range(steps):
        x_batch = x[step * batch_size:(step + 1) * batch_size]
        y_batch = y[step * batch_size:(step + 1) * batch_size]
        y_pred = model.forward(x_batch, training=False)
        loss, _ = model.loss(y_batch, y_pred)
        loss_tracker.update(loss, len(x_batch))
        for (_, tracker), (_, fn) in zip(trackers, model.metrics_list):
            tracker.update(float(np.mean(fn(y_batch, y_pred))), len(x_batch))
        if bar is not None:
            bar.update(step + 1, list(_metric_logs(model, trackers, loss_tracker).items()),
                       finalize=step + 1 == steps)
    logs = _metric_logs(model, trackers, loss_tracker)
    if return_dict:
        return logs
    values = [logs["loss"]] + [logs[name] for name, _ in model.metrics_list]
    return values[0] if len(values) == 1 else values


def predict(model, x, batch_size=32, verbose="auto") -> np.ndarray:
    x = model.check_input(x)
    batch_size = _batch_size(batch_size)
    verbose = _verbosity(verbose)
    steps = max(1, math.ceil(len(x) / batch_size))
    bar = progress.Progbar(steps, verbose=verbose) if verbose else None
    outputs = []
    for step in range(steps):
        outputs.append(model.forward(x[step * batch_size:(step + 1) * batch_size]))
        if bar is not None:
            bar.update(step + 1, [], finalize=step + 1 == steps)
    return np.concatenate(outputs) if outputs else np.zeros((0,) + model.output_shape[1:],
                                                            np.float32)
