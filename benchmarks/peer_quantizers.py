"""int8 files of the same FP32 model written by other quantizers, for a side-by-side speed check.

They answer one question about a runtime's int8 figure: is it qx's file, or the runtime on this
CPU? Each peer calibrates on the same samples as qx, with per-tensor weights as qx's scheme has:

- onnxruntime's ``quantize_static``, QDQ, in its default encoding (uint8 activations with a zero
  point, asymmetric) and in the encoding qx's scheme prescribes (int8 activations, symmetric);
- NNCF, OpenVINO's own quantizer (``pip install nncf``; skipped when absent), in its default
  "performance" preset (symmetric, unsigned 8-bit after a ReLU), written as OpenVINO IR: it runs
  on OpenVINO only.

Speed only: these files are not qx's scheme (the first and the last use uint8 grids the LCD scheme
excludes), and nothing checks their accuracy here. Built once into benchmarks/.cache/.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ORT_UNSIGNED = "onnxruntime U8 asymmetric"
ORT_SIGNED = "onnxruntime S8 symmetric"
NNCF = "nncf (OpenVINO's quantizer)"


def onnxruntime_qdq(model: Path, feeds: list[np.ndarray], out: Path, signed: bool) -> Path:
    """onnxruntime's static QDQ quantization of ``model`` (MinMax, per-tensor weights)."""
    if out.exists():
        return out
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = onnx.load(str(model), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.left = iter(feeds)

        def get_next(self):
            feed = next(self.left, None)
            return None if feed is None else {name: feed}

    activation = QuantType.QInt8 if signed else QuantType.QUInt8
    quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=activation,
                    weight_type=QuantType.QInt8, per_channel=False,
                    extra_options={"ActivationSymmetric": signed, "WeightSymmetric": True})
    return out


def nncf_ir(model: Path, feeds: list[np.ndarray], out: Path, transformer: bool) -> Path | None:
    """NNCF's post-training quantization of ``model`` with per-tensor weights, as OpenVINO IR;
    None when NNCF is not installed."""
    if out.exists():
        return out
    try:
        import nncf
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters
    except ImportError:
        return None
    import openvino as ov

    per_tensor = AdvancedQuantizationParameters(weights_quantization_params=QuantizationParameters(per_channel=False))
    quantized = nncf.quantize(ov.Core().read_model(str(model)), nncf.Dataset(feeds), subset_size=len(feeds),
                              model_type=nncf.ModelType.TRANSFORMER if transformer else None,
                              advanced_parameters=per_tensor)
    ov.save_model(quantized, str(out))
    return out


def peer_models(fp32: Path, feeds: list[np.ndarray], transformer: bool) -> dict[str, Path]:
    """The peers' files of ``fp32`` by label, next to it."""
    peers = {ORT_UNSIGNED: onnxruntime_qdq(fp32, feeds, fp32.with_name(fp32.stem + "_ort_u8_qdq.onnx"), signed=False),
             ORT_SIGNED: onnxruntime_qdq(fp32, feeds, fp32.with_name(fp32.stem + "_ort_s8_qdq.onnx"), signed=True)}
    nncf_file = nncf_ir(fp32, feeds, fp32.with_name(fp32.stem + "_nncf.xml"), transformer)
    if nncf_file is not None:
        peers[NNCF] = nncf_file
    return peers
