"""What tf2onnx's ``from_function`` leaves undone, finished on the converted model.

- Captured tensors become graph inputs: tf2onnx names every non-resource input of the concrete
  function an input, and a Keras 3 ``Normalization`` layer (EfficientNet's first layer) holds
  its mean and variance as captured eager tensors, not variables. They are folded in as
  initializers from the function's captures.
- Ops it has no handler for are kept as they are (it converts with ``continue_on_error``), so
  the model would not load: ``Erfc`` (Keras's exact GELU, ``0.5 x erfc(-x/sqrt 2)``) becomes
  ``1 - Erf``; any other unknown op is named in the error.
- Equal constants are deduplicated, and which name survives depends on the order tf2onnx met
  them, which differs between runs (a BERT's LayerNorm gammas, all ones, kept under a different
  layer's name each time: 3 runs, 3 hashes). A constant read by several nodes gets a counter
  name, which the StableNames pass replaces by one made from its first reader in graph order.
"""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir

from ..errors import UserInputError, first_line


def fold_captured_inputs(model: ir.Model, concrete_function, argument_count: int) -> None:
    """Graph inputs that are the function's captured tensors become initializers."""
    captured = {}
    for placeholder, value in zip(concrete_function.inputs[argument_count:], concrete_function.captured_inputs):
        if placeholder.dtype.name != "resource" and hasattr(value, "numpy"):
            captured[placeholder.name] = np.asarray(value.numpy())
    for value in list(model.graph.inputs):
        if value.name in captured:
            model.graph.inputs.remove(value)
            value.const_value = ir.tensor(captured[value.name], name=value.name)
            model.graph.register_initializer(value)


def replace_erfc(model: ir.Model) -> None:
    for graph in model.graphs():
        for node in list(graph):
            if node.op_type != "Erfc" or node.domain not in ("", "ai.onnx"):
                continue
            (x,) = node.inputs
            dtype = x.dtype.numpy() if x.dtype is not None else np.float32
            one = ir.node("Constant", [], attributes={"value": ir.tensor(np.array(1, dtype))}, name=f"{node.name}/one")
            erf = ir.node("Erf", [x], name=f"{node.name}/Erf")
            difference = ir.node("Sub", [one.outputs[0], erf.outputs[0]], name=node.name)
            graph.insert_before(node, [one, erf, difference])
            ir.convenience.replace_all_uses_with(node.outputs[0], difference.outputs[0])
            difference.outputs[0].name = node.outputs[0].name
            graph.remove(node, safe=True)


def refuse_unknown_ops(model: ir.Model, opset: int) -> None:
    unknown = sorted({node.op_type for graph in model.graphs() for node in graph
                      if node.domain in ("", "ai.onnx") and not _is_onnx_op(node.op_type, opset)})
    if unknown:
        raise UserInputError(f"tf2onnx has no ONNX form for the TensorFlow op(s) {', '.join(unknown)}; "
                             "rewrite those layers with supported ops")


def _is_onnx_op(op_type: str, opset: int) -> bool:
    try:
        onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return False
    return True


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_RAISED = re.compile(r"^\w*(Error|Exception)\b:")


def conversion_cause(exc: BaseException) -> str:
    """One line that says why tf2onnx failed. TensorFlow's tracing errors start 'in user code:'
    and end, after the traceback, with the error and Keras's explanation: keep that end."""
    lines = [line.strip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].rstrip(":") == "in user code":
        raised = [i for i, line in enumerate(lines) if _RAISED.match(line)]
        lines = lines[raised[-1]:] if raised else lines[-2:]
        lines = [line for line in lines if not line.startswith("•")][:3]
    return first_line(" ".join(lines), limit=600)


def name_shared_constants(model: ir.Model) -> None:
    """Give every constant read by several nodes a counter name, which StableNames then replaces
    by one made from its first reader in graph order (the same whichever name tf2onnx kept)."""
    graph = model.graph
    outer = {v.name for v in (*graph.inputs, *graph.outputs)}
    shared = [v for v in graph.initializers.values() if len({id(u.node) for u in v.uses()}) > 1 and v.name not in outer]
    for index, value in enumerate(shared):
        graph.initializers.pop(value.name)
        value.name = f"shared_constant__{index}"
        graph.register_initializer(value)


def order_from_outputs(model: ir.Model) -> None:
    """Nodes in the post-order of a depth-first walk from the graph outputs, inputs in slot
    order: an order made from the graph's structure alone. tf2onnx sorts by names that carry
    process-wide counters (``Unsqueeze__98``, later ``Unsqueeze__102``), so a second export in
    one process met the nodes in another order."""
    for graph in model.graphs():
        nodes = list(graph)
        members = {id(n) for n in nodes}
        order, placed = [], set()
        for start in _producers([*graph.outputs], members):
            stack = [(start, False)]
            while stack:
                node, expanded = stack.pop()
                if id(node) in placed:
                    continue
                if expanded:
                    placed.add(id(node))
                    order.append(node)
                    continue
                stack.append((node, True))
                stack.extend((p, False) for p in reversed(_producers(_reads(node), members)) if id(p) not in placed)
        order += [n for n in nodes if id(n) not in placed]  # dead nodes: dead-code elimination drops them
        for node in nodes:
            graph.remove(node)
        graph.extend(order)


def _reads(node: ir.Node) -> list:
    """The node's inputs, then the outer values its subgraphs read."""
    values = [v for v in node.inputs if v is not None]
    for attribute in node.attributes.values():
        subgraphs = attribute.value if attribute.type == ir.AttributeType.GRAPHS else [attribute.value]
        for subgraph in subgraphs if attribute.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) else []:
            values += [v for inner in subgraph for v in inner.inputs if v is not None and v.graph is not subgraph]
    return values


def _producers(values: list, members: set[int]) -> list:
    found = []
    for value in values:
        producer = value.producer()
        if producer is not None and id(producer) in members and producer not in found:
            found.append(producer)
    return found
