"""``qx inspect``: what an ONNX model takes, gives, contains and where it came from."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx
import typer
from rich.console import Console
from rich.table import Table

from ..onnx_io import load_model_proto
from ..provenance import read_from_model_props

HELP = "Show a model's inputs, outputs, op counts and provenance."


def describe(path: Path) -> dict:
    proto = load_model_proto(path, load_external_data=False)
    graph = proto.graph
    initializer_names = {t.name for t in graph.initializer}
    return {
        "model": str(path),
        "ir_version": proto.ir_version,
        "opsets": {op.domain or "ai.onnx": op.version for op in proto.opset_import},
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "inputs": [_value_info(v) for v in graph.input if v.name not in initializer_names],
        "outputs": [_value_info(v) for v in graph.output],
        "op_counts": dict(sorted(Counter(n.op_type for n in graph.node).items())),
        "nodes": len(graph.node),
        "subgraph_nodes": sum(len(g.node) for g in _subgraphs(graph)),
        "parameters": _parameters(graph),
        "provenance": read_from_model_props({p.key: p.value for p in proto.metadata_props}),
    }


def _subgraphs(graph: onnx.GraphProto):
    """Every graph nested in ``graph``'s nodes (If branches, Loop bodies), at any depth."""
    for node in graph.node:
        for attribute in node.attribute:
            nested = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
            for sub in nested:
                yield sub
                yield from _subgraphs(sub)


def _parameters(graph: onnx.GraphProto) -> int:
    """Values stored in the model: initializers and Constant nodes (Paddle2ONNX and TorchScript
    exports keep weights there), in the main graph and in If/Loop bodies."""
    total = 0
    for g in (graph, *_subgraphs(graph)):
        total += sum(_numel(t) for t in g.initializer)
        for node in g.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                total += sum(_constant_size(a) for a in node.attribute)
    return total


def _constant_size(attribute: onnx.AttributeProto) -> int:
    if attribute.type == onnx.AttributeProto.TENSOR:
        return _numel(attribute.t)
    if attribute.type == onnx.AttributeProto.SPARSE_TENSOR:
        return _numel(attribute.sparse_tensor.values)
    if attribute.type in (onnx.AttributeProto.FLOATS, onnx.AttributeProto.INTS, onnx.AttributeProto.STRINGS):
        return len(attribute.floats) + len(attribute.ints) + len(attribute.strings)
    return 1  # value_float, value_int, value_string


def _numel(tensor: onnx.TensorProto) -> int:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count


def _value_info(value: onnx.ValueInfoProto) -> dict:
    tensor = value.type.tensor_type
    dims = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
            for d in tensor.shape.dim]
    return {"name": value.name, "dtype": onnx.TensorProto.DataType.Name(tensor.elem_type).lower(), "shape": dims}


def inspect(
    model: Path = typer.Argument(..., help="ONNX model"),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON"),
) -> None:
    info = describe(model)
    if as_json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return
    console = Console()
    console.print(f"[bold]{model}[/bold]  ir {info['ir_version']}  opsets {info['opsets']}  "
                  f"producer {info['producer'] or '?'}  {info['nodes']} nodes"
                  + (f" (+{info['subgraph_nodes']} in If/Loop bodies)" if info["subgraph_nodes"] else "")
                  + f"  {info['parameters']:,} parameters")
    io = Table(title="inputs and outputs", show_edge=False)
    for column in ("kind", "name", "dtype", "shape"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            io.add_row(kind[:-1], v["name"], v["dtype"], "x".join(str(d) for d in v["shape"]))
    console.print(io)
    ops = Table(title="op counts", show_edge=False)
    ops.add_column("op")
    ops.add_column("count", justify="right")
    for op, count in info["op_counts"].items():
        ops.add_row(op, str(count))
    console.print(ops)
    if info["provenance"]:
        prov = Table(title="provenance (qx.* metadata)", show_edge=False)
        prov.add_column("key")
        prov.add_column("value", overflow="fold")
        for key, value in sorted(info["provenance"].items()):
            prov.add_row(key, value if isinstance(value, str) else json.dumps(value))
        console.print(prov)
