"""qx export --framework tf: Keras 3 files and SavedModels into the same canonical ONNX."""

import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
from keras import layers  # noqa: E402

from conftest import assert_user_error  # noqa: E402


def _randomize_batchnorm(model):
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    return model


def _keras_cnn():
    keras.utils.set_random_seed(1)
    image = keras.Input((10, 10, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same")(image)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(8, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.MaxPooling2D(2)(layers.ReLU()(x))
    x = layers.Flatten()(x)
    return _randomize_batchnorm(keras.Model(image, layers.Dense(4, name="scores")(x)))


def _keras_mlp():
    keras.utils.set_random_seed(2)
    features = keras.Input((12,), name="features")
    x = layers.Dense(16, activation="relu")(features)
    x = layers.BatchNormalization()(x)
    return _randomize_batchnorm(keras.Model(features, layers.Dense(3, name="probs", activation="softmax")(x)))


def _keras_two_inputs():
    keras.utils.set_random_seed(3)
    a = keras.Input((6,), name="left")
    b = keras.Input((4,), name="right")
    merged = layers.Concatenate()([layers.Dense(5)(a), layers.Dense(5)(b)])
    return keras.Model([a, b], layers.Dense(2, name="out")(merged))


def _export(qx, path, out, *extra):
    result = qx("export", "--framework", "tf", "--model", path, "-o", out, *extra)
    assert result.code == 0, result
    return onnx.load(str(out))


def _run(out, feeds):
    return ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)


def _ops(model):
    return [n.op_type for n in model.graph.node]


def _adjacent_inverse_transposes(model):
    producers = {o: n for n in model.graph.node for o in n.output}
    count = 0
    for node in model.graph.node:
        first = producers.get(node.input[0]) if node.input else None
        if node.op_type == "Transpose" and first is not None and first.op_type == "Transpose":
            count += 1
    return count


def test_keras_cnn_with_batchnorm(qx, tmp_path):
    model = _keras_cnn()
    path = tmp_path / "cnn.keras"
    model.save(path)
    exported = _export(qx, path, tmp_path / "cnn.onnx")
    assert "BatchNormalization" not in _ops(exported)
    assert _adjacent_inverse_transposes(exported) == 0
    assert [o.name for o in exported.graph.output] == ["scores"]
    x = np.random.default_rng(0).standard_normal((1, 10, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "cnn.onnx", {"image": x})[0], model(x, training=False).numpy(),
                               atol=1e-4, rtol=1e-4)


def test_keras_mlp_dynamic_batch_and_identical_bytes(qx, tmp_path):
    model = _keras_mlp()
    path = tmp_path / "mlp.keras"
    model.save(path)
    exported = _export(qx, path, tmp_path / "a.onnx", "--dynamic-batch")
    _export(qx, path, tmp_path / "b.onnx", "--dynamic-batch")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert "BatchNormalization" not in _ops(exported)
    x = np.random.default_rng(1).standard_normal((5, 12)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "a.onnx", {"features": x})[0], model(x, training=False).numpy(),
                               atol=1e-5, rtol=1e-4)
    props = {p.key: p.value for p in exported.metadata_props}
    versions = json.loads(props["qx.versions"])
    assert {"keras", "tf2onnx"} <= set(versions)
    assert len(props["qx.model_sha256"]) == 64


def test_two_input_functional_model(qx, tmp_path):
    model = _keras_two_inputs()
    path = tmp_path / "two.h5"
    model.save(path)
    exported = _export(qx, path, tmp_path / "two.onnx")
    assert [i.name for i in exported.graph.input] == ["left", "right"]
    rng = np.random.default_rng(2)
    left, right = rng.standard_normal((1, 6)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32)
    np.testing.assert_allclose(_run(tmp_path / "two.onnx", {"left": left, "right": right})[0],
                               model([left, right], training=False).numpy(), atol=1e-5)


class _Scaler(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="x")])
    def serve(self, x):
        return {"y": tf.nn.relu(tf.matmul(x, self.w)), "norm": tf.reduce_sum(x * x, axis=1)}


@pytest.fixture
def saved_module(tmp_path):
    module = _Scaler()
    folder = tmp_path / "saved"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve, "other": module.serve})
    return folder, module


def test_tf_module_saved_model_with_serving_signature(qx, tmp_path, saved_module):
    folder, module = saved_module
    exported = _export(qx, folder, tmp_path / "sm.onnx", "--input", "x:2x4")
    assert [o.name for o in exported.graph.output] == ["norm", "y"]
    x = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
    norm, y = _run(tmp_path / "sm.onnx", {"x": x})
    np.testing.assert_allclose(y, module.serve(x)["y"].numpy(), atol=1e-5)
    _export(qx, folder, tmp_path / "other.onnx", "--signature", "other")


def test_digits_style_keras_reference_has_no_batchnorm(qx, tmp_path):
    import sys

    from conftest import REPO

    sys.path.insert(0, str(REPO / "examples" / "digits"))
    from model_tf import digits_net

    keras.utils.set_random_seed(0)
    path = tmp_path / "digits.keras"
    _randomize_batchnorm(digits_net()).save(path)
    exported = _export(qx, path, tmp_path / "digits.onnx")
    assert "BatchNormalization" not in _ops(exported)
    assert _adjacent_inverse_transposes(exported) == 0


# --- bad input: one line, exit 2, nothing written ----------------------------------------------

def _fails(qx, tmp_path, model, *extra, fragments=()):
    out = tmp_path / "bad.onnx"
    assert_user_error(qx("export", "--framework", "tf", "--model", model, "-o", out, *extra), *fragments)
    assert not out.exists()


def test_missing_path(qx, tmp_path):
    _fails(qx, tmp_path, tmp_path / "nothing.keras", fragments=("nothing.keras", "not found"))


def test_not_a_model(qx, tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("hello")
    _fails(qx, tmp_path, fake, fragments=("fake.keras",))
    folder = tmp_path / "folder"
    folder.mkdir()
    _fails(qx, tmp_path, folder, fragments=("saved_model.pb",))


def test_lambda_layer_is_refused_and_not_run(qx, tmp_path):
    inputs = keras.Input((3,), name="x")
    model = keras.Model(inputs, layers.Lambda(lambda t: t * 2.0)(inputs))
    path = tmp_path / "lambda.keras"
    model.save(path)
    _fails(qx, tmp_path, path, fragments=("lambda.keras", "Lambda"))


def test_unknown_signature(qx, tmp_path, saved_module):
    folder, _ = saved_module
    _fails(qx, tmp_path, folder, "--signature", "nope", "--input", "x:1x4",
           fragments=("'nope'", "serving_default"))


def test_bad_input_specs(qx, tmp_path):
    path = tmp_path / "mlp.keras"
    _keras_mlp().save(path)
    _fails(qx, tmp_path, path, "--input", "features:1x13", fragments=("features", "1x13", "?x12"))
    _fails(qx, tmp_path, path, "--input", "wrong:1x12", fragments=("wrong", "features"))
    _fails(qx, tmp_path, path, "--input", "features", fragments=("NAME:SHAPE",))
