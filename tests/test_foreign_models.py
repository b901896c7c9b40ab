"""Models exported by other toolchains: inputs without a batch axis (silero VAD's recurrent state
and scalar sample rate) and QOperator lowering at old opsets (PaddleOCR's opset 11/12 files)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from helpers import make_model, rng_array, tensor
from conftest import assert_user_error


def _stateful_model(path):
    """y = x @ W * float(sr) / 16000; state_out = state * 0.5 (state: 2 x batch x 4; sr: scalar int64)."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="proj"),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT, name="cast_sr"),
        helper.make_node("Div", ["srf", "k"], ["ratio"], name="ratio"),
        helper.make_node("Mul", ["h", "ratio"], ["y"], name="scale"),
        helper.make_node("Mul", ["state", "half"], ["state_out"], name="decay"),
    ]
    inits = [("W", rng_array((4, 3))), ("k", np.array(16000, np.float32)), ("half", np.array(0.5, np.float32))]
    model = make_model(nodes, [tensor("x", ["batch", 4]), tensor("state", [2, "batch", 4]),
                               tensor("sr", [], TensorProto.INT64)],
                       [tensor("y", ["batch", 3]), tensor("state_out", [2, "batch", 4])], inits)
    onnx.save(model, path)
    return path


def _stateful_samples(folder, stored_with_batch: bool):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        arrays = {"x": rng.standard_normal((1, 4)).astype(np.float32),
                  "state": rng.standard_normal((2, 1, 4)).astype(np.float32), "sr": np.array(16000, np.int64)}
        if stored_with_batch:  # a batch-first writer adds a batch of 1 to the inputs without one too
            arrays = {k: v if k == "x" else v[None] for k, v in arrays.items()}
        np.savez(folder / f"s{i}.npz", **arrays)
    return folder


@pytest.mark.parametrize("stored_with_batch", [False, True])
def test_inputs_without_a_batch_axis_are_fed_as_declared(qx, tmp_path, stored_with_batch):
    model = _stateful_model(tmp_path / "vad.onnx")
    calib = _stateful_samples(tmp_path / "calib", stored_with_batch)
    out = tmp_path / "int8.onnx"
    result = qx("quantize", model, "--calib", calib, "--json", "-o", out)
    assert result.code == 0, result
    summary = json.loads(result.out)
    assert summary["batch"] == 1  # a state 2 x batch x 4 cannot be stacked along axis 0
    assert all(v > 30 for v in summary["output_sqnr_db"].values()), summary["output_sqnr_db"]


def test_a_sample_of_the_wrong_rank_still_names_the_declared_shape(qx, tmp_path):
    model = _stateful_model(tmp_path / "vad.onnx")
    (tmp_path / "calib").mkdir()
    np.savez(tmp_path / "calib" / "s0.npz", x=np.zeros((1, 4), np.float32), state=np.zeros((1, 4), np.float32),
             sr=np.array(16000, np.int64))
    result = qx("quantize", model, "--calib", tmp_path / "calib", "-o", tmp_path / "int8.onnx")
    assert_user_error(result, "input 'state'", "shape 1x4", "the model expects 2x?x4")
    assert not (tmp_path / "int8.onnx").exists()


