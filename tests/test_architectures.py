"""Real CNNs built in real Keras (``keras.applications`` with ``weights=None``, small inputs),
saved as ``.keras``: convlens opens each, prints the same summary, predicts the same, explains
it, traces a value after a merge, and saves a file Keras opens with the same predictions.

All ten of the issue's architectures, each built once per test session. MobileNetV3Small's
hard-sigmoid is tensor arithmetic (``x + 3.0``, ``* (1 / 6)``), which its file holds as
``keras.src.ops`` operations; ConvNeXtTiny nests Sequential models as layers and uses Keras's
own LayerScale (``keras.src.applications.convnext``).
"""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import convlens  # noqa: E402
from tests.test_functional import _summary  # noqa: E402


def unet(shape):
    """A small U-Net: a contracting path, a transposed-conv and a bilinear upsampling, and the
    skip connection cropped to size and concatenated (the original paper's valid convs)."""
    def build(weights=None, input_shape=shape, classes=2):
        L = keras.layers
        x = keras.Input(input_shape, name="image")
        down = L.Conv2D(4, 3, activation="relu", name="down")(x)  # 34
        pooled = L.MaxPooling2D(name="pool")(down)  # 17
        bottom = L.Conv2D(8, 3, activation="relu", name="bottom")(pooled)  # 15
        up = L.Conv2DTranspose(4, 2, strides=2, name="up")(bottom)  # 30
        skip = L.Cropping2D(2, name="crop")(down)  # 30
        merged = L.Concatenate(name="merge")([up, skip])
        refined = L.Conv2D(4, 3, activation="relu", name="refine")(merged)  # 28
        larger = L.UpSampling2D(interpolation="bilinear", name="upsample")(refined)
        scores = L.Conv2D(classes, 1, activation="softmax", name="scores")(larger)
        return keras.Model(x, scores, name="unet")
    return build


ARCHITECTURES = {
    "UNet": ((36, 36, 1), unet),
    "EfficientNetB0": ((32, 32, 3), lambda shape: keras.applications.EfficientNetB0),
    "VGG16": ((32, 32, 3), lambda shape: keras.applications.VGG16),
    "ResNet50": ((32, 32, 3), lambda shape: keras.applications.ResNet50),
    "MobileNetV2": ((32, 32, 3), lambda shape: keras.applications.MobileNetV2),
    "MobileNetV3Small": ((32, 32, 3), lambda shape: keras.applications.MobileNetV3Small),
    "ConvNeXtTiny": ((32, 32, 3), lambda shape: keras.applications.ConvNeXtTiny),
    "DenseNet121": ((32, 32, 3), lambda shape: keras.applications.DenseNet121),
    "InceptionV3": ((75, 75, 3), lambda shape: keras.applications.InceptionV3),
    "Xception": ((71, 71, 3), lambda shape: keras.applications.Xception),
}


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def pair(request, tmp_path_factory):
    shape, maker = ARCHITECTURES[request.param]
    keras.utils.set_random_seed(0)
    reference = maker(shape)(weights=None, input_shape=shape, classes=10)
    folder = tmp_path_factory.mktemp(request.param)
    reference.save(folder / "theirs.keras")
    ours = convlens.load_model(folder / "theirs.keras")
    x = np.random.default_rng(0).random((2, *shape), dtype=np.float32)
    return request.param, reference, ours, x, folder


def test_summary_and_predict_equal_keras(pair):
    _, reference, ours, x, _ = pair
    assert _summary(ours) == _summary(reference)
    expected = np.asarray(reference.predict(x, verbose=0))
    got = ours.predict(x, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_explain_and_a_trace_after_a_merge(pair):
    name, _, ours, x, _ = pair
    explanation = ours.explain()
    assert len(explanation.layers) == len(ours.layers)
    merges = [layer for layer in ours.layers
              if type(layer).__name__ in ("Add", "Concatenate")]
    if not merges:
        assert name == "VGG16"  # a plain chain
        return
    layer = merges[len(merges) // 2]
    index = tuple(size // 2 for size in layer.output_shape[1:])
    traced = convlens.explain.trace(ours, layer.name, index, x[:1])
    assert traced.matches, (traced.value, traced.forward_value)


def test_the_file_we_save_opens_in_keras_with_the_same_predictions(pair):
    _, _, ours, x, folder = pair
    ours.save(folder / "ours.keras")
    again = keras.saving.load_model(folder / "ours.keras")
    np.testing.assert_allclose(np.asarray(again.predict(x, verbose=0)),
                               ours.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
