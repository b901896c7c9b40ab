"""What every importer hands to the export pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx_ir as ir

from ..input_spec import InputSpec

RunReference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class ImportedModel:
    model: ir.Model
    inputs: list[InputSpec]
    output_names: list[str]
    run_reference: RunReference  # the framework itself, for the FP32 check
    framework: str
    source_hashes: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    exporter: str = ""