def _relu_net(path, opset: int, activation: str):
    """Conv -> Relu (or Clip 0..6) -> Conv at ``opset``; Clip-11 takes its bounds as inputs too."""
    act = (helper.make_node("Relu", ["a"], ["b"], name="act") if activation == "Relu"
           else helper.make_node("Clip", ["a", "lo", "hi"], ["b"], name="act"))
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["a"], pads=[1, 1, 1, 1], name="conv1"), act,
             helper.make_node("Conv", ["b", "W2", "B2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    inits = [("W1", rng_array((4, 3, 3, 3), 1, 0.3)), ("B1", rng_array((4,), 2, 0.1)),
             ("W2", rng_array((2, 4, 3, 3), 3, 0.3)), ("B2", rng_array((2,), 4, 0.1)),
             ("lo", np.array(0, np.float32)), ("hi", np.array(6, np.float32))]
    model = make_model(nodes, [tensor("x", ["n", 3, 8, 8])], [tensor("y", ["n", 2, 8, 8])], inits, opset=opset)
    model.ir_version = 7
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("opset, activation, lowered", [(12, "Relu", False), (11, "Clip", False),
                                                        (14, "Relu", True), (12, "Clip", True)])
def test_qoperator_keeps_passthrough_ops_float_where_the_opset_has_no_int8_form(qx, tmp_path, opset, activation,
                                                                                lowered):
    model = _relu_net(tmp_path / "fp32.onnx", opset, activation)
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.save(calib / f"s{i}.npy", rng_array((1, 3, 8, 8), 10 + i))
    out = tmp_path / "int8.onnx"
    result = qx("quantize", model, "--calib", calib, "--format", "qoperator", "--json", "-o", out)
    assert result.code == 0, result
    decision = next(n for n in json.loads(result.out)["nodes"] if n["name"] == "act")
    written = onnx.load(str(out))
    assert [o.version for o in written.opset_import if o.domain == ""] == [opset]  # never converted
    # The 8-bit form: '<name>_int8', and a Relu on qx's uint8 activation grid becomes Max(u, 128) '<name>_int8_uint8'.
    int8_act = [n for n in written.graph.node if n.name.startswith("act_int8") and n.op_type in (activation, "Max")]
    assert bool(int8_act) == lowered
    if lowered:
        assert decision["quantized"], decision
    else:
        assert not decision["quantized"]
        assert f"takes no int8 at the model's opset {opset}" in decision["reason"], decision
        assert f"needs opset {14 if activation == 'Relu' else 12}" in decision["reason"], decision
    for session in (ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]),):
        assert np.isfinite(session.run(None, {"x": rng_array((1, 3, 8, 8))})[0]).all()


