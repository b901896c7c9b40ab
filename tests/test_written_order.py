"""The calibration graph's added nodes run where their tensor was written (``quant.written_order``),
checked in onnxruntime's own profile of a real run: a chain of Conv+Relu layers in the blocked
NCHWc layout, every layer's output observed, the statistics planned in name order (which is not
graph order here)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from mlperf_qx.quant.reduce_in_graph import add_reductions, plan_reductions
from mlperf_qx.quant.runtime_check import expose_tensors
from mlperf_qx.quant.written_order import last_written_first, read_where_written

LAYERS = 6
# Names whose sorted order is not the layers' order, as calibration's sorted tensor list is not.
NAMES = [f"act_{name}" for name in ("m", "c", "x", "a", "q", "f")]


def _conv_chain() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "image"
    for layer, name in enumerate(NAMES):
        weights.append(numpy_helper.from_array((rng.standard_normal((16, 16, 3, 3)) * 0.1).astype(np.float32), f"w{layer}"))
        nodes += [helper.make_node("Conv", [previous, f"w{layer}"], [f"conv{layer}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{layer}"], [name])]
        previous = name
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 16, 32, 32])],
                              [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 16, 32, 32])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _kernel_sequence(model: onnx.ModelProto, tmp_path) -> list[tuple[str, list[str]]]:
    """(op type, the node's name) of every kernel onnxruntime ran, in the order it ran them."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, {"image": np.ones((1, 16, 32, 32), np.float32)})
    events = json.loads(open(session.end_profiling()).read())
    return [(e["args"]["op_name"], e["name"].removesuffix("_kernel_time")) for e in events
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]


def _layers_run_before(sequence, is_reader) -> list[int]:
    """For each read of an observed tensor (``is_reader``: which layer's tensor a kernel reads, or
    None), how many Conv layers had run when it ran."""
    convs, seen = 0, []
    for op, name in sequence:
        if op == "Conv":
            convs += 1
        layer = is_reader(op, name)
        if layer is not None:
            seen.append((layer, convs))
    return seen


def test_reductions_run_right_after_the_layer_that_wrote_their_tensor(tmp_path):
    model = _conv_chain()
    reductions = plan_reductions(sorted(NAMES), set(NAMES))
    add_reductions(model.graph, reductions)
    onnx.checker.check_model(model)
    by_node = {f"{reductions.names[s]}_node": NAMES.index(reductions.tensors[t])
               for t in range(len(reductions.tensors)) for s in reductions.slots[t] if s >= 0}
    seen = _layers_run_before(_kernel_sequence(model, tmp_path), lambda op, name: by_node.get(name))
    assert len(seen) == 3 * LAYERS  # max, NaN flag and size of each Relu output
    # Layer k's statistics run after its Conv (k + 1 convs) and before the next one.
    assert all(convs == layer + 1 for layer, convs in seen), seen


def test_exposed_tensors_are_reordered_out_right_after_the_layer_that_wrote_them(tmp_path):
    model = _conv_chain()
    exposed = sorted(NAMES)
    expose_tensors(model.graph, exposed)
    read_where_written(model.graph, exposed, 18)
    sequence = _kernel_sequence(model, tmp_path)
    order_nodes = {f"qx_order::{index}_node": NAMES.index(name) for index, name in enumerate(exposed)}
    seen = _layers_run_before(sequence, lambda op, name: order_nodes.get(name))
    assert sorted(layer for layer, _ in seen) == list(range(LAYERS))
    assert all(convs == layer + 1 for layer, convs in seen), seen
    # The blocked layout is really in play: without the leaves, onnxruntime's reorders out of it
    # ran after the last layer (what this module fixes), so the check above is not vacuous.
    plain = _conv_chain()
    expose_tensors(plain.graph, exposed)
    reorders = _layers_run_before(_kernel_sequence(plain, tmp_path), lambda op, name: 0 if op == "ReorderOutput" else None)
    assert len(reorders) >= LAYERS - 1 and max(convs for _, convs in reorders) == LAYERS


def test_last_written_first_orders_by_writer_inputs_last():
    model = _conv_chain()
    names = ["image", NAMES[2], NAMES[0], "conv4", NAMES[5]]
    assert [names[i] for i in last_written_first(model.graph, names)] == [NAMES[5], "conv4", NAMES[2], NAMES[0], "image"]
