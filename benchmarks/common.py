"""Shared benchmark setup: the ResNet-50 ONNX model and a folder of calibration samples, built once
into benchmarks/.cache/ (ignored by git)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
MODEL = CACHE / "resnet50.onnx"
SAMPLES = CACHE / "samples"
MAX_SAMPLES = 500
# The qx command of the interpreter running the benchmark (a virtual environment's, even when it is
# not activated); "qx" from PATH where that interpreter has none.
QX = str(Path(sys.executable).with_name("qx")) if Path(sys.executable).with_name("qx").exists() else "qx"


def ensure_model() -> Path:
    if MODEL.exists():
        return MODEL
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(HERE))
    from resnet50 import ResNet50

    CACHE.mkdir(exist_ok=True)
    torch.manual_seed(0)
    weights = CACHE / "resnet50.safetensors"
    save_file({k: v.contiguous() for k, v in ResNet50().state_dict().items()}, str(weights))
    subprocess.run([QX, "export", "--framework", "torch", "--model", f"{HERE / 'resnet50.py'}:ResNet50",
                    "--weights", str(weights), "--input", "image:1x3x224x224", "--dynamic-batch", "--opset", "17",
                    "--tolerance", "1e-3,1e-3", "-o", str(MODEL)], check=True, stdout=subprocess.DEVNULL)
    return MODEL


def ensure_samples(count: int = MAX_SAMPLES) -> Path:
    SAMPLES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        path = SAMPLES / f"sample_{index:04d}.npy"
        image = rng.standard_normal((3, 224, 224)).astype(np.float32)  # drawn even if present: same stream
        if not path.exists():
            np.save(path, image)
    return SAMPLES


def sample_paths(count: int) -> list[Path]:
    return sorted(SAMPLES.glob("sample_*.npy"))[:count]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run_worker(script: Path, args: list[str], timeout: float = 1800) -> dict:
    """Run one measurement in a fresh process; it prints one JSON line."""
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, str(script), "--worker", *args], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {done.returncode}: {tail[0][:200]}", "wall_s": time.perf_counter() - started}
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(str(c).ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)))


def ort_quantize_static(model: Path, out: Path, count: int, method: str = "minmax") -> None:
    """onnxruntime's own static quantization, configured as the MLPerf scheme: QDQ, int8 activations
    and weights, symmetric, per-tensor."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.paths = iter(sample_paths(count))

        def get_next(self):
            path = next(self.paths, None)
            return None if path is None else {"image": np.load(path)[None]}

    quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=False,
                    calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}[method],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
