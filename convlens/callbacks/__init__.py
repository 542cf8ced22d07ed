"""Callbacks with Keras 3's hooks, arguments, semantics and messages.

The trainer drives a :class:`CallbackList`::

    callbacks = CallbackList(user_callbacks + [history], model=model, add_progbar=verbose != 0,
                             verbose=verbose, epochs=epochs, steps=steps)
    callbacks.on_train_begin()
    for epoch in ...:
        callbacks.on_epoch_begin(epoch)
        for step in ...:
            callbacks.on_train_batch_begin(step)
            ...
            callbacks.on_train_batch_end(step, logs)      # running means so far
        callbacks.on_epoch_end(epoch, logs)               # + val_* entries
        if model.stop_training: break
    callbacks.on_train_end(logs)
"""

from convlens.callbacks.base import Callback, LambdaCallback
from convlens.callbacks.callback_list import CallbackList, History
from convlens.callbacks.early_stopping import EarlyStopping, TerminateOnNaN
from convlens.callbacks.model_checkpoint import ModelCheckpoint
from convlens.callbacks.monitor import MonitorCallback as MonitorCallback
from convlens.callbacks.progbar_logger import ProgbarLogger

__all__ = [
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "ModelCheckpoint",
    "ProgbarLogger",
    "TerminateOnNaN",
]
