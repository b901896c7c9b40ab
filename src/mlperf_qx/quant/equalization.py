"""Equalization: a recorded, exactly invertible rescaling of channels, applied to an FP32 graph.

Two rewrites, both x -> x / s on one side and W -> W * s on the other, per channel:

- **smoothquant**: the input channels of the linear layers (MatMul with a constant 2-D weight, or
  Gemm without transA: torch's TorchScript exporter writes 2-D Linears as Gemm with transB) that
  read one activation. The activation is divided by s (folded into the LayerNormalization
  that produces it when the linear layers are its only readers, else by an explicit FP32 Mul in
  front of them) and each weight row multiplied by s. Activation outliers of trained transformers
  move into the weights, which are quantized to one scale per tensor just as well.
- **cle** (cross-layer equalization): Conv -> Relu -> Conv; the first Conv's output channel
  (weights and bias) divided by s, the second Conv's input channel multiplied by s (Relu is
  positively homogeneous, so this is exact).

Every factor is a power of two, s = 2**e with a small integer e. Multiplying a float32 by a power
of two only changes its exponent, so x/s * W*s has exactly the products of x * W: the rewritten
model is the same mathematics, and ``qx verify-equivalence`` can rebuild it from the FP32
reference and the recorded exponents and check that it is.

This module only applies a record (``EqualizationRecord``); choosing the factors from calibration
data is ``smoothquant.py``'s and ``cle.py``'s job. Quantize and verify apply records with the same
function, so the two cannot disagree about what a record means.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from ..errors import UserInputError
from ..ir.graph_edit import constant_array, new_initializer

MAX_EXPONENT = 20  # |e| <= 20: factors between 1e-6 and 1e6, far from float32's range limits


@dataclass(frozen=True)
class SmoothGroup:
    """The MatMuls ``consumers`` read ``input``; its channel j is divided by 2**exponents[j]."""

    input: str
    consumers: tuple[str, ...]
    inverse: str  # "layernorm": folded into the producing LayerNormalization; "mul": an FP32 Mul node
    exponents: tuple[int, ...]
    alpha: float | None = None  # the migration strength chosen (None: given or identity)
    # Outlier channels taken out of the int8 MatMuls (their x and weight rows zeroed there) and
    # computed by a small FP32 MatMul on the side, added back to each output (LLM.int8()'s
    # decomposition): exact up to float summation order. Needs inverse "mul".
    split: tuple[int, ...] = ()


@dataclass(frozen=True)
class ClePair:
    """Conv ``first`` -> Relu -> Conv ``second``: channel j of the first divided by 2**exponents[j]."""

    first: str
    second: str
    exponents: tuple[int, ...]


@dataclass
class EqualizationRecord:
    smoothquant: list[SmoothGroup] = field(default_factory=list)
    cle: list[ClePair] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.smoothquant or self.cle)

    @property
    def passes(self) -> list[str]:
        return [name for name, items in (("smoothquant", self.smoothquant), ("cle", self.cle)) if items]

    def to_json(self) -> str:
        """Canonical text (sorted keys, exponents as base64 int8): it is hashed and stored in the model."""
        # Field by field, not dataclasses.asdict, which deep-copies every exponent (67 ms of CPU a
        # call on all-mpnet-base-v2's 48 groups, 2 ms this way); it is hashed and stored 3 times a run.
        payload = {
            "version": 1,
            "smoothquant": [{"input": g.input, "consumers": list(g.consumers), "inverse": g.inverse,
                             "exponents": _pack(g.exponents), "alpha": g.alpha, "split": list(g.split)}
                            for g in self.smoothquant],
            "cle": [{"first": p.first, "second": p.second, "exponents": _pack(p.exponents)} for p in self.cle],
        }
        return json.dumps(payload, sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_json(cls, text: str) -> "EqualizationRecord":
        try:
            payload = json.loads(text)
            groups = [SmoothGroup(g["input"], tuple(g["consumers"]), g["inverse"], _unpack(g["exponents"]),
                                  g.get("alpha"), tuple(int(c) for c in g.get("split", ())))
                      for g in payload.get("smoothquant", [])]
            pairs = [ClePair(p["first"], p["second"], _unpack(p["exponents"])) for p in payload.get("cle", [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserInputError(f"equalization record is malformed ({exc})") from None
        return cls(groups, pairs)


def _pack(exponents: tuple[int, ...]) -> str:
    return base64.b64encode(np.asarray(exponents, np.int8).tobytes()).decode()


def _unpack(text: str) -> tuple[int, ...]:
    return tuple(int(e) for e in np.frombuffer(base64.b64decode(text), np.int8))


def balancing_exponents(first: np.ndarray, second: np.ndarray, alpha: float) -> np.ndarray:
    """Per channel, e = round(log2(first**alpha / second**(1 - alpha))) within +-MAX_EXPONENT; 0
    where either range is 0. smoothquant balances activation against weight ranges with its alpha,
    CLE two weight ranges with alpha 0.5 (s = sqrt(r1 / r2))."""
    first, second = first.astype(np.float64), second.astype(np.float64)
    usable = (first > 0) & (second > 0)
    ratio = np.ones_like(first)
    ratio[usable] = first[usable] ** alpha / second[usable] ** (1.0 - alpha)
    return np.clip(np.rint(np.log2(ratio)), -MAX_EXPONENT, MAX_EXPONENT).astype(np.int32)


def factors(exponents: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """2**e as float32: exact for |e| <= MAX_EXPONENT."""
    return np.ldexp(np.float32(1.0), np.asarray(exponents, np.int32)).astype(np.float32)


def inverse_node_name(group: SmoothGroup) -> str:
    return f"{group.input}_smoothquant_inverse"


def smoothed_name(group: SmoothGroup) -> str:
    """The explicit inverse's output: what the group's linear layers read (inverse "mul")."""
    return f"{group.input}_smoothed"


def outlier_add_name(consumer: str) -> str:
    """The Add that puts a split layer's FP32 side path back: inputs (the int8 part's output, the side product)."""
    return f"{consumer}_outlier_add"


def inverse_factors(group: SmoothGroup) -> np.ndarray:
    """Per channel, what the group's input is multiplied by: 1/s (exact, a power of two), and 0 on
    the split-off channels, which reach the int8 MatMuls as exact zeros."""
    inverse = (np.float32(1.0) / factors(group.exponents)).astype(np.float32)
    inverse[np.asarray(group.split, np.int64)] = 0.0
    return inverse


def inverse_nodes_kept_fp32(record: EqualizationRecord) -> dict[str, str]:
    """The explicit inverse Muls and the outlier side paths, with why they stay FP32 (per-channel
    powers of two between 2**-20 and 2**20 have no common int8 grid, and the identity proof needs
    them exact; outlier channels are split off precisely to be computed in FP32)."""
    kept = {}
    for g in record.smoothquant:
        if g.inverse == "mul":
            kept[inverse_node_name(g)] = (f"the FP32 inverse of smoothquant's factors for '{g.input}' (per-channel "
                                          "powers of two; exact in FP32, no common int8 grid)")
        if g.split:
            why = f"FP32 side path of {len(g.split)} outlier channel(s) of '{g.input}' split off the int8 MatMuls"
            kept[_gather_name(g)] = why
            for consumer in g.consumers:
                kept[f"{consumer}_outlier_matmul"] = why
                kept[outlier_add_name(consumer)] = why
    return kept


def linear_weight(node: ir.Node) -> np.ndarray | None:
    """The (input channels x outputs) weight of a linear layer smoothquant can rescale: a MatMul by
    a constant 2-D matrix, or a Gemm without transA (its B, transposed back when transB); else None."""
    if node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
        return None
    weight = constant_array(node.inputs[1])
    if weight is None or weight.ndim != 2:
        return None
    if node.op_type == "MatMul":
        return weight
    if node.op_type == "Gemm" and not _int_attribute(node, "transA"):
        return weight.T if _int_attribute(node, "transB") else weight
    return None


def _int_attribute(node: ir.Node, name: str) -> int:
    attribute = node.attributes.get(name)
    return 0 if attribute is None else int(attribute.value)


def _store_linear_weight(graph: ir.Graph, node: ir.Node, weight: np.ndarray, suffix: str) -> None:
    """The inverse of ``linear_weight``: store an (inputs x outputs) weight in the node's layout."""
    if node.op_type == "Gemm" and _int_attribute(node, "transB"):
        weight = np.ascontiguousarray(weight.T)
    _replace_constant(graph, node, 1, weight, suffix)


