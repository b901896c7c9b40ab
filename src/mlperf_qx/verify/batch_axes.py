"""Outputs whose batch axis is not the first (a CTC recognizer's (time, batch, classes), ddddocr's
output '387'): the SUT hands the task batch-first arrays, so one response per sample is one row.

Where an output's batch axis is depends on the model: declared (the output's dim named like an
input's leading dim, e.g. ``seq x batch x classes`` for an input ``batch x ...``), or given with
``--batch-axis OUTPUT=AXIS`` where the declaration is missing or wrong.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx

from ..errors import UserInputError


def parse_batch_axes(flags: list[str]) -> dict[str, int]:
    axes = {}
    for flag in flags:
        name, sep, axis = flag.rpartition("=")
        if not sep or not name or not axis.lstrip("-").isdigit():
            raise UserInputError(f"--batch-axis '{flag}': expected OUTPUT=AXIS, e.g. 387=1")
        axes[name] = int(axis)
    return axes


def declared_batch_axes(proto: onnx.ModelProto) -> dict[str, int]:
    """Outputs whose only dim named like an input's leading (batch) dim is not axis 0."""
    batch_names = {i.type.tensor_type.shape.dim[0].dim_param for i in proto.graph.input
                   if len(i.type.tensor_type.shape.dim) and i.type.tensor_type.shape.dim[0].dim_param}
    axes = {}
    for output in proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        named = [k for k, d in enumerate(dims) if d.dim_param and d.dim_param in batch_names]
        if len(named) == 1 and named[0] != 0:
            axes[output.name] = named[0]
    return axes


def batch_axes_for(proto: onnx.ModelProto, given: dict[str, int]) -> dict[str, int]:
    """The declared axes, overridden by ``--batch-axis``; a flag naming no output is refused."""
    outputs = [o.name for o in proto.graph.output]
    unknown = [name for name in given if name not in outputs]
    if unknown:
        raise UserInputError(f"--batch-axis '{unknown[0]}': the model's outputs are {', '.join(outputs)}")
    return {**declared_batch_axes(proto), **given}


def batch_first(backend, axes: dict[str, int]):
    """``backend`` whose named outputs come with their batch axis moved to the front."""
    if not axes:
        return backend
    run = backend.run

    def moved(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = run(feeds)
        for name, axis in axes.items():
            if name in outputs:
                array = outputs[name]
                if not -array.ndim <= axis < array.ndim:
                    raise UserInputError(f"--batch-axis {name}={axis}: output '{name}' has shape {array.shape}")
                outputs[name] = np.moveaxis(array, axis, 0)
        return outputs

    return replace(backend, run=moved)
