"""Two small Functional models the graph tests share, written once for any Keras-like library
(real Keras or convlens): a residual block on MNIST-sized input and a small U-Net."""

from __future__ import annotations


def residual_block(lib, model_cls, input_fn):
    """28x28x1 -> 10 classes: two 3x3 convs beside a 1x1 shortcut, added, then a classifier."""
    L = lib
    x = input_fn((28, 28, 1), name="image")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="branch_a")(x)
    a = L.Conv2D(6, 3, padding="same", name="branch_b")(a)
    s = L.Conv2D(6, 1, name="shortcut")(x)
    h = L.Activation("relu", name="relu")(L.Add(name="add")([a, s]))
    h = L.MaxPooling2D(4, name="pool")(h)
    out = L.Dense(10, activation="softmax", name="scores")(L.Flatten(name="flat")(h))
    return model_cls(x, out, name="resnet_block")


def small_unet(lib, model_cls, input_fn):
    """16x16x1 -> 16x16x1: down, up, and the skip concatenated back."""
    L = lib
    x = input_fn((16, 16, 1), name="image")
    d = L.Conv2D(4, 3, padding="same", activation="relu", name="down")(x)
    b = L.Conv2D(8, 3, padding="same", activation="relu", name="bottom")(
        L.MaxPooling2D(2, name="pool")(d))
    u = L.UpSampling2D(2, name="up")(b)
    c = L.Concatenate(name="skip")([u, d])
    h = L.Conv2D(4, 3, padding="same", activation="relu", name="merge_conv")(c)
    return model_cls(x, L.Conv2D(1, 1, activation="sigmoid", name="mask")(h), name="unet")


def two_inputs(lib, model_cls, input_fn):
    """Two images in: what the page refuses."""
    L = lib
    p = input_fn((8, 8, 1), name="left")
    q = input_fn((8, 8, 1), name="right")
    h = L.Concatenate(name="both")([L.Conv2D(2, 3, name="cl")(p), L.Conv2D(2, 3, name="cr")(q)])
    return model_cls([p, q], L.Dense(2, name="out")(L.Flatten(name="flat")(h)), name="pair")


def pair(builder, keras):
    """``(keras_model, convlens_model)`` built by ``builder`` with the same weights."""
    import convlens
    from convlens.models import Model

    reference = builder(keras.layers, keras.Model, keras.Input)
    ours = builder(convlens.layers, Model, convlens.Input)
    ours.set_weights(reference.get_weights())
    return reference, ours


def two_heads(lib, model_cls, input_fn):
    """One image in, two outputs: the page shows every layer, and no one prediction."""
    L = lib
    x = input_fn((10, 10, 1), name="image")
    h = L.Conv2D(3, 3, activation="relu", name="trunk")(x)
    f = L.Flatten(name="flat")(h)
    return model_cls(x, [L.Dense(2, name="left")(f), L.Dense(4, activation="softmax",
                                                               name="right")(f)], name="heads")
