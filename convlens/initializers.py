"""Weight initializers with Keras 3 names, arguments and fan computation.

For a conv kernel ``(*kernel_size, in, out)`` the receptive-field size multiplies
both fans: ``fan_in = in * prod(kernel_size)``, ``fan_out = out * prod(kernel_size)``.
"""

from __future__ import annotations

import math

import numpy as np

from convlens.utils import rng


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    def __call__(self, shape, dtype="float32") -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


class Zeros(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=np.float32)


class Ones(Initializer):
    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=np.float32)


class Constant(Initializer):
    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=np.float32)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype="float32"):
        return _generator(self.seed).normal(self.mean, self.stddev, shape).astype(np.float32)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def __call__(self, shape, dtype="float32"):
        return _generator(self.seed).uniform(self.minval, self.maxval, shape).astype(np.float32)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def __call__(self, shape, dtype="float32"):
        return _truncated_normal(_generator(self.seed), shape, self.mean, self.stddev)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(Initializer):
    """Samples with variance ``scale / n`` where n is fan_in, fan_out or their mean."""

    MODES = ("fan_in", "fan_out", "fan_avg")
    DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        if scale <= 0:
            raise ValueError(f"`scale` must be positive; received: scale={scale!r}.")
        if mode not in self.MODES:
            raise ValueError(f"`mode` must be one of {self.MODES}; received: mode={mode!r}.")
        if distribution not in self.DISTRIBUTIONS:
            raise ValueError(
                f"`distribution` must be one of {self.DISTRIBUTIONS}; "
                f"received: distribution={distribution!r}."
            )
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        generator = _generator(self.seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return generator.uniform(-limit, limit, shape).astype(np.float32)
        if self.distribution == "untruncated_normal":
            return generator.normal(0.0, math.sqrt(variance), shape).astype(np.float32)
        # 0.879... is the stddev of a unit normal truncated to [-2, 2].
        return _truncated_normal(generator, shape, 0.0, math.sqrt(variance) / 0.87962566103423978)

    def get_config(self):
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
        }


class GlorotUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "uniform", seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_avg", "truncated_normal", seed)

    def get_config(self):
        return {"seed": self.seed}


class HeUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "uniform", seed)

    def get_config(self):
        return {"seed": self.seed}


class HeNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(2.0, "fan_in", "truncated_normal", seed)

    def get_config(self):
        return {"seed": self.seed}


class LecunUniform(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "uniform", seed)

    def get_config(self):
        return {"seed": self.seed}


class LecunNormal(VarianceScaling):
    def __init__(self, seed=None):
        super().__init__(1.0, "fan_in", "truncated_normal", seed)

    def get_config(self):
        return {"seed": self.seed}


def _generator(seed) -> np.random.Generator:
    return rng() if seed is None else np.random.default_rng(seed)


def _truncated_normal(generator, shape, mean, stddev) -> np.ndarray:
    values = generator.normal(0.0, 1.0, shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = generator.normal(0.0, 1.0, int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (mean + stddev * values).astype(np.float32)


ALL = {
    "zeros": Zeros,
    "ones": Ones,
    "constant": Constant,
    "random_normal": RandomNormal,
    "random_uniform": RandomUniform,
    "truncated_normal": TruncatedNormal,
    "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform,
    "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform,
    "he_normal": HeNormal,
    "lecun_uniform": LecunUniform,
    "lecun_normal": LecunNormal,
}
_CLASS_NAMES = {cls.__name__: cls for cls in ALL.values()}


def get(identifier) -> Initializer:
    """An initializer from a name (``"glorot_uniform"``), a Keras config dict, or an instance."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        key = identifier if identifier in ALL else identifier.lower()
        if key in ALL:
            return ALL[key]()
        if identifier in _CLASS_NAMES:
            return _CLASS_NAMES[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in _CLASS_NAMES:
        return _CLASS_NAMES[identifier["class_name"]].from_config(identifier.get("config", {}))
    if callable(identifier) and not isinstance(identifier, type):
        return _Callable(identifier)
    raise ValueError(
        f"Unknown initializer: {identifier!r}. Allowed names: {', '.join(sorted(ALL))}; "
        "or pass an initializer object."
    )


class _Callable(Initializer):
    def __init__(self, fn):
        self.fn = fn

    def __call__(self, shape, dtype="float32"):
        return np.asarray(self.fn(shape, dtype), dtype=np.float32)


def serialize(initializer: Initializer) -> dict:
    return {"module": "keras.initializers", "class_name": type(initializer).__name__,
            "config": initializer.get_config(), "registered_name": None}
