"""A model over 2 GB end to end: export (weights as external data), inspect, quantize.

An MLP with two 16384x16384 Linear layers (2.1 GB of float32) is exported with qx export (external
data chosen automatically past the protobuf limit), inspected, and quantized on 4 samples. Prints
the wall time and the files of each step. Needs ~12 GB of RAM and ~7 GB of disk.

    python benchmarks/bench_large_model.py [--width 16384]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MODEL_SOURCE = '''import torch
from torch import nn


class Wide(nn.Module):
    def __init__(self, width: int = {width}):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))
'''


def step(name: str, command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"
    print(f"{name:10s} {seconds:7.1f} s  {status}")
    if done.returncode:
        raise SystemExit(1)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--width", type=int, default=16384)
    parser.add_argument("--folder", type=Path, default=common.CACHE / "large")
    args = parser.parse_args()
    import torch
    from safetensors.torch import save_file

    folder = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "wide.py"
    source.write_text(MODEL_SOURCE.format(width=args.width))
    sys.path.insert(0, str(folder))
    from wide import Wide

    torch.manual_seed(0)
    weights = folder / "wide.safetensors"
    if not weights.exists():
        save_file({k: v.contiguous() for k, v in Wide().state_dict().items()}, str(weights))
    calib = folder / "calib"
    calib.mkdir(exist_ok=True)
    for i in range(4):
        np.save(calib / f"s{i}.npy", np.random.default_rng(i).standard_normal((1, args.width)).astype(np.float32))
    model = folder / "wide.onnx"
    step("export", [common.QX, "export", "--framework", "torch", "--model", f"{source}:Wide", "--weights", str(weights),
                    "--input", f"x:1x{args.width}", "--tolerance", "1e-3,1e-3", "-o", str(model)])
    step("inspect", [common.QX, "inspect", str(model)])
    step("quantize", [common.QX, "quantize", str(model), "--calib", str(calib), "-o", str(folder / "wide_int8.onnx")])
    for path in sorted(folder.glob("wide*.onnx*")):
        print(f"  {path.name:28s} {path.stat().st_size / 1e9:6.2f} GB")


if __name__ == "__main__":
    main()
