"""The zoo's int8 quality table: each real pretrained ONNX file (the cache of
tests/zoo/fetch_real_models.py) and MONAI's 3-D U-Nets, quantized by qx with its defaults (minmax,
per-tensor symmetric int8) as QDQ and QOperator, scored against FP32 on held-out stand-in samples:
output SQNR and cosine (mean and worst sample), and the share of multiply-adds onnxruntime runs in
int8 after its fusions.

    python tests/zoo/fetch_real_models.py && python benchmarks/zoo_quality.py [--methods minmax,entropy]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "zoo"))

from fetch_real_models import cached  # noqa: E402
from real_samples import REAL_MODELS, write_real_samples  # noqa: E402


def qx(*args) -> tuple[int, str]:
    from mlperf_qx.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([str(a) for a in args])
    return code, out.getvalue()


def monai_models(folder: Path) -> dict[str, tuple[Path, Path]]:
    from safetensors.torch import save_file

    from monai_models import MONAI_ZOO, VOLUME

    models = {}
    for name, factory in MONAI_ZOO.items():
        weights = folder / f"{name}.safetensors"
        save_file({k: v.detach().clone().contiguous() for k, v in factory().state_dict().items()}, str(weights))
        fp32 = folder / f"{name}.onnx"
        shape = (1, 1, VOLUME, VOLUME, VOLUME)
        code, _ = qx("export", "--framework", "torch", "--model", REPO / "tests" / "zoo" / f"monai_models.py:{name}",
                     "--weights", weights, "--input", "x:" + "x".join(map(str, shape)), "-o", fp32)
        assert code == 0, name
        rng = np.random.default_rng(0)
        for split, count in (("calib", 6), ("eval", 4)):
            (folder / f"{name}_{split}").mkdir()
            for i in range(count):
                np.save(folder / f"{name}_{split}" / f"s{i}.npy", rng.standard_normal(shape).astype(np.float32))
        models[name] = (fp32, folder / f"{name}_calib", folder / f"{name}_eval")
    return models


def outputs(model: Path, samples: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    rows = []
    for path in sorted(samples.iterdir()):
        feeds = {names[0]: np.load(path)} if path.suffix == ".npy" else dict(np.load(path))
        rows.append(np.concatenate([np.ravel(o).astype(np.float64) for o in session.run(None, feeds)]))
    return rows


def score(reference: list[np.ndarray], candidate: list[np.ndarray]) -> dict:
    cosines = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) for a, b in zip(reference, candidate)]
    signal = sum(float(np.sum(a * a)) for a in reference)
    noise = sum(float(np.sum((a - b) ** 2)) for a, b in zip(reference, candidate))
    return {"sqnr_db": 10 * np.log10(signal / noise) if noise else float("inf"),
            "mean_cosine": float(np.mean(cosines)), "min_cosine": float(np.min(cosines))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="minmax")
    parser.add_argument("--skip-monai", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        models = {}
        for name, (file, _) in REAL_MODELS.items():
            models[name] = (cached(file), write_real_samples(name, folder / f"{name}_calib", 6),
                            write_real_samples(name, folder / f"{name}_eval", 4, seed=1))
        if not args.skip_monai:
            models.update(monai_models(folder))
        for name, (fp32, calib, evaluation) in models.items():
            reference = outputs(fp32, evaluation)
            for method in args.methods.split(","):
                for fmt in ("qdq", "qoperator"):
                    out = folder / f"{name}_{method}_{fmt}.onnx"
                    code, text = qx("quantize", fp32, "--calib", calib, "--method", method, "--format", fmt, "--json",
                                    "-o", out)
                    row = {"model": name, "method": method, "format": fmt, "exit": code}
                    if code == 0:
                        summary = json.loads(text)
                        row.update(score(reference, outputs(out, evaluation)))
                        row["int8_flops_after_fusion"] = summary["int8_matmul_conv_flop_share"]
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    print("| model | method | format | exit | output SQNR (dB) | mean cosine | min cosine | FLOPs int8 after fusion |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        share = r.get("int8_flops_after_fusion")
        print(f"| {r['model']} | {r['method']} | {r['format']} | {r['exit']} | {r.get('sqnr_db', float('nan')):.1f} | "
              f"{r.get('mean_cosine', float('nan')):.4f} | {r.get('min_cosine', float('nan')):.4f} | "
              f"{'-' if share is None else f'{100 * share:.1f}%'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
