"""Stochastic gradient descent, with optional (Nesterov) momentum."""

from __future__ import annotations

import numpy as np

from convlens.optimizers.base import Optimizer, OptimizerVariable, check_number


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum.

    ``velocity = momentum * velocity - learning_rate * g``; then ``w += velocity``, or with
    Nesterov ``w += momentum * velocity - learning_rate * g``. Without momentum,
    ``w -= learning_rate * g``.
    """

    _snake_name = "sgd"

    def __init__(
        self,
        learning_rate: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str | None = None,
        **kwargs,
    ):
        check_number("momentum", momentum, 0.0, 1.0)
        super().__init__(
            learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
            ema_momentum, ema_overwrite_frequency, loss_scale_factor,
            gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        self.momentums: list[OptimizerVariable] = []

    def _create_slots(self, variables):
        if self.momentum != 0:
            (self.momentums,) = self._add_slots(variables, ["momentum"])

    def _update_step(self, gradient, variable, index, learning_rate):
        if self.momentum == 0:
            variable.value -= gradient * learning_rate
            return
        momentum = np.float32(self.momentum)
        velocity = self.momentums[index].value
        velocity *= momentum
        velocity -= gradient * learning_rate
        if self.nesterov:
            variable.value -= gradient * learning_rate
            variable.value += velocity * momentum
        else:
            variable.value += velocity

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
