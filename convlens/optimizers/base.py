"""The Optimizer base class and the pieces every optimizer shares.

``Optimizer.apply`` does what all of Keras's optimizers do alike (loss-scale division,
clipping, decoupled weight decay, the iteration counter); a subclass creates its slots in
``_create_slots`` and states its maths in ``_update_step``.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

from convlens import session


def reset_name_counters() -> None:
    """Forget the auto-naming counters: ``convlens.utils.clear_session()`` under its old name."""
    session.current().clear_names()


class OptimizerVariable:
    """A piece of optimizer state (a slot, the iteration counter or the learning rate)."""

    __slots__ = ("value", "name", "path")

    def __init__(self, value: np.ndarray, name: str, path: str):
        self.value = value
        self.name = name
        self.path = path

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def size(self) -> int:
        return int(self.value.size)

    @property
    def dtype(self) -> str:
        return str(self.value.dtype)

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def assign(self, value) -> None:
        array = np.asarray(value, dtype=self.value.dtype)
        if array.shape != self.value.shape:
            raise ValueError(
                f"Cannot assign a value of shape {array.shape} to optimizer variable "
                f"'{self.path}' of shape {self.value.shape}."
            )
        self.value[...] = array

    def __repr__(self) -> str:
        return f"<OptimizerVariable path={self.path}, shape={self.shape}, dtype={self.dtype}>"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name: str, value, low: float, high: float, *, low_open=False, high_open=False):
    """Raise ValueError unless ``value`` is a real number in the stated interval."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    ok = _is_number(value) and bool(np.isfinite(value))
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        high_text = "inf" if high == np.inf else f"{high:g}"
        raise ValueError(
            f"Argument `{name}` must be a number in {left}{low:g}, {high_text}{right}. "
            f"Received: {name}={value!r}"
        )


def _check_optional_positive(name: str, value) -> None:
    if value is not None:
        check_number(name, value, 0.0, np.inf, low_open=True, high_open=True)