def test_a_wrongly_declared_output_rank_does_not_break_histogram_calibration(qx, tmp_path):
    """ddddocr declares its output rank 2 and computes rank 3 (a Reshape to a shape computed at run
    time, which inference cannot follow): onnxruntime refuses outputs bound at the declared rank, so
    calibration reads them out instead of blaming the sample."""
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Shape", ["x"], ["xs"], name="shape"),
             helper.make_node("Slice", ["xs", "one", "two"], ["three"], name="three"),  # x's channels: 3 at run time
             helper.make_node("Slice", ["dims", "zero", "three"], ["target"], name="target"),
             helper.make_node("Reshape", ["r", "target"], ["y"], name="flat")]
    inits = [("W", rng_array((4, 3, 3, 3))), ("zero", np.array([0], np.int64)), ("one", np.array([1], np.int64)),
             ("two", np.array([2], np.int64)), ("dims", np.array([1, 4, -1, 1], np.int64))]
    model = make_model(nodes, [tensor("x", ["n", "c", 8, 8])], [tensor("y", [1, 144])], inits)
    onnx.save(model, tmp_path / "fp32.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        np.save(calib / f"s{i}.npy", rng_array((1, 3, 8, 8), i))
    for method in ("minmax", "entropy"):
        result = qx("quantize", tmp_path / "fp32.onnx", "--calib", calib, "--method", method, "--batch", "1",
                    "-o", tmp_path / f"{method}.onnx")
        assert result.code == 0, (method, result)


def _relu_calib(tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.save(calib / f"s{i}.npy", rng_array((1, 3, 8, 8), 10 + i))
    return calib


def test_layer_errors_skip_tensors_the_reference_file_does_not_compute(qx, tmp_path):
    """The magika/Swin crashes: a quantized tensor renamed or folded by canonicalization is not in
    the FP32 file as given, and an initializer cannot be exposed as an output."""
    from mlperf_qx.quant.report import layer_errors

    model = _relu_net(tmp_path / "fp32.onnx", 14, "Relu")
    out = tmp_path / "int8.onnx"
    assert qx("quantize", model, "--calib", _relu_calib(tmp_path), "-o", out).code == 0
    feeds = [{"x": rng_array((1, 3, 8, 8))}]
    rows = layer_errors(model, out, ["a", "b", "W1", "renamed_by_canonicalization"], feeds)
    assert [r["tensor"] for r in rows] == ["a", "b"]
    assert all(r["sqnr_db"] > 20 for r in rows)


def test_a_report_that_cannot_be_written_is_a_warning_not_a_crash(qx, tmp_path):
    """A report folder that is a file is refused before any work; one that fails while being
    written (here a folder where its JSON goes) costs the report, not the int8 model."""
    model = _relu_net(tmp_path / "fp32.onnx", 14, "Relu")
    blocked = tmp_path / "report"
    blocked.write_text("a file where the report folder should go")
    out = tmp_path / "int8.onnx"
    calib = _relu_calib(tmp_path)
    assert_user_error(qx("quantize", model, "--calib", calib, "--report", blocked, "-o", out),
                      "--report", "is a file; give a folder")
    assert not out.exists()
    blocked.unlink()
    (blocked / "quantization_report.json").mkdir(parents=True)
    result = qx("quantize", model, "--calib", calib, "--report", blocked, "-o", out)
    assert result.code == 0, result
    assert "could not be written" in result.err and "the int8 model is unaffected" in result.err
    assert out.exists() and onnx.load(str(out)).graph.node


def test_a_mask_written_with_minus_infinity_stays_fp32_and_is_no_overflow(qx, tmp_path):
    """Where(mask, 0, -inf) added to attention scores (torch's TorchScript exporter on GPT-2):
    exit 0, the Add reading the mask kept FP32 with the reason; an infinity the model computes from
    its input is still refused as an overflow."""
    nodes = [helper.make_node("MatMul", ["x", "Wq"], ["q"], name="query"),
             helper.make_node("MatMul", ["q", "Wk"], ["scores"], name="scores"),
             helper.make_node("Where", ["mask", "zero", "minus_inf"], ["bias"], name="mask_bias"),
             helper.make_node("Add", ["scores", "bias"], ["masked"], name="add_mask"),
             helper.make_node("Softmax", ["masked"], ["weights"], axis=-1, name="softmax"),
             helper.make_node("MatMul", ["weights", "Wv"], ["y"], name="values")]
    inits = [("Wq", rng_array((8, 8), 1)), ("Wk", rng_array((8, 4), 2)), ("Wv", rng_array((4, 3), 3)),
             ("zero", np.array(0, np.float32)), ("minus_inf", np.array(-np.inf, np.float32))]
    model = make_model(nodes, [tensor("x", ["b", 5, 8]), tensor("mask", ["b", 1, 4], TensorProto.BOOL)],
                       [tensor("y", ["b", 5, 3])], inits)
    onnx.save(model, tmp_path / "fp32.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        mask = np.arange(4) < 2 + i % 3  # padding patterns: ones, then zeros
        np.savez(calib / f"s{i}.npz", x=rng_array((1, 5, 8), i), mask=mask.reshape(1, 1, 4))
    result = qx("quantize", tmp_path / "fp32.onnx", "--calib", calib, "--json", "-o", tmp_path / "int8.onnx")
    assert result.code == 0, result
    nodes = {n["name"]: n for n in json.loads(result.out)["nodes"]}
    assert not nodes["add_mask"]["quantized"]
    assert "'bias', computed from the constant 'minus_inf', which holds ±inf" in nodes["add_mask"]["reason"]
    assert nodes["query"]["quantized"] and nodes["values"]["quantized"]


def test_an_infinity_computed_from_the_input_is_still_an_overflow(qx, tmp_path):
    nodes = [helper.make_node("Mul", ["x", "big"], ["scaled"], name="scale"),
             helper.make_node("Exp", ["scaled"], ["e"], name="exp"),
             helper.make_node("Add", ["e", "x"], ["y"], name="add")]
    model = make_model(nodes, [tensor("x", ["b", 8])], [tensor("y", ["b", 8])], [("big", np.array(1000, np.float32))])
    onnx.save(model, tmp_path / "fp32.onnx")
    (tmp_path / "calib").mkdir()
    np.save(tmp_path / "calib" / "s0.npy", np.abs(rng_array((1, 8))))
    result = qx("quantize", tmp_path / "fp32.onnx", "--calib", tmp_path / "calib", "-o", tmp_path / "int8.onnx")
    assert_user_error(result, "is NaN or infinite", "overflows")


def test_inspect_counts_parameters_in_constant_nodes_and_subgraphs(qx, tmp_path):
    """Paddle2ONNX keeps weights in Constant nodes, silero VAD everything inside an If."""
    weight = helper.make_node("Constant", [], ["W"], value=onnx.numpy_helper.from_array(rng_array((4, 3)), "W"))
    scalar = helper.make_node("Constant", [], ["k"], value_float=2.0)
    branch = helper.make_graph([helper.make_node("Constant", [], ["b"], value=onnx.numpy_helper.from_array(
        rng_array((5,)), "b"))], "then", [], [tensor("b", [5])])
    nodes = [weight, scalar, helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Mul", ["h", "k"], ["y"]),
             helper.make_node("If", ["flag"], ["z"], then_branch=branch, else_branch=branch)]
    model = make_model(nodes, [tensor("x", [1, 4]), tensor("flag", [], TensorProto.BOOL)],
                       [tensor("y", [1, 3]), tensor("z", [5])], [("unused_init", np.zeros(7, np.float32))])
    onnx.save(model, tmp_path / "m.onnx")
    result = qx("inspect", tmp_path / "m.onnx", "--json")
    info = json.loads(result.out)
    assert info["parameters"] == 12 + 1 + 5 * 2 + 7  # the If's two branches are two stored graphs
    assert info["subgraph_nodes"] == 2


def test_explain_says_what_an_int8_matmul_of_two_activations_has(qx, tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "Wq"], ["q"], name="query"),
             helper.make_node("Add", ["q", "bq"], ["qb"], name="query_bias"),
             helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1], name="keys"),
             helper.make_node("MatMul", ["qb", "xt"], ["scores"], name="scores"),
             helper.make_node("MatMul", ["scores", "Wo"], ["y"], name="out")]
    inits = [("Wq", rng_array((8, 8), 1)), ("bq", rng_array((8,), 2)), ("Wo", rng_array((5, 3), 3))]
    model = make_model(nodes, [tensor("x", ["b", 5, 8])], [tensor("y", ["b", 5, 3])], inits)
    onnx.save(model, tmp_path / "fp32.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        np.save(calib / f"s{i}.npy", rng_array((1, 5, 8), i))
    result = qx("quantize", tmp_path / "fp32.onnx", "--calib", calib, "--json", "-o", tmp_path / "int8.onnx")
    reasons = {n["name"]: n["reason"] for n in json.loads(result.out)["nodes"]}
    assert reasons["scores"] == ("int8 activations on both sides (no weight: both are computed at run time), no bias, "
                                 "int32 accumulation")
    assert reasons["query"] == "int8 input and weight, int32 bias (s_in*s_w), int32 accumulation"
    assert reasons["out"] == "int8 input and weight, no bias, int32 accumulation"


def test_the_int8_flop_share_counts_what_onnxruntime_runs_after_fusion(qx, tmp_path):
    """conv2 writes the float graph output: no QuantizeLinear follows it, so onnxruntime runs it in
    float although it is annotated int8; its multiply-adds count as float."""
    model = _relu_net(tmp_path / "fp32.onnx", 14, "Relu")
    result = qx("quantize", model, "--calib", _relu_calib(tmp_path), "--json", "-o", tmp_path / "int8.onnx")
    summary = json.loads(result.out)
    flops = summary["flops_after_fusion"]
    conv1, conv2 = 2 * 4 * 64 * 27, 2 * 2 * 64 * 36  # 2 x output values x (input channels x 3 x 3)
    assert (flops["int8"], flops["float"]) == (conv1, conv2)
    assert summary["int8_matmul_conv_flop_share"] == pytest.approx(conv1 / (conv1 + conv2))
    assert all(n["quantized"] for n in summary["nodes"] if n["op_type"] == "Conv")  # annotated: both


def test_compute_inside_an_if_is_listed_fp32_and_counted(qx, tmp_path):
    """silero VAD runs its network inside an If on the sample rate."""
    def branch(name, scale):
        nodes = [helper.make_node("MatMul", ["x", f"W_{name}"], [f"h_{name}"], name=f"proj_{name}")]
        inits = [onnx.numpy_helper.from_array(rng_array((8, 4), scale), f"W_{name}")]
        return helper.make_graph(nodes, name, [], [tensor(f"h_{name}", None)], inits)

    nodes = [helper.make_node("MatMul", ["x", "W"], ["pre"], name="pre"),
             helper.make_node("Equal", ["sr", "k16"], ["is16"], name="is16"),
             helper.make_node("If", ["is16"], ["y"], then_branch=branch("then", 1), else_branch=branch("else", 2),
                              name="by_rate")]
    model = make_model(nodes, [tensor("x", [1, 8]), tensor("sr", [], TensorProto.INT64)],
                       [tensor("pre", [1, 8]), tensor("y", [1, 4])],
                       [("W", rng_array((8, 8), 3)), ("k16", np.array(16000, np.int64))])
    onnx.save(model, tmp_path / "fp32.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(3):
        np.savez(calib / f"s{i}.npz", x=rng_array((1, 8), i), sr=np.array(16000, np.int64))
    result = qx("quantize", tmp_path / "fp32.onnx", "--calib", calib, "--json", "-o", tmp_path / "int8.onnx")
    summary = json.loads(result.out)
    inside = sorted((n["name"], n["quantized"], n["reason"]) for n in summary["nodes"] if n["name"].startswith("by_rate/"))
    assert [i[:2] for i in inside] == [("by_rate/else_branch/proj_else", False), ("by_rate/then_branch/proj_then", False)]
    assert inside[1][2].startswith("inside If 'by_rate' (then_branch): qx quantizes the main graph only")
    flops = summary["flops_after_fusion"]
    assert flops["inside_if"] == 2 * 4 * 8  # the branch taken (then: sr == 16000), FP32
    text = " ".join(qx("quantize", tmp_path / "fp32.onnx", "--calib", calib, "-o", tmp_path / "int8b.onnx").out.split())
    assert "kept FP32 inside If/Loop bodies: MatMul×2" in text
    assert "are inside If branches, FP32" in text


def _unet_block(path):
    """A 3-D U-Net's pieces (MONAI UNet/DynUNet): Conv, InstanceNormalization, LeakyRelu, PRelu,
    ConvTranspose with a bias, then a Conv head."""
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1] * 6, name="conv"),
             helper.make_node("InstanceNormalization", ["c1", "gamma", "beta"], ["n1"], name="norm"),
             helper.make_node("PRelu", ["n1", "slope"], ["a1"], name="prelu"),
             helper.make_node("ConvTranspose", ["a1", "Wt", "Bt"], ["up"], strides=[2, 2, 2], name="up"),
             helper.make_node("LeakyRelu", ["up"], ["a2"], alpha=0.01, name="leaky"),
             helper.make_node("Conv", ["a2", "W2", "B2"], ["y"], name="head")]
    inits = [("W1", rng_array((4, 2, 3, 3, 3), 1, 0.3)), ("B1", rng_array((4,), 2, 0.1)),
             ("gamma", np.ones(4, np.float32)), ("beta", np.zeros(4, np.float32)),
             ("Wt", rng_array((4, 3, 2, 2, 2), 3, 0.3)), ("Bt", rng_array((3,), 4, 0.1)),
             ("slope", np.full((4, 1, 1, 1), 0.25, np.float32)),
             ("W2", rng_array((2, 3, 1, 1, 1), 5, 0.3)), ("B2", rng_array((2,), 6, 0.1))]
    model = make_model(nodes, [tensor("x", ["n", 2, 4, 4, 4])], [tensor("y", ["n", 2, 8, 8, 8])], inits)
    onnx.save(model, path)
    return path


