"""The inputs a model expects: names, shapes (None where symbolic) and dtypes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def has_batch_axis(self) -> bool:
        """Whether axis 0 is a batch: declared symbolic or 1. A recurrent state declared 2x?x128
        (silero VAD) or a scalar (its sample rate) has none, and is fed as declared."""
        return len(self.shape) >= 1 and self.shape[0] in (None, 1)

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        """Shape of one sample: the input shape without its batch dimension (the whole declared
        shape when axis 0 is not a batch)."""
        return self.shape[1:] if self.has_batch_axis else self.shape

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}:{dims}:{self.dtype}"


def model_inputs(model: ir.Model) -> list[ModelInput]:
    inputs = []
    for value in model.graph.inputs:
        if value.is_initializer():
            continue
        # A negative dim (Paddle2ONNX writes -1) is as unknown as a symbolic one.
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (value.shape or ()))
        dtype = np.dtype(value.dtype.numpy()) if value.dtype is not None else np.dtype(np.float32)
        inputs.append(ModelInput(value.name, shape, dtype))
    return inputs