def _gather_name(group: SmoothGroup) -> str:
    return f"{group.input}_outlier_channels"


def apply_equalization(model: ir.Model, record: EqualizationRecord) -> None:
    """Rewrite ``model`` in place as ``record`` says; raises UserInputError naming the first node
    or tensor the record does not fit (a record made for another graph)."""
    nodes = {node.name: node for node in model.graph}
    values = {v.name: v for node in model.graph for v in node.outputs}
    values.update({v.name: v for v in model.graph.inputs})
    for group in record.smoothquant:
        _apply_smooth(model.graph, nodes, values, group)
    for pair in record.cle:
        _apply_cle(model.graph, nodes, pair)
    model.graph.sort()


def _fail(what: str) -> UserInputError:
    return UserInputError(f"equalization record does not fit the model: {what}")


def _checked_exponents(exponents: tuple[int, ...], channels: int, where: str) -> np.ndarray:
    if len(exponents) != channels:
        raise _fail(f"{where} has {channels} channels, the record {len(exponents)} factors")
    array = np.asarray(exponents, np.int32)
    if array.size and np.abs(array).max() > MAX_EXPONENT:
        raise _fail(f"{where}: a factor 2**{int(np.abs(array).max())} is outside 2**±{MAX_EXPONENT}")
    return array


