"""Optimizers with Keras 3 names, arguments, defaults and update maths, on float32 NumPy.

Each optimizer reads ``variable.grad`` and updates ``variable.value`` in place::

    opt = Adam(learning_rate=1e-3)
    opt.apply(model.trainable_weights)   # after the backward pass filled .grad

Slots (momentums, velocities, ...) are created on the first ``apply``. ``optimizer.variables``
lists them after the iteration counter and the learning rate, in Keras's order, so
``sum(v.size for v in optimizer.variables)`` is the "Optimizer params" count that
``model.summary()`` prints, and the list is the order Keras saves optimizer state in.
"""

from convlens.optimizers.adagrad import Adagrad
from convlens.optimizers.adam import Adam, AdamW
from convlens.optimizers.base import Optimizer, OptimizerVariable, reset_name_counters
from convlens.optimizers.rmsprop import RMSprop
from convlens.optimizers.serialization import deserialize, get, serialize
from convlens.optimizers.sgd import SGD

__all__ = [
    "SGD",
    "Adagrad",
    "Adam",
    "AdamW",
    "Optimizer",
    "OptimizerVariable",
    "RMSprop",
    "deserialize",
    "get",
    "reset_name_counters",
    "serialize",
]
