#!/usr/bin/env bash
# The model owner's pipeline on the embedded default (scikit-learn's digits), end to end.
# Usage: examples/digits/run_all.sh [OUT_DIR]   (default build/digits)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-build/digits}"
mkdir -p "$out"

echo "== 1. data: fixed split, validation and calibration candidates as .npy + val_map"
python "$here/dataset.py" --out "$out/data"

echo "== 2. train the PyTorch reference (fixed seeds)"
python "$here/train_torch.py" --out "$out"

echo "== 3. export the PyTorch reference to ONNX (canonicalized, checked against torch)"
qx export --framework torch --model "$here/model_torch.py:DigitsNet" \
  --weights "$out/digits_torch.safetensors" --input image:1x1x8x8 --dynamic-batch \
  -o "$out/digits_torch.onnx"
qx inspect "$out/digits_torch.onnx"

echo "== 4. train the TensorFlow/Keras reference (fixed seeds, same split)"
python "$here/train_tf.py" --out "$out"

echo "== 5. export the TensorFlow reference to ONNX (same passes, checked against Keras)"
qx export --framework tf --model "$out/digits_tf.keras" --dynamic-batch -o "$out/digits_tf.onnx"

echo "== 6. quantize to symmetric per-tensor int8 on the calibration list (entropy calibration)"
qx quantize "$out/digits_torch.onnx" --calib "$out/data/calibration_candidates" \
  --calib-list "$here/../../calib/digits_calibration.txt" --method entropy \
  --cache "$out/digits_calibration_cache.json" --trt-cache "$out/digits_trt_calibration.cache" \
  --report "$out/quantization_report" -o "$out/digits_int8.onnx"
qx quantize "$out/digits_torch.onnx" --calib "$out/data/calibration_candidates" \
  --calib-list "$here/../../calib/digits_calibration.txt" --format qoperator -o "$out/digits_int8_qoperator.onnx"

echo "== 7. quick validation accuracy of all four ONNX models"
python "$here/evaluate.py" --data "$out/data" "$out/digits_torch.onnx" "$out/digits_tf.onnx" \
  "$out/digits_int8.onnx" "$out/digits_int8_qoperator.onnx"

echo "== 8. verify the int8 model against the FP32 reference under LoadGen: extensional + intensional"
qx verify-equivalence --reference "$out/digits_torch.onnx" --candidate "$out/digits_int8.onnx" \
  --dataset "$out/data/validation" --labels "$out/data/validation_map.txt" \
  --calib-list "$here/../../calib/digits_calibration.txt" --target 99.9 --duration-ms 1000 --out "$out/verify" \
  --submission-dir "$out/submission/results/cpu-2core"

echo "== done: artifacts in $out"
