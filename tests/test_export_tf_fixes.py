"""What tf2onnx leaves undone, finished by qx: captured Normalization statistics folded in,
exact GELU's Erfc rewritten, dict inputs and outputs, the conversion's cause kept."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")
from keras import layers  # noqa: E402


def _export(qx, model_file, out, *extra):
    result = qx("export", "--framework", "tf", "--model", model_file, "-o", out, *extra)
    assert result.code == 0, result
    return onnx.load(str(out))


def test_normalization_statistics_are_constants_not_inputs(qx, tmp_path):
    """EfficientNet's first layer: its mean and variance were left as graph inputs (exit 3)."""
    keras.utils.set_random_seed(0)
    image = keras.Input((8, 8, 3), name="image")
    norm = layers.Normalization(axis=-1, mean=[0.2, 0.4, 0.6], variance=[1.5, 2.0, 0.5])
    model = keras.Model(image, layers.Dense(4, name="scores")(layers.Flatten()(norm(image))))
    model.save(tmp_path / "norm.keras")
    onnx_model = _export(qx, tmp_path / "norm.keras", tmp_path / "m.onnx")
    assert [i.name for i in onnx_model.graph.input] == ["image"]
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 3)).astype(np.float32)
    (got,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"image": x})
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)


def test_exact_gelu_exports_as_erf(qx, tmp_path):
    keras.utils.set_random_seed(0)
    features = keras.Input((6,), name="features")
    model = keras.Model(features, layers.Dense(5, activation="gelu", name="out")(features))
    model.save(tmp_path / "gelu.keras")
    onnx_model = _export(qx, tmp_path / "gelu.keras", tmp_path / "m.onnx")
    ops = {n.op_type for n in onnx_model.graph.node}
    assert "Erf" in ops and "Erfc" not in ops


def _dict_model():
    keras.utils.set_random_seed(0)
    ids = keras.Input((6,), dtype="int32", name="token_ids")
    mask = keras.Input((6,), dtype="int32", name="padding_mask")
    x = layers.Embedding(20, 8)(ids) * keras.ops.cast(mask, "float32")[:, :, None]
    pooled = layers.Dense(3, name="pooled_dense")(x[:, 0])
    return keras.Model({"token_ids": ids, "padding_mask": mask},
                       {"sequence_output": x, "pooled_output": pooled})


def test_dict_inputs_and_outputs(qx, tmp_path):
    """keras_hub's shape: called with a dict (a positional list fails in tracing), outputs
    named by their keys (not by layers, whose order differs)."""
    _dict_model().save(tmp_path / "dict.keras")
    onnx_model = _export(qx, tmp_path / "dict.keras", tmp_path / "m.onnx")
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in onnx_model.graph.output}
    assert shapes == {"sequence_output": [1, 6, 8], "pooled_output": [1, 3]}


def test_conversion_failure_names_the_cause():
    """TensorFlow's tracing errors start 'in user code:'; the line qx prints is the error at
    their end (here the dict model called with a list, as qx did before)."""
    import tf2onnx

    from mlperf_qx.importers.tf_onnx_fixes import conversion_cause

    model = _dict_model()
    signature = [tf.TensorSpec((1, 6), tf.int32, name=n) for n in ("token_ids", "padding_mask")]

    @tf.function(input_signature=signature)
    def as_list(*args):
        return model(list(args))

    with pytest.raises(Exception) as raised:
        tf2onnx.convert.from_function(as_list, input_signature=signature, opset=18)
    assert str(raised.value).splitlines()[0].strip() == "in user code:"
    cause = conversion_cause(raised.value)
    assert "doesn't match the expected structure" in cause and "\x1b" not in cause and "\n" not in cause
