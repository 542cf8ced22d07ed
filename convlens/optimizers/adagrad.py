"""Adagrad: the gradient divided by the root of all its past squares."""

from __future__ import annotations

import numpy as np

from convlens.optimizers.base import Optimizer, check_number


class Adagrad(Optimizer):
    """Adagrad: ``acc += g^2``; ``w -= lr g / sqrt(acc + epsilon)``."""

    _snake_name = "adagrad"

    def __init__(
        self,
        learning_rate: float = 0.001,
        initial_accumulator_value: float = 0.1,
        epsilon: float = 1e-7,
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
        check_number(
            "initial_accumulator_value", initial_accumulator_value, 0.0, np.inf, high_open=True
        )
        check_number("epsilon", epsilon, 0.0, np.inf, high_open=True)
        super().__init__(
            learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
            ema_momentum, ema_overwrite_frequency, loss_scale_factor,
            gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon = epsilon

    def _create_slots(self, variables):
        (self._accumulators,) = self._add_slots(
            variables, ["accumulator"], fill=self.initial_accumulator_value
        )

    def _update_step(self, gradient, variable, index, learning_rate):
        accumulator = self._accumulators[index].value
        accumulator += np.square(gradient)
        variable.value -= (gradient * learning_rate) / np.sqrt(
            accumulator + np.float32(self.epsilon)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }
