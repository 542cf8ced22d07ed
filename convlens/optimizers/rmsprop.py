"""RMSprop: the gradient divided by a running root-mean-square."""

from __future__ import annotations

import numpy as np

from convlens.optimizers.base import Optimizer, check_number


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012): divide the gradient by a running root-mean-square.

    ``v = rho v + (1 - rho) g^2``; centered also tracks ``a = rho a + (1 - rho) g`` and
    uses ``v - a^2``; ``increment = lr g / sqrt(denominator + epsilon)``; with momentum
    ``mom = momentum * mom + increment`` and ``w -= mom``, else ``w -= increment``.
    """

    _snake_name = "rm_sprop"

    def __init__(
        self,
        learning_rate: float = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-7,
        centered: bool = False,
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
        check_number("rho", rho, 0.0, 1.0, high_open=True)
        check_number("momentum", momentum, 0.0, 1.0)
        check_number("epsilon", epsilon, 0.0, np.inf, high_open=True)
        super().__init__(
            learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
            ema_momentum, ema_overwrite_frequency, loss_scale_factor,
            gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip
        self.rho = rho
        self.momentum = momentum
        self.epsilon = epsilon
        self.centered = bool(centered)

    def _create_slots(self, variables):
        (self._velocities,) = self._add_slots(variables, ["velocity"])
        self._momentums = []
        if self.momentum > 0:
            (self._momentums,) = self._add_slots(variables, ["momentum"])
        self._average_gradients = []
        if self.centered:
            (self._average_gradients,) = self._add_slots(variables, ["average_gradient"])

    def _update_step(self, gradient, variable, index, learning_rate):
        rho = np.float32(self.rho)
        one = np.float32(1)
        velocity = self._velocities[index].value
        velocity *= rho
        velocity += np.square(gradient) * (one - rho)
        denominator = velocity + np.float32(self.epsilon)
        if self.centered:
            average = self._average_gradients[index].value
            average *= rho
            average += gradient * (one - rho)
            denominator -= np.square(average)
        increment = (gradient * learning_rate) / np.sqrt(denominator)
        if self.momentum > 0:
            momentum = self._momentums[index].value
            momentum *= np.float32(self.momentum)
            momentum += increment
            variable.value -= momentum
        else:
            variable.value -= increment

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }
