"""The canonicalization pipeline, top to bottom. None of these passes changes numerics."""

from __future__ import annotations

from .pass_base import Pipeline
from .passes.cancel_transposes import CancelTransposes
from .passes.eliminate_dead_code import EliminateDeadCode
from .passes.fold_batchnorm import FoldBatchNorm
from .passes.fold_channel_affine import FoldChannelAffine
from .passes.fold_constants import FoldConstants
from .passes.infer_shapes import InferShapes
from .passes.lift_constants import LiftConstantsToInitializers
from .passes.remove_identity_dropout import RemoveIdentityAndDropout
from .passes.remove_noop_reshapes import RemoveNoOpReshapes
from .passes.stable_names import StableNames
from .passes.strip_debug_metadata import StripDebugMetadata
from .passes.topological_sort import TopologicalSort


def canonicalization_pipeline() -> Pipeline:
    return Pipeline(
        [
            StripDebugMetadata(),
            TopologicalSort(),
            LiftConstantsToInitializers(),
            RemoveIdentityAndDropout(),
            InferShapes(),  # FoldConstants folds a Shape only of a known shape: without this, a second run folds more
            FoldConstants(),  # exporters often feed BatchNorm parameters through Cast/Expand
            CancelTransposes(),  # tf2onnx's NHWC<->NCHW pairs around convolutions
            InferShapes(),  # BatchNorm without a producer to fold into needs the input rank
            RemoveNoOpReshapes(),  # tf2onnx keeps some and drops others by set order; before the folds they block
            FoldBatchNorm(),
            FoldChannelAffine(),  # per-channel Mul/Add after a layer, whoever wrote it (tf2onnx's BatchNorm)
            EliminateDeadCode(),
            TopologicalSort(),
            InferShapes(),
            StableNames(),
        ]
    )
