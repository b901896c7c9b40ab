"""runtime.open_session hands a proto's large weights to onnxruntime by reference
(session_weights): the session must compute bit for bit what the serialized model computes, on
FP32, int8 QDQ and QOperator graphs; every initializer a reference cannot carry stays inline and
the unread ones, which onnxruntime drops, are left out."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import make_model, rng_array, tensor
from mlperf_qx import runtime, session_weights
from mlperf_qx.runtime import open_session
from mlperf_qx.session_weights import IN_MEMORY_LOCATION, without_weights

INT64, BOOL = TensorProto.INT64, TensorProto.BOOL


def _encoder_block() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """Embedding lookup (int64 ids), a masked MatMul (bool mask), LayerNormalization, Softmax:
    float, int64 and bool weights, each large enough to go by reference."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"]),
             helper.make_node("MatMul", ["e", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["mb"]),
             helper.make_node("Where", ["keep", "mb", "floor"], ["masked"]),
             helper.make_node("LayerNormalization", ["masked", "gamma", "beta"], ["n"], axis=-1),
             helper.make_node("Gather", ["n", "rows"], ["picked"], axis=1),
             helper.make_node("Softmax", ["picked"], ["y"], axis=-1)]
    weights = [("table", rng_array((300, 64), 1)), ("w", rng_array((64, 128), 2, 0.2)), ("b", rng_array(128, 3)),
               ("keep", rng.random((8, 128)) > 0.3), ("floor", np.float32(-1e4)),
               ("gamma", rng_array(128, 4)), ("beta", rng_array(128, 5)),
               ("rows", (np.arange(200) % 8).astype(np.int64))]
    model = make_model(nodes, [tensor("ids", ["n", 8], INT64)], [tensor("y", ["n", 200, 128])], weights)
    return model, {"ids": rng.integers(0, 300, (3, 8)).astype(np.int64)}


def _qdq_matmul_and_conv() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """int8 QDQ as qx writes it (a scale and zero point per tensor): onnxruntime fuses the
    DequantizeLinear of the int8 weights into its int8 kernels (QLinearConv,
    MatMulIntegerToFloat), prepacks them and, with session.x64quantprecision=1, rewrites them as
    uint8."""
    rng = np.random.default_rng(1)

    def dq(name: str, source: str) -> onnx.NodeProto:
        return helper.make_node("DequantizeLinear", [source, name + "_s", name + "_z"], [name])

    def qdq(name: str, source: str) -> list[onnx.NodeProto]:
        return [helper.make_node("QuantizeLinear", [source, name + "_s", name + "_z"], [name + "_q"]),
                dq(name, name + "_q")]

    nodes = [*qdq("xd", "x"), dq("wcd", "wc"), dq("bcd", "bc"),
             helper.make_node("Conv", ["xd", "wcd", "bcd"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), *qdq("rd", "r"),
             helper.make_node("Reshape", ["rd", "flat"], ["f"]), *qdq("fd", "f"), dq("wmd", "wm"),
             helper.make_node("MatMul", ["fd", "wmd"], ["m"]), helper.make_node("MatMul", ["m", "head"], ["y"])]
    scales = {"xd": 0.02, "wcd": 0.01, "bcd": 0.0002, "rd": 0.05, "fd": 0.05, "wmd": 0.01}
    weights = [("wc", rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8)),
               ("bc", rng.integers(-3000, 3000, 16).astype(np.int32)), ("flat", np.array([0, -1], np.int64)),
               ("wm", rng.integers(-127, 128, (16 * 36, 40)).astype(np.int8)), ("head", rng_array((40, 10), 8))]
    for name, scale in scales.items():
        zero = np.int32(0) if name == "bcd" else np.int8(0)
        weights += [(name + "_s", np.float32(scale)), (name + "_z", zero)]
    model = make_model(nodes, [tensor("x", ["n", 8, 6, 6])], [tensor("y", ["n", 10])], weights)
    return model, {"x": rng_array((4, 8, 6, 6), 7)}


