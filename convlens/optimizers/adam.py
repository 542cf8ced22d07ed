"""Adam and AdamW (Adam with decoupled weight decay)."""

from __future__ import annotations

import numpy as np

from convlens.ops import compiled
from convlens.optimizers.base import Optimizer, check_number


def _flat_views_of_one_dtype(*arrays: np.ndarray) -> bool:
    """True when every array is C-contiguous (``reshape(-1)`` is a view) of the first's dtype."""
    return all(a.flags.c_contiguous and a.dtype == arrays[0].dtype for a in arrays)


class Adam(Optimizer):
    """Adam (Kingma & Ba, arXiv:1412.6980) in Keras's "epsilon hat" form.

    ``m += (1 - beta_1)(g - m)``, ``v += (1 - beta_2)(g^2 - v)``,
    ``w -= lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)``;
    AMSGrad uses the running maximum of ``v``.
    """

    _snake_name = "adam"

    def __init__(
        self,
        learning_rate: float = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
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
        check_number("beta_1", beta_1, 0.0, 1.0, high_open=True)
        check_number("beta_2", beta_2, 0.0, 1.0, high_open=True)
        check_number("epsilon", epsilon, 0.0, np.inf, high_open=True)
        super().__init__(
            learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
            ema_momentum, ema_overwrite_frequency, loss_scale_factor,
            gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.amsgrad = bool(amsgrad)

    def _create_slots(self, variables):
        self._momentums, self._velocities = self._add_slots(variables, ["momentum", "velocity"])
        if self.amsgrad:
            (self._velocity_hats,) = self._add_slots(variables, ["velocity_hat"])

    def _update_step(self, gradient, variable, index, learning_rate):
        one = np.float32(1)
        beta_1, beta_2 = np.float32(self.beta_1), np.float32(self.beta_2)
        step = np.float32(self.iterations + 1)
        alpha = learning_rate * np.sqrt(one - beta_2**step) / (one - beta_1**step)
        m = self._momentums[index].value
        v = self._velocities[index].value
        w = variable.value
        if not self.amsgrad and _flat_views_of_one_dtype(w, m, v) and compiled.available():
            # One pass instead of a dozen over the weights: the same operations, in order.
            scalars = (beta_1, one - beta_1, beta_2, one - beta_2, alpha, self.epsilon)
            compiled.kernels().adam_update(
                w.reshape(-1), np.ascontiguousarray(gradient, w.dtype).reshape(-1),
                m.reshape(-1), v.reshape(-1), *(w.dtype.type(np.float32(s)) for s in scalars),
            )
            return
        m *= beta_1
        m += gradient * (one - beta_1)
        v *= beta_2
        v += np.square(gradient) * (one - beta_2)
        if self.amsgrad:
            v_hat = self._velocity_hats[index].value
            np.maximum(v_hat, v, out=v_hat)
            v = v_hat
        variable.value -= (m * alpha) / (np.sqrt(v) + np.float32(self.epsilon))

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay: ``w *= 1 - weight_decay * lr`` before each step."""

    _snake_name = "adam_w"

    def __init__(
        self,
        learning_rate: float = 0.001,
        weight_decay: float = 0.004,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        amsgrad: bool = False,
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
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
            **kwargs,
        )