def test_leaky_relu_runs_int8_and_the_fp32_reasons_of_a_unet_are_precise(qx, tmp_path):
    model = _unet_block(tmp_path / "fp32.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(4):
        np.save(calib / f"s{i}.npy", rng_array((1, 2, 4, 4, 4), 10 + i))
    result = qx("quantize", model, "--calib", calib, "--json", "-o", tmp_path / "int8.onnx")
    assert result.code == 0, result
    summary = json.loads(result.out)
    nodes = {n["name"]: n for n in summary["nodes"]}
    assert nodes["leaky"]["quantized"]
    assert summary["onnxruntime_int8_kernels"].get("QLinearLeakyRelu") == 1, summary["onnxruntime_int8_kernels"]
    assert "no int8 InstanceNormalization kernel" in nodes["norm"]["reason"]
    assert "no int8 PRelu kernel" in nodes["prelu"]["reason"]
    assert "QLinearConvTranspose is not registered" in nodes["up"]["reason"]
    assert summary["output_sqnr_db"]["y"] > 25
    flops = summary["flops_after_fusion"]  # the FP32 ConvTranspose's multiply-adds are counted
    assert flops["float"] >= 2 * (4 * 4 ** 3) * (3 * 2 ** 3)


def test_onnxruntime_still_has_no_int8_conv_transpose():
    """The ConvTranspose reason, checked: should onnxruntime gain the kernel, this fails and
    ConvTranspose gets its int8 rule."""
    from onnx import numpy_helper

    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "zp"),
             numpy_helper.from_array(np.ones([4, 3, 2, 2], np.int8), "w")]
    node = helper.make_node("QLinearConvTranspose", ["x", "s", "zp", "w", "s", "zp", "s", "zp"], ["y"],
                            domain="com.microsoft", strides=[2, 2])
    graph = helper.make_graph([node], "g", [tensor("x", [1, 4, 4, 4], TensorProto.INT8)],
                              [tensor("y", None, TensorProto.INT8)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("com.microsoft", 1)])
    with pytest.raises(Exception, match="QLinearConvTranspose"):
        ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_a_clip_bounded_by_infinity_is_not_a_mask(qx, tmp_path):
    """Clip(x, 0, +inf) is a ReLU: its bound is infinite, its values are not."""
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Clip", ["c", "zero", "inf"], ["r"], name="relu_as_clip"),
             helper.make_node("Conv", ["r", "W2"], ["y"], pads=[1, 1, 1, 1], name="conv2")]
    inits = [("W1", rng_array((4, 3, 3, 3), 1, 0.3)), ("W2", rng_array((2, 4, 3, 3), 2, 0.3)),
             ("zero", np.array(0, np.float32)), ("inf", np.array(np.inf, np.float32))]
    model = make_model(nodes, [tensor("x", ["n", 3, 8, 8])], [tensor("y", ["n", 2, 8, 8])], inits)
    onnx.save(model, tmp_path / "fp32.onnx")
    result = qx("quantize", tmp_path / "fp32.onnx", "--calib", _relu_calib(tmp_path), "--json", "-o", tmp_path / "q.onnx")
    assert result.code == 0, result
    nodes = {n["name"]: n for n in json.loads(result.out)["nodes"]}
    assert nodes["conv2"]["quantized"] and "±inf" not in nodes["relu_as_clip"]["reason"]
