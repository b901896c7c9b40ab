"""A minimal reproduction of an OpenVINO CPU error on int8 QDQ graphs, for an upstream report and
for checking a new OpenVINO release: a Conv's per-channel bias applied as channel 0's bias.

Found on YOLOv8n's detection head quantized by qx (its int8 output 0.96 cosine to onnxruntime's
under OpenVINO 2026.4, see README: verify --backend). The pattern here is that head's, cut down:
two feature levels; on each, two 1x1 convolutions (int8 weights, per-tensor scales, an int32 bias
per output channel) whose int8 outputs are concatenated on the channel axis, requantized, reshaped
to (N, C, -1) with a target shape computed from the first level's Shape, requantized, and the
levels concatenated on the last axis. The input's spatial dimensions are symbolic.

The weights are zero, so every convolution outputs its bias: channel c of a level's maps must be
bias[c] at every position. onnxruntime's answer is exactly that; OpenVINO's (2026.4, CPU plugin)
gives bias[0] in every channel of some convolutions. With static shapes, or with one level, the
same graph is right.

    python benchmarks/openvino_bias_repro.py
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS_IN = 8
BRANCHES = {"box": 4, "cls": 2}  # output channels of the two convolutions of a level
BIAS_SCALE = 0.0005  # input scale 0.05 x weight scale 0.01, as the ONNX QDQ convention requires
OUTPUT_SCALE = 0.1


def _qdq(nodes: list, tensor: str, scale: str, zero: str = "zero_i8") -> str:
    nodes += [helper.make_node("QuantizeLinear", [tensor, scale, zero], [f"{tensor}_q"]),
              helper.make_node("DequantizeLinear", [f"{tensor}_q", scale, zero], [f"{tensor}_dq"])]
    return f"{tensor}_dq"


def build(levels: int, symbolic: bool) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The graph, and each convolution's int32 bias by name."""
    initializers = [numpy_helper.from_array(np.array(0, np.int8), "zero_i8"),
                    numpy_helper.from_array(np.array(0, np.int32), "zero_i32"),
                    numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
                    numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
                    numpy_helper.from_array(np.array(BIAS_SCALE, np.float32), "b_scale"),
                    numpy_helper.from_array(np.array(OUTPUT_SCALE, np.float32), "y_scale"),
                    numpy_helper.from_array(np.array(0, np.int64), "first"),
                    numpy_helper.from_array(np.array([0], np.int64), "axis0"),
                    numpy_helper.from_array(np.array([sum(BRANCHES.values()), -1], np.int64), "tail")]
    nodes, inputs, maps, biases = [], [], [], {}
    for level in range(levels):
        x = f"x{level}"
        dims = ["n", CHANNELS_IN, f"h{level}", f"w{level}"] if symbolic else [1, CHANNELS_IN, 4 >> level, 4 >> level]
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, dims))
        x_dq = _qdq(nodes, x, "x_scale")
        outputs = []
        for branch, channels in BRANCHES.items():
            name = f"{branch}{level}"
            # Distinct biases, a few int8 steps apart at the output scale.
            biases[name] = ((np.arange(channels) * 7 - 10) * OUTPUT_SCALE / BIAS_SCALE).astype(np.int32)
            initializers += [numpy_helper.from_array(np.zeros((channels, CHANNELS_IN, 1, 1), np.int8), f"{name}_w"),
                             numpy_helper.from_array(biases[name], f"{name}_b")]
            nodes += [helper.make_node("DequantizeLinear", [f"{name}_w", "w_scale", "zero_i8"], [f"{name}_w_dq"]),
                      helper.make_node("DequantizeLinear", [f"{name}_b", "b_scale", "zero_i32"], [f"{name}_b_dq"]),
                      helper.make_node("Conv", [x_dq, f"{name}_w_dq", f"{name}_b_dq"], [f"{name}_y"])]
            outputs.append(_qdq(nodes, f"{name}_y", "y_scale"))
        nodes.append(helper.make_node("Concat", outputs, [f"maps{level}"], axis=1))
        if level == 0:  # the reshape target, (N, C, -1), computed as the exporter wrote it
            nodes += [helper.make_node("Shape", ["maps0"], ["shape0"]),
                      helper.make_node("Gather", ["shape0", "first"], ["batch0"], axis=0),
                      helper.make_node("Unsqueeze", ["batch0", "axis0"], ["batch0_1d"]),
                      helper.make_node("Concat", ["batch0_1d", "tail"], ["target"], axis=0)]
        nodes.append(helper.make_node("Reshape", [_qdq(nodes, f"maps{level}", "y_scale"), "target"], [f"flat{level}"]))
        maps.append(_qdq(nodes, f"flat{level}", "y_scale"))
    nodes.append(helper.make_node("Concat", maps, ["out"], axis=2))
    graph = helper.make_graph(nodes, "openvino_bias_repro", inputs,
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), biases


def main() -> None:
    import onnxruntime as ort
    import openvino as ov

    rng = np.random.default_rng(0)
    expected = np.concatenate([(np.arange(c) * 7 - 10) * OUTPUT_SCALE for c in BRANCHES.values()])
    print(f"OpenVINO {ov.get_version()}, onnxruntime {ort.__version__}; each level's channels must read {expected}")
    for levels in (1, 2):
        for symbolic in (False, True):
            model, _ = build(levels, symbolic)
            data = model.SerializeToString()
            feeds = {f"x{i}": rng.normal(0, 2, (1, CHANNELS_IN, 4 >> i, 4 >> i)).astype(np.float32) for i in range(levels)}
            exact = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
            compiled = ov.Core().compile_model(ov.Core().read_model(data, b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            answered = np.array(compiled.create_infer_request().infer(feeds)[compiled.output(0)])
            steps = np.abs(answered - exact).max() / OUTPUT_SCALE
            print(f"{levels} level(s), {'symbolic' if symbolic else 'static'} H/W: max |OpenVINO - onnxruntime| "
                  f"{steps:.0f} int8 steps; onnxruntime exact: {bool(np.allclose(exact[0], expected[:, None]))}")
            start = 0
            for level in range(levels):  # each level's positions, in the order the last Concat put them
                count = (4 >> level) ** 2
                values = answered[0, :, start:start + count]
                start += count
                if not np.allclose(values, expected[:, None]):
                    print(f"  level {level}: OpenVINO's channels read {np.round(values.mean(axis=1), 2)}")


if __name__ == "__main__":
    main()