def _replace_constant(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray, suffix: str) -> None:
    """Give ``node.inputs[index]`` new constant data under a fresh name (the old initializer may be
    shared with a node that is not rescaled; dead ones are removed later)."""
    old = node.inputs[index]
    node.replace_input_with(index, new_initializer(graph, f"{old.name}_{suffix}", array))


def _apply_smooth(graph: ir.Graph, nodes: dict, values: dict, group: SmoothGroup) -> None:
    x = values.get(group.input)
    if x is None:
        raise _fail(f"no tensor '{group.input}'")
    consumers = []
    for name in group.consumers:
        node = nodes.get(name)
        weight = linear_weight(node) if node is not None else None
        if weight is None or node.inputs[0] is not x:
            raise _fail(f"'{name}' is not a MatMul (or Gemm) of '{group.input}' by a constant 2-D weight")
        consumers.append((node, weight))
    channels = consumers[0][1].shape[0]
    scale = factors(_checked_exponents(group.exponents, channels, f"'{group.input}'"))
    split = np.asarray(group.split, np.int64)
    if split.size and (group.inverse != "mul" or split.min() < 0 or split.max() >= channels
                       or np.unique(split).size != split.size):
        raise _fail(f"outlier channels {list(group.split)[:4]} of '{group.input}' are not valid distinct channels "
                    "of an explicit inverse")
    inverse = inverse_factors(group)
    for node, weight in consumers:
        smoothed = np.multiply(weight, scale[:, None], dtype=np.float32)  # float32 x a power of two: exact, no copy after
        smoothed[split] = 0.0  # computed on the FP32 side path instead
        if split.size:
            _add_outlier_path(graph, nodes, x, group, node, weight[split])
        _store_linear_weight(graph, node, smoothed, "smoothquant")
    if group.inverse == "layernorm":
        norm = x.producer()
        readers = {use.node.name for use in x.uses()}
        if norm is None or norm.op_type != "LayerNormalization" or readers != set(group.consumers) or x.is_graph_output():
            raise _fail(f"'{group.input}' is not a LayerNormalization output read only by {list(group.consumers)}")
        for index in (1, 2):
            if index < len(norm.inputs) and norm.inputs[index] is not None:
                param = constant_array(norm.inputs[index])
                if param is None or param.shape[-1] != channels:
                    raise _fail(f"LayerNormalization '{norm.name}' has no constant per-channel parameter {index}")
                _replace_constant(graph, norm, index, (param * inverse).astype(np.float32), "smoothquant")
    elif group.inverse == "mul":
        name = inverse_node_name(group)
        if name in nodes:
            raise _fail(f"node '{name}' already exists")
        mul = ir.Node("", "Mul", [x, new_initializer(graph, f"{group.input}_smoothquant_inverse_factors", inverse)],
                      name=name)
        mul.outputs[0].name = smoothed_name(group)
        mul.outputs[0].dtype = ir.DataType.FLOAT
        mul.outputs[0].shape = x.shape
        producer = x.producer()
        if producer is not None:
            graph.insert_after(producer, mul)
        else:
            graph.insert_before(next(iter(graph)), mul)
        nodes[name] = mul
        for node, _ in consumers:
            node.replace_input_with(0, mul.outputs[0])
    else:
        raise _fail(f"unknown inverse '{group.inverse}' for '{group.input}'")