def _qoperator_matmul() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """QOperator as qx writes it: uint8 activations at zero point 128, int8 weights."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("QLinearMatMul", ["xq", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    weights = [("xs", np.float32(0.02)), ("xz", np.uint8(128)), ("w", rng.integers(-127, 128, (96, 48)).astype(np.int8)),
               ("ws", np.float32(0.01)), ("wz", np.int8(0)), ("ys", np.float32(0.05)), ("yz", np.uint8(128))]
    model = make_model(nodes, [tensor("x", ["n", 96])], [tensor("y", ["n", 48])], weights)
    return model, {"x": rng_array((5, 96), 9)}


def _serialized_outputs(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    return open_session(model.SerializeToString()).run(None, feeds)  # bytes: the path as it always was


def _assert_same(expected: list[np.ndarray], actual: list[np.ndarray]) -> None:
    for e, a in zip(expected, actual, strict=True):
        assert e.dtype == a.dtype and np.array_equal(e, a)


@pytest.fixture(params=["vnni", "no-vnni"])
def cpu(request, monkeypatch):
    """Both CPU kinds open_session tells apart: without VNNI it sets session.x64quantprecision=1 on
    int8 models and onnxruntime rewrites their int8 weights (the int8 weights then stay inline)."""
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_vnni"} if request.param == "vnni" else ()))
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    return request.param


@pytest.mark.parametrize(("build", "by_reference"), [
    (_encoder_block, {"vnni": {"table", "w", "keep", "rows"}, "no-vnni": {"table", "w", "keep", "rows"}}),
    (_qdq_matmul_and_conv, {"vnni": {"wc", "wm", "head"}, "no-vnni": {"wc", "wm", "head"}}),
    (_qoperator_matmul, {"vnni": {"w"}, "no-vnni": {"w"}})])
def test_by_reference_gives_the_serialized_sessions_numbers_bit_for_bit(build, by_reference, cpu):
    model, feeds = build()
    before = model.SerializeToString()
    session = open_session(model)
    assert set(session.qx_by_reference) == by_reference[cpu]  # went by reference, with no fallback
    _assert_same(_serialized_outputs(model, feeds), session.run(None, feeds))
    assert model.SerializeToString() == before  # the caller's proto is only read


def _with_unread_weight() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", ["n", 32])],
                       [tensor("y", ["n", 16])], [("w", rng_array((32, 16), 1)), ("unread", rng_array((32, 16), 2))])
    return model, {"x": rng_array((3, 32), 3)}


def test_a_weight_onnxruntime_refuses_by_reference_falls_back_to_the_whole_proto(monkeypatch):
    """Were a weight onnxruntime refuses by reference lifted all the same (here an unread one, with
    the read-set rule switched off: "Failed to find existing initializer"), the session is built
    from the whole proto, as before, and computes the same."""
    model, feeds = _with_unread_weight()
    monkeypatch.setattr(session_weights, "_names_read", lambda graph: {"x", "w", "unread"})
    assert sorted(without_weights(model)[1]) == ["unread", "w"]
    session = open_session(model)
    assert session.qx_by_reference == ()
    _assert_same(_serialized_outputs(model, feeds), session.run(None, feeds))


def test_large_weights_become_references_and_the_rest_stays_inline():
    model, _ = _encoder_block()
    light, weights = without_weights(model)
    assert sorted(weights) == ["keep", "rows", "table", "w"]  # 1 KiB or more each; the others are smaller
    for t in light.graph.initializer:
        if t.name in weights:
            assert t.data_location == TensorProto.EXTERNAL and not t.raw_data
            assert t.external_data[0].value == IN_MEMORY_LOCATION
            assert np.array_equal(weights[t.name], numpy_helper.to_array(
                next(i for i in model.graph.initializer if i.name == t.name)))
        else:
            assert t.data_location == TensorProto.DEFAULT and t.raw_data
    assert [n.SerializeToString() for n in light.graph.node] == [n.SerializeToString() for n in model.graph.node]


def test_an_unread_weight_is_left_out_and_an_overridable_one_stays_inline():
    """onnxruntime drops an initializer no node reads (an int8 model keeps the FP32 weights its
    int8 ones replaced): it is left out; one that is also a graph input (overridable) stays inline,
    as does an unread one an input overrides."""
    model, feeds = _with_unread_weight()
    light, weights = without_weights(model)
    assert list(weights) == ["w"] and [t.name for t in light.graph.initializer] == ["w"]
    session = open_session(model)
    assert list(session.qx_by_reference) == ["w"]
    _assert_same(_serialized_outputs(model, feeds), session.run(None, feeds))
    model.graph.input.extend([tensor("w", [32, 16]), tensor("unread", [32, 16])])
    light, weights = without_weights(model)
    assert weights == {} and [t.name for t in light.graph.initializer] == ["w", "unread"]


def test_a_weight_read_only_inside_a_subgraph_goes_by_reference():
    """An If branch may read an outer initializer: that counts as read."""
    then = helper.make_graph([helper.make_node("MatMul", ["x", "inner_w"], ["t"])], "then", [], [tensor("t", [3, 16])])
    other = helper.make_graph([helper.make_node("MatMul", ["x", "outer_w"], ["o"])], "else", [], [tensor("o", [3, 16])])
    model = make_model([helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other)],
                       [tensor("x", [3, 32]), tensor("flag", [], BOOL)], [tensor("y", [3, 16])],
                       [("inner_w", rng_array((32, 16), 1)), ("outer_w", rng_array((32, 16), 2))])
    session = open_session(model)
    assert sorted(session.qx_by_reference) == ["inner_w", "outer_w"]
    for flag in (True, False):
        feeds = {"x": rng_array((3, 32), 5), "flag": np.array(flag)}
        _assert_same(_serialized_outputs(model, feeds), session.run(None, feeds))


def test_a_model_past_the_protobuf_limit_is_still_staged_as_external_data(monkeypatch):
    model, feeds = _qdq_matmul_and_conv()
    before = model.SerializeToString()
    monkeypatch.setattr(runtime, "PROTOBUF_SAFE_BYTES", 1000)
    session = open_session(model)
    assert session.qx_staged_folder is not None and session.qx_by_reference == ()
    assert model.SerializeToString() == before  # staged from a copy: onnx empties the proto it saves
    _assert_same(_serialized_outputs(model, feeds), session.run(None, feeds))


def test_a_model_without_large_weights_is_handed_over_as_it_is():
    model = make_model([helper.make_node("Add", ["x", "b"], ["y"])], [tensor("x", [4])], [tensor("y", [4])],
                       [("b", rng_array(4))])
    light, weights = without_weights(model)
    assert light is model and weights == {}
    assert open_session(model).qx_by_reference == ()


def test_onnxruntime_copies_the_weights_given_by_reference_as_the_session_is_created():
    """open_session does not keep the arrays it hands over (that would add the model's size to
    every session's memory): onnxruntime must have copied them by the time the session exists.
    Overwriting them afterwards must change nothing."""
    weight = rng_array((64, 32), 1)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor("x", ["n", 64])],
                       [tensor("y", ["n", 32])], [("w", weight)])
    light, _ = without_weights(model)
    feeds = {"x": rng_array((3, 64), 2)}
    session = open_session(light, external_weights={"w": weight})
    expected = session.run(None, feeds)
    weight[:] = np.nan
    _assert_same(expected, session.run(None, feeds))
