"""Reading the FP32 model once: the parser, onnx's checker and the hash share the file's bytes
(``onnx_io.read_model_file``), with the same findings as reading it three times."""

import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.errors import UserInputError
from mlperf_qx.onnx_io import check_model_file, has_external_data, parse_model_file, read_model_file
from mlperf_qx.onnx_text import first_non_utf8_field
from mlperf_qx.quantize import _load, load_fp32_model


def _matmul_model() -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.arange(32 * 32, dtype=np.float32).reshape(32, 32) / 1024, "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_checker_on_the_bytes_finds_what_the_checker_on_the_path_finds(tmp_path):
    model = _matmul_model()
    model.graph.node[0].input[0] = "nowhere"
    path = tmp_path / "broken.onnx"
    onnx.save(model, str(path))
    with pytest.raises(onnx.checker.ValidationError) as by_path:
        onnx.checker.check_model(str(path))
    data = read_model_file(path)
    assert not has_external_data(parse_model_file(path, data))
    with pytest.raises(onnx.checker.ValidationError) as by_bytes:
        check_model_file(path, data, external_data=False)
    assert str(by_bytes.value) == str(by_path.value)
    with pytest.raises(UserInputError, match="fails the ONNX checker"):
        load_fp32_model(path)


def test_a_model_with_external_data_is_checked_by_its_path(tmp_path):
    """The checker looks for each data file beside the model: from the bytes alone it cannot
    (onnx says the data 'is not regular file'), so such a model is checked by its path."""
    path = tmp_path / "m.onnx"
    onnx.save(_matmul_model(), str(path), save_as_external_data=True, location="m.data", size_threshold=0)
    data = read_model_file(path)
    assert has_external_data(parse_model_file(path, data, load_external_data=False))
    with pytest.raises(onnx.checker.ValidationError, match="m.data"):
        onnx.checker.check_model(data)
    check_model_file(path, data, external_data=True)
    model = load_fp32_model(path)
    assert np.array_equal(model.graph.initializers["w"].const_value.numpy(),
                          numpy_helper.to_array(_matmul_model().graph.initializer[0]))


def test_quantize_hashes_the_bytes_it_parsed(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_matmul_model(), str(path))
    model, digest = _load(path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [node.op_type for node in model.graph] == ["MatMul"]


def test_a_corrupt_initializer_name_is_found_without_reading_its_data():
    """The UTF-8 walk skips bytes fields (raw_data: reading one copies it); an initializer's
    name is text and still checked."""
    raw = _matmul_model().SerializeToString()
    at = raw.index(b"B\x01w")  # field 8, wire type 2, length 1, 'w'
    flipped = onnx.load_from_string(raw[:at + 2] + bytes([ord("w") ^ 128]) + raw[at + 3:])
    assert first_non_utf8_field(flipped) == "model.graph.initializer[0].name"
    assert first_non_utf8_field(_matmul_model()) is None
