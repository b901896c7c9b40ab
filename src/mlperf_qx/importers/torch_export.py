"""PyTorch eager module -> onnx_ir model, through torch.onnx (dynamo exporter, or legacy by flag)."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import torch

from ..errors import UserInputError, first_line
from ..input_spec import InputSpec
from ..ir.graph_edit import claim_fresh_name
from ..provenance import package_versions, sha256_file
from .base import ImportedModel
from .torch_loading import apply_state_dict, build_module, load_state_dict, resolve_model_source

EXPORTERS = ("dynamo", "legacy")


def import_torch(
    model_spec: str,
    weights: Path,
    inputs: list[InputSpec],
    *,
    model_kwargs: str | None,
    output_names: list[str] | None,
    opset: int,
    dynamic_batch: bool,
    exporter: str,
) -> ImportedModel:
    obj, source = resolve_model_source(model_spec)
    module = build_module(obj, model_spec, model_kwargs)
    apply_state_dict(module, load_state_dict(weights), weights)
    module.eval()

    trace_inputs = [s.with_batch(2) if dynamic_batch and s.shape and s.shape[0] == 1 else s for s in inputs]
    example = _example_tensors(trace_inputs)
    outputs = _run_module(module, example, inputs)
    names = _output_names(output_names, len(outputs))
    exported = _export(module, example, inputs, names, opset, dynamic_batch, exporter)

    def run_reference(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in inputs)
        results = _run_module(module, tensors, inputs)
        return {n: r.detach().numpy() for n, r in zip(names, results)}

    hashes = {"weights_sha256": sha256_file(weights)}
    if source is not None:
        hashes["model_source_sha256"] = sha256_file(source)
    return ImportedModel(
        model=exported,
        inputs=inputs,
        output_names=names,
        run_reference=run_reference,
        framework="torch",
        source_hashes=hashes,
        versions=package_versions(["torch", "onnx", "onnxruntime", "onnxscript", "onnx-ir"]),
        exporter=f"torch.onnx ({exporter})",
    )


def _example_tensors(inputs: list[InputSpec]) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    tensors = []
    for spec in inputs:
        dtype = getattr(torch, spec.dtype)
        if dtype.is_floating_point:
            tensors.append(torch.randn(spec.shape, generator=generator).to(dtype))
        else:
            tensors.append(torch.randint(0, 2, spec.shape, generator=generator).to(dtype))
    return tuple(tensors)


def _run_module(module: torch.nn.Module, tensors: tuple, inputs: list[InputSpec]) -> list[torch.Tensor]:
    try:
        with torch.no_grad():
            result = module(*tensors)
    except Exception as exc:
        shapes = ", ".join(str(s) for s in inputs)
        raise UserInputError(f"the model rejects the inputs {shapes}: {first_line(exc)}; check --input") from None
    flat = _flatten(result)
    if not flat:
        raise UserInputError("the model's forward returned no tensors")
    return flat


def _flatten(result) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [t for key in result for t in _flatten(result[key])]
    if isinstance(result, (list, tuple)):
        return [t for item in result for t in _flatten(item)]
    return []


def _output_names(requested: list[str] | None, count: int) -> list[str]:
    if requested:
        if len(requested) != count:
            raise UserInputError(f"--output-name given {len(requested)} times, but the model returns {count} outputs")
        return list(requested)
    return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx prints progress and warnings; qx reports its own summary instead."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _export(module, example, inputs, names, opset, dynamic_batch, exporter) -> ir.Model:
    input_names = [s.name for s in inputs]
    try:
        with _quiet_exporter():
            if exporter == "dynamo":
                return _export_dynamo(module, example, input_names, names, opset, dynamic_batch)
            return _export_legacy(module, example, input_names, names, opset, dynamic_batch)
    except UserInputError:
        raise
    except Exception as exc:
        other = "legacy" if exporter == "dynamo" else "dynamo"
        raise UserInputError(
            f"torch.onnx ({exporter}) could not export the model: {_failure(exc)}; try --exporter {other}"
        ) from exc


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _failure(exc: BaseException) -> str:
    """torch.onnx's own message (colour codes and its 'Next steps' advice dropped), then the
    deepest cause it wraps: the cause is what the user can act on (Swin: 'Cannot view a tensor
    with shape ... as ...')."""
    head = _ANSI.sub("", str(exc)).split(" Next steps:")[0]
    text = first_line(head, empty=type(exc).__name__)
    root, seen = exc, {id(exc)}
    while True:
        inner = root.__cause__ or (None if root.__suppress_context__ else root.__context__)
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        root = inner
    if root is not exc:
        text += f" (caused by {type(root).__name__}: {first_line(_ANSI.sub('', str(root)), limit=500)})"
    return text


def _export_dynamo(module, example, input_names, output_names, opset, dynamic_batch) -> ir.Model:
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: batch} if t.dim() > 0 else None for t in example)
    program = torch.onnx.export(
        module,
        example,
        dynamo=True,
        input_names=input_names,
        opset_version=opset,
        dynamic_shapes=dynamic_shapes,
        verbose=False,
        optimize=True,  # onnxscript cleanup of the raw graph (sequence ops, casts); qx passes follow
    )
    model = program.model
    _name_outputs(model.graph, output_names)
    # Weights may still be views of torch tensors; copy them so the model owns its data.
    for value in model.graph.initializers.values():
        if value.const_value is not None and not isinstance(value.const_value, ir.Tensor):
            value.const_value = ir.tensor(value.const_value.numpy().copy(), name=value.name)
    return model


def _name_outputs(graph: ir.Graph, names: list[str]) -> None:
    """Give the graph outputs the requested names. Named after export, not by the exporter: the
    dynamo exporter names intermediate values after their aten op ("embedding", "linear"), and a
    requested output name equal to one of them made a model with a duplicate name."""
    taken = {v.name for v in graph.inputs} | set(graph.initializers) | {v.name for n in graph for v in n.outputs}
    outputs = list(graph.outputs)
    for value, name in zip(outputs, names):
        if value.name == name:
            continue
        holder = next((v for n in graph for v in n.outputs if v.name == name), None)
        if holder is not None:
            holder.name = claim_fresh_name(f"{name}_intermediate", taken)
        taken.discard(value.name)
        value.name = name
        taken.add(name)


def _export_legacy(module, example, input_names, output_names, opset, dynamic_batch) -> ir.Model:
    buffer = io.BytesIO()
    dynamic_axes = {name: {0: "batch"} for name in [*input_names, *output_names]} if dynamic_batch else None
    torch.onnx.export(
        module,
        example,
        buffer,
        dynamo=False,
        input_names=input_names,
        output_names=output_names,
        opset_version=opset,
        dynamic_axes=dynamic_axes,
        do_constant_folding=True,
        training=torch.onnx.TrainingMode.EVAL,
    )
    return ir.serde.deserialize_model(onnx.load_from_string(buffer.getvalue()))
