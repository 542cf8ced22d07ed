"""Functional models on the page's API: a .keras file real Keras wrote is uploaded, drawn as a
graph, and its maps, predictions and traces equal what Keras computes layer by layer."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from convlens.datasets.digits import sample_digits
from convlens.web.api import ApiError, explain_request
from convlens.web.files import download_request, upload_request
from convlens.web.jobs import ServerState
from convlens.web.views import feature_maps_request, summary_request, trace_request
from tests import graphs

keras = pytest.importorskip("keras")


def digit(k: int) -> np.ndarray:
    return (sample_digits()[0][k].astype(np.float32) / 255.0).reshape(1, 28, 28, 1)


def keras_file(builder, tmp_path, seed: int = 0):
    """A model built and saved by real Keras: (keras model, .keras bytes)."""
    keras.utils.set_random_seed(seed)
    reference = builder(keras.layers, keras.Model, keras.Input)
    path = tmp_path / f"{reference.name}_{seed}.keras"
    reference.save(str(path))
    return reference, path.read_bytes()


def upload(state, session, filename, raw, spec="input 28x28x1 | flatten"):
    return upload_request({"spec": spec, "session": session, "filename": filename,
                           "data": base64.b64encode(raw).decode()}, state)


def every_output(reference, x) -> dict:
    """Each layer's output for ``x``, by real Keras, by layer name."""
    model = keras.Model(reference.inputs, [layer.output for layer in reference.layers])
    return {layer.name: out[0] for layer, out in
            zip(reference.layers, model.predict(x, verbose=0))}


def uploaded_maps(builder, tmp_path, session: str):
    """Upload ``builder``'s Keras-written model, ask its maps for a seeded input and check
    every layer's against Keras: ``(state, body, maps answer, Keras's outputs by name)``."""
    reference, raw = keras_file(builder, tmp_path)
    state = ServerState()
    answer = upload(state, session, "model.keras", raw)
    body = {"spec": answer["spec"], "session": session, "input": {"seed": 5}}
    maps = feature_maps_request(body, state)
    expected = every_output(reference, np.asarray(maps["input"]["values"], np.float32)[None])
    for entry in maps["layers"]:
        np.testing.assert_allclose(entry["maps"], expected[entry["name"]], atol=2e-6,
                                   err_msg=entry["name"])
    return state, body, maps, expected


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    """A server state holding the Keras-written residual block for session 'graph-session'."""
    reference, raw = keras_file(graphs.residual_block, tmp_path_factory.mktemp("resnet"))
    state = ServerState()
    answer = upload(state, "graph-session", "block.keras", raw)
    return state, reference, answer


def test_an_uploaded_graph_is_named_summarised_and_drawn(resnet):
    state, reference, answer = resnet
    assert answer["spec"] == "uploaded graph resnet_block"
    body = {"spec": answer["spec"], "session": "graph-session"}
    summary = summary_request(body, state)
    names = [layer["name"] for layer in summary["layers"]]
    assert names == [layer.name for layer in reference.layers]
    assert "Connected to" in summary["summary"] and "add" in summary["summary"]
    edges = {(names[s], names[t]) for s, t in summary["graph"]["edges"]}
    assert {("branch_b", "add"), ("shortcut", "add"), ("image", "branch_a"),
            ("image", "shortcut")} <= edges
    assert summary["graph"]["svg"].count('class="graph-layer"') == len(names)
    explained = explain_request({**body, "layer": "branch_b"}, state)
    assert explained["spec"] == answer["spec"] and explained["graph"]["svg"]
    assert explained["trace"]["layer_name"] == "branch_b" and explained["trace"]["matches"]
    assert len(explained["layers"]) == len(names)


def test_a_graphs_maps_and_prediction_equal_keras_layer_by_layer(resnet):
    state, reference, answer = resnet
    expected = every_output(reference, digit(3))
    maps = feature_maps_request({"spec": answer["spec"], "session": "graph-session",
                                 "input": {"digit": 3}}, state)
    assert [entry["name"] for entry in maps["layers"]] == list(expected)
    for entry in maps["layers"]:
        np.testing.assert_allclose(entry["maps"], expected[entry["name"]], atol=2e-6,
                                   err_msg=entry["name"])
    np.testing.assert_allclose(maps["prediction"]["probabilities"], expected["scores"],
                               atol=2e-6)
    # One layer asked for: its maps and those of the layer it reads, the rest left out.
    one = feature_maps_request({"spec": answer["spec"], "session": "graph-session",
                                "input": {"digit": 3}, "layer": "shortcut"}, state)
    sent = [entry["name"] for entry in one["layers"] if entry["maps"] is not None]
    assert sent == ["image", "shortcut"]
    assert one["layer"] == [entry["name"] for entry in one["layers"]].index("shortcut")
    np.testing.assert_allclose(one["layers"][one["layer"]]["maps"], expected["shortcut"],
                               atol=2e-6)