def outlier_join(linear: ir.Node) -> ir.Value:
    """Where a split layer's FP32 side path is added back: the linear layer's bias Add when it has
    one (its only reader), so the int8 MatMul keeps its int32 bias; else its own output."""
    out = linear.outputs[0]
    uses = list(out.uses())
    if len(uses) == 1 and uses[0].node.op_type == "Add" and constant_array(uses[0].node.inputs[1 - uses[0].idx]) is not None:
        return uses[0].node.outputs[0]
    return out


def _add_outlier_path(graph: ir.Graph, nodes: dict, x: ir.Value, group: SmoothGroup, matmul: ir.Node,
                      rows: np.ndarray) -> None:
    """out := out + Gather(x, split, axis=-1) @ W[split]; ``out`` is the MatMul's bias Add when it
    has one (its only reader), so the int8 MatMul keeps its int32 bias."""
    gather_name = _gather_name(group)
    gather = nodes.get(gather_name)
    if gather is None:
        indices = new_initializer(graph, f"{group.input}_outlier_indices", np.asarray(group.split, np.int64))
        gather = ir.Node("", "Gather", [x, indices], attributes=[ir.AttrInt64("axis", -1)], name=gather_name)
        gather.outputs[0].name = f"{group.input}_outliers"
        gather.outputs[0].dtype = ir.DataType.FLOAT
        if x.producer() is not None:
            graph.insert_after(x.producer(), gather)
        else:
            graph.insert_before(next(iter(graph)), gather)
        nodes[gather_name] = gather
    out = outlier_join(matmul)
    if out.is_graph_output():
        raise _fail(f"'{matmul.name}' ends the graph; its outlier channels cannot be added back")
    weights = new_initializer(graph, f"{matmul.name}_outlier_weights", rows.astype(np.float32))
    side = ir.Node("", "MatMul", [gather.outputs[0], weights], name=f"{matmul.name}_outlier_matmul")
    side.outputs[0].name = f"{matmul.name}_outlier_product"
    side.outputs[0].dtype = ir.DataType.FLOAT
    readers = [(use.node, use.idx) for use in out.uses()]
    add = ir.Node("", "Add", [out, side.outputs[0]], name=outlier_add_name(matmul.name))
    add.outputs[0].name = f"{out.name}_with_outliers"
    add.outputs[0].dtype = ir.DataType.FLOAT
    add.outputs[0].shape = out.shape
    graph.insert_after(out.producer(), [side, add])
    for reader, index in readers:
        reader.replace_input_with(index, add.outputs[0])


def _apply_cle(graph: ir.Graph, nodes: dict, pair: ClePair) -> None:
    first, second = nodes.get(pair.first), nodes.get(pair.second)
    if first is None or second is None or first.op_type != "Conv" or second.op_type != "Conv":
        raise _fail(f"'{pair.first}' -> '{pair.second}' is not a Conv pair")
    w1, w2 = constant_array(first.inputs[1]), constant_array(second.inputs[1])
    if w1 is None or w2 is None or w2.shape[1] != w1.shape[0]:
        raise _fail(f"'{pair.first}' -> '{pair.second}': weights are not constant or channels do not line up")
    scale = factors(_checked_exponents(pair.exponents, w1.shape[0], f"'{pair.first}'"))
    inverse = (np.float32(1.0) / scale).astype(np.float32)
    shape = (-1,) + (1,) * (w1.ndim - 1)
    _replace_constant(graph, first, 1, (w1 * inverse.reshape(shape)).astype(np.float32), "cle")
    if len(first.inputs) > 2 and first.inputs[2] is not None:
        bias = constant_array(first.inputs[2])
        if bias is None:
            raise _fail(f"'{pair.first}' has a bias computed at run time")
        _replace_constant(graph, first, 2, (bias * inverse).astype(np.float32), "cle")
    _replace_constant(graph, second, 1, (w2 * scale.reshape((1, -1) + (1,) * (w2.ndim - 2))).astype(np.float32), "cle")