class Optimizer:
    """Base class: gradient clipping, weight decay, slots, iteration counter, config.

    Subclasses define ``_slot_names`` handling in ``_create_slots`` and the maths in
    ``_update_step(gradient, variable, index, learning_rate)``.
    """

    _snake_name = "optimizer"

    def __init__(
        self,
        learning_rate: float,
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
        if kwargs.pop("decay", None) is not None:
            warnings.warn(
                "Argument `decay` is no longer supported and will be ignored.", stacklevel=3
            )
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        check_number("learning_rate", learning_rate, 0.0, np.inf, low_open=True, high_open=True)
        if weight_decay is not None:
            check_number("weight_decay", weight_decay, 0.0, np.inf, high_open=True)
        for arg_name, value in (
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
            ("loss_scale_factor", loss_scale_factor),
        ):
            _check_optional_positive(arg_name, value)
        if sum(a is not None for a in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}"
            )
        if use_ema:
            raise ValueError(
                "convlens optimizers do not support `use_ema=True` yet. "
                f"Received: use_ema={use_ema!r}; pass use_ema=False."
            )
        if gradient_accumulation_steps is not None:
            raise ValueError(
                "convlens optimizers do not support gradient accumulation yet. Received: "
                f"gradient_accumulation_steps={gradient_accumulation_steps!r}; pass None."
            )
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a string. Received: name={name!r}")
        self.name = name if name is not None else session.current().unique_name(self._snake_name)
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = loss_scale_factor
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.built = False
        self._iteration = OptimizerVariable(
            np.zeros((), dtype=np.int32), "iteration", f"{self.name}/iteration"
        )
        self._learning_rate = OptimizerVariable(
            np.array(learning_rate, dtype=np.float32), "learning_rate", f"{self.name}/learning_rate"
        )
        self._slots: list[OptimizerVariable] = []
        self._index: dict[int, int] = {}
        self._exclude_ids: set[int] = set()
        self._exclude_names: tuple[str, ...] = ()

    # ---- state ---------------------------------------------------------------------------

    @property
    def iterations(self) -> int:
        """Number of ``apply`` calls so far."""
        return int(self._iteration.value)

    @property
    def learning_rate(self) -> float:
        """The learning rate, stored as float32 exactly as Keras stores it."""
        return float(self._learning_rate.value)

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        # 0 is allowed here so that schedules and callbacks can anneal to zero.
        check_number("learning_rate", value, 0.0, np.inf, high_open=True)
        self._learning_rate.value[...] = value

    @property
    def variables(self) -> list[OptimizerVariable]:
        """Iteration counter, learning rate, then every slot, in Keras's order."""
        return [self._iteration, self._learning_rate, *self._slots]

    def build(self, variables: Sequence) -> None:
        """Create the slots for ``variables`` (called by the first ``apply``)."""
        if self.built:
            return
        variables = list(variables)
        self._index = {id(v): i for i, v in enumerate(variables)}
        self._create_slots(variables)
        self.built = True

    def _add_slots(self, variables: Sequence, slot_names: Sequence[str], fill: float = 0.0):
        """One slot per (variable, name), ordered variable-major as Keras's
        ``add_optimizer_variables`` orders them; returns one list per name."""
        lists: list[list[OptimizerVariable]] = [[] for _ in slot_names]
        for variable in variables:
            stem = str(variable.path).replace("/", "_")
            for column, slot_name in enumerate(slot_names):
                slot = OptimizerVariable(
                    np.full(variable.shape, fill, dtype=np.float32),
                    f"{stem}_{slot_name}",
                    f"{self.name}/{stem}_{slot_name}",
                )
                self._slots.append(slot)
                lists[column].append(slot)
        return lists

    def _create_slots(self, variables: list) -> None:
        pass

    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Exclude variables (objects, or names containing any of ``var_names``) from decay."""
        if self.built:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configured before "
                "the optimizer is built."
            )
        self._exclude_ids = {id(v) for v in (var_list or [])}
        self._exclude_names = tuple(var_names or ())

    # ---- update --------------------------------------------------------------------------

    def apply(self, variables: Iterable) -> None:
        """Update every trainable variable in place from its ``.grad``.

        Variables whose ``grad`` is None are skipped (slots are still created for them, as
        Keras builds slots for every trainable variable). Increments ``iterations``.
        """
        variables = [v for v in variables if getattr(v, "trainable", True)]
        if not variables:
            return
        if not self.built:
            self.build(variables)
        unknown = [v.path for v in variables if id(v) not in self._index]
        if unknown:
            raise ValueError(
                f"Unknown variables {unknown} passed to optimizer '{self.name}', which was "
                "built on a different list of variables. Create a new optimizer for a new model."
            )
        pairs = [(v, v.grad) for v in variables if v.grad is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        targets = [v for v, _ in pairs]
        grads = []
        for variable, grad in pairs:
            grad = np.asarray(grad, dtype=np.float32)
            if grad.shape != variable.shape:
                raise ValueError(
                    f"Gradient of shape {grad.shape} does not match variable '{variable.path}' "
                    f"of shape {variable.shape}."
                )
            grads.append(grad)
        if self.loss_scale_factor is not None:
            grads = [g / np.float32(self.loss_scale_factor) for g in grads]
        grads = self._clip_gradients(grads)
        learning_rate = np.float32(self._learning_rate.value)
        self._apply_weight_decay(targets, learning_rate)
        for variable, grad in zip(targets, grads, strict=True):
            self._update_step(grad, variable, self._index[id(variable)], learning_rate)
        for variable in targets:  # Keras projects constrained weights after the update
            if variable.constraint is not None:
                variable.assign(variable.constraint(variable.value))
        self._iteration.value += 1

    def apply_gradients(self, grads_and_vars) -> int:
        """Keras-style entry point: ``[(grad, variable), ...]``."""
        pairs = list(grads_and_vars)
        for grad, variable in pairs:
            variable.grad = grad
        self.apply([variable for _, variable in pairs])
        return self.iterations

    def _clip_gradients(self, grads: list[np.ndarray]) -> list[np.ndarray]:
        if self.clipnorm:
            clip = np.float32(self.clipnorm)
            clipped = []
            for g in grads:
                norm = np.sqrt(np.sum(np.square(g), dtype=np.float32))
                clipped.append(g * clip / np.maximum(norm, clip))
            return clipped
        if self.global_clipnorm:
            clip = np.float32(self.global_clipnorm)
            norm = np.sqrt(sum(np.sum(np.square(g), dtype=np.float32) for g in grads))
            # A non-finite norm makes the scale NaN, as in Keras.
            scale = clip * np.minimum(np.float32(1) / norm, np.float32(1) / clip) + (norm - norm)
            return [g * np.float32(scale) for g in grads]
        if self.clipvalue:
            value = np.float32(self.clipvalue)
            return [np.clip(g, -value, value) for g in grads]
        return grads

    def _uses_weight_decay(self, variable) -> bool:
        if id(variable) in self._exclude_ids:
            return False
        name = str(getattr(variable, "name", ""))
        return not any(part in name for part in self._exclude_names)

    def _apply_weight_decay(self, variables: list, learning_rate: np.float32) -> None:
        if self.weight_decay is None:
            return
        factor = np.float32(1) - np.float32(self.weight_decay) * learning_rate
        for variable in variables:
            if self._uses_weight_decay(variable):
                variable.value *= factor

    def _update_step(self, gradient, variable, index: int, learning_rate: np.float32) -> None:
        raise NotImplementedError

    # ---- saving --------------------------------------------------------------------------

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Overwrite ``variables`` (same order and shapes) with ``weights``."""
        if not self.built:
            raise ValueError(
                "You are calling `set_weights()` on an optimizer that has not yet been built. "
                "Call `optimizer.build(trainable_variables)` first."
            )
        weights = list(weights)
        if len(weights) != len(self.variables):
            raise ValueError(
                f"Optimizer '{self.name}' has {len(self.variables)} variables; "
                f"received {len(weights)} arrays."
            )
        for variable, weight in zip(self.variables, weights, strict=True):
            variable.assign(weight)

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.variables]

    def save_own_variables(self, store) -> None:
        """Write the state as ``store['0'], store['1'], ...`` (Keras's layout)."""
        for i, variable in enumerate(self.variables):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store) -> None:
        if len(store.keys()) != len(self.variables):
            message = (
                f"Skipping variable loading for optimizer '{self.name}', because it has "
                f"{len(self.variables)} variables whereas the saved optimizer has "
                f"{len(store.keys())} variables. "
            )
            if not self.built:
                message += "This is likely because the optimizer has not been called/built yet."
            warnings.warn(message, stacklevel=2)
            return
        for i, variable in enumerate(self.variables):
            variable.assign(np.asarray(store[str(i)]))

    # ---- config --------------------------------------------------------------------------

    def get_config(self) -> dict:
        """Same keys, order and values as Keras's ``get_config``."""
        return {
            "name": self.name,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> Optimizer:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, learning_rate={self.learning_rate:g}>"