def test_a_cell_of_a_conv_after_a_branch_is_its_channels_summed(resnet):
    state, reference, answer = resnet
    names = [layer.name for layer in reference.layers]
    expected = every_output(reference, digit(8))
    traced = trace_request({"spec": answer["spec"], "session": "graph-session",
                            "input": {"digit": 8}, "layer": "branch_b", "index": [3, 5, 2]},
                           state)
    assert traced["reads"] == [names.index("branch_a")]
    assert abs(traced["trace"]["value"] - expected["branch_b"][3, 5, 2]) <= 1e-5
    split = traced["filter_maps"]
    assert split["input_channels"] == [0, 1, 2, 3] and split["matches"]
    kernel = reference.get_layer("branch_b").get_weights()
    window = np.pad(expected["branch_a"], ((1, 1), (1, 1), (0, 0)))[3:6, 5:8]  # (3, 3, 4)
    per_channel = (window * kernel[0][..., 2]).sum(axis=(0, 1))
    np.testing.assert_allclose(np.array(split["channel_maps"])[3, 5], per_channel, atol=1e-5)
    assert abs(per_channel.sum() + kernel[1][2] - expected["branch_b"][3, 5, 2]) <= 1e-5
    np.testing.assert_allclose(traced["terms"]["partial_sums"], per_channel, atol=1e-5)


def test_a_unet_is_explored_and_its_merge_conv_reads_the_skip(tmp_path):
    state, body, maps, expected = uploaded_maps(graphs.small_unet, tmp_path, "unet-session")
    assert maps["prediction"] is None
    names = [entry["name"] for entry in maps["layers"]]
    traced = trace_request({**body, "layer": "merge_conv", "index": [0, 15, 1]}, state)
    assert traced["reads"] == [names.index("skip")]
    assert len(traced["filter_maps"]["input_channels"]) == 12  # 8 up-sampled + 4 skipped
    assert abs(traced["trace"]["value"] - expected["merge_conv"][0, 15, 1]) <= 1e-5


def test_several_inputs_are_refused_and_a_forgotten_graph_asks_for_the_file(tmp_path):
    _, raw = keras_file(graphs.two_inputs, tmp_path)
    state = ServerState()
    with pytest.raises(ApiError) as refused:
        upload(state, "pair-session", "pair.keras", raw)
    message = str(refused.value)
    assert "2 inputs" in message and "left (8, 8, 1)" in message and "one input" in message
    with pytest.raises(ApiError) as forgotten:
        feature_maps_request({"spec": "uploaded graph resnet_block",
                              "session": "pair-session"}, state)
    assert forgotten.value.status == 410 and "upload the .keras file again" in \
        str(forgotten.value)


def test_weights_for_an_uploaded_graph_and_its_download(resnet, tmp_path):
    _, reference, answer = resnet
    state = ServerState()
    upload(state, "weights-graph", "block.keras", keras_file(
        graphs.residual_block, tmp_path, seed=0)[1])
    donor, _ = keras_file(graphs.residual_block, tmp_path, seed=9)
    donor.save_weights(str(tmp_path / "donor.weights.h5"))
    loaded = upload(state, "weights-graph", "donor.weights.h5",
                    (tmp_path / "donor.weights.h5").read_bytes(), spec=answer["spec"])
    assert loaded["spec"] == answer["spec"]
    body = {"spec": answer["spec"], "session": "weights-graph", "input": {"digit": 1}}
    maps = feature_maps_request(body, state)
    np.testing.assert_allclose(maps["prediction"]["probabilities"],
                               donor.predict(digit(1), verbose=0)[0], atol=2e-6)
    # Another model's weights: refused, and the session's graph keeps its own.
    unet, _ = keras_file(graphs.small_unet, tmp_path)
    unet.save_weights(str(tmp_path / "unet.weights.h5"))
    with pytest.raises(ApiError):
        upload(state, "weights-graph", "unet.weights.h5",
               (tmp_path / "unet.weights.h5").read_bytes(), spec=answer["spec"])
    again = feature_maps_request(body, state)
    assert again["prediction"] == maps["prediction"]
    # Downloaded: a .keras file real Keras opens, predicting the same.
    (tmp_path / "back.keras").write_bytes(download_request(body, state).data)
    back = keras.saving.load_model(str(tmp_path / "back.keras"))
    np.testing.assert_allclose(back.predict(digit(1), verbose=0)[0],
                               donor.predict(digit(1), verbose=0)[0], atol=2e-6)


def test_a_graph_with_two_outputs_shows_every_layer_and_no_single_prediction(tmp_path):
    state, body, maps, expected = uploaded_maps(graphs.two_heads, tmp_path, "heads-session")
    assert maps["prediction"] is None and [e["name"] for e in maps["layers"]] == list(expected)
    explained = explain_request(body, state)
    assert explained["output_shape"] == [[2], [4]] and explained["trace"]["matches"]


def test_training_an_uploaded_graph_keeps_the_trained_graph_in_the_session(resnet, tmp_path):
    _, _, answer = resnet
    state = ServerState()
    upload(state, "train-graph", "block.keras", keras_file(graphs.residual_block, tmp_path)[1])
    body = {"spec": answer["spec"], "session": "train-graph", "input": {"digit": 4}}
    before = feature_maps_request(body, state)["prediction"]["probabilities"]
    job = state.trainer.prepare({**body, "epochs": 1, "samples": 100, "batch_size": 20})
    events = []
    state.trainer.run(job, lambda kind, data: events.append((kind, data)))
    assert events[-1] == ("done", {"cancelled": False, "epochs": 1}), events[-1]
    assert [kind for kind, _ in events].count("batch") == 5  # 90 training images, batches of 20
    trained = state.store.get("train-graph", answer["spec"])
    after = feature_maps_request(body, state)["prediction"]["probabilities"]
    np.testing.assert_allclose(after, trained.predict(digit(4), verbose=0)[0], atol=2e-6)
    assert not np.allclose(after, before)
