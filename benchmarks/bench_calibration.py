"""Calibration speed and memory: qx quantize (and onnxruntime.quantization.quantize_static) as
multiples of the FP32 floor.

ResNet-50 (plain torch definition, random weights, 224x224, opset 18), symmetric per-tensor int8
QDQ, minmax and entropy, at N calibration samples. The floor: bare FP32 onnxruntime inference of
the same N samples at batch 1 (session from the file, then one run per sample). Each measurement
runs in its own process. For qx, the real ``qx quantize`` command runs and its calibration phase is
measured: the call its pipeline times as "calibration" (the calibration set opened, the
calibration session, the pass over the samples, the thresholds), wall and CPU seconds, and the
peak RSS when it returns; the command then stops there unless ``--whole`` (which also prints the
whole command's wall time and peak RSS: loading, writing, the layer-tolerance and int8 checks).
onnxruntime's quantize_static has no phases: its whole run is its calibration.

Every round runs each tool and method at each N between two runs of the floor (floor, tool, floor,
tool, ..., floor), and each ratio is against the mean of the floors just before and just after it:
measurements side by side on a machine whose speed drifts; with ``--repeat`` the medians of the
per-round times and ratios are printed, and each round's ratio.

    python benchmarks/bench_calibration.py [--n 8 128] [--methods minmax entropy] [--tools qx onnxruntime]
                                           [--ort-entropy-max-n 128] [--repeat 3] [--whole] [--baseline REV]

``--baseline REV`` also measures qx as of git revision REV (e.g. ``main``), as the tool "qx@REV", in
the same rounds: a before/after of a change measured side by side, not in two sessions whose load
differs. REV's tree is extracted to a temporary folder and imported from there.

onnxruntime's entropy calibrator keeps every activation of every sample in memory (measured here:
14.6 GB at N=128, growing with N), so by default it is not run above --ort-entropy-max-n.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def worker(tool: str, n: int, method: str, whole: bool = False) -> dict:
    import numpy as np

    started, cpu = time.perf_counter(), time.process_time()
    measured: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "int8.onnx"
        if tool == "qx":
            measured = _qx_quantize(out, n, method, whole)
        elif tool == "onnxruntime":
            common.ort_quantize_static(common.MODEL, out, n, method)
        else:  # the floor: FP32 inference of the same samples at batch 1
            from mlperf_qx.runtime import open_session

            session = open_session(common.MODEL)
            for path in common.sample_paths(n):
                session.run(None, {"image": np.load(path)[None]})
    wall = time.perf_counter() - started
    whole_run = {"wall_s": wall, "peak_rss_mb": common.peak_rss_mb()} if tool != "qx" or whole else {}
    return {"calibration_s": wall, "calibration_cpu_s": time.process_time() - cpu,
            "calibration_peak_rss_mb": common.peak_rss_mb(), **measured, **whole_run}


class _CalibrationDone(BaseException):
    """Ends ``qx quantize`` once its calibration phase is measured (not an Exception: the CLI's
    own handlers let it through)."""


def _qx_quantize(out: Path, n: int, method: str, whole: bool) -> dict:
    """Runs the real ``qx quantize`` command and measures its calibration phase: the call the
    pipeline times as "calibration" (wall and CPU seconds, and the peak RSS when it returns), by
    a wrapper that only records. Unless ``whole``, the command stops there."""
    import contextlib
    import io

    import mlperf_qx.quantize as pipeline
    from mlperf_qx.cli.main import main

    measured: dict = {}
    calibrate = pipeline.calibrate  # the name quantize_model calls the phase by

    def calibrate_and_record(*args, **kwargs):
        started, cpu = time.perf_counter(), time.process_time()
        result = calibrate(*args, **kwargs)
        measured.update(calibration_s=time.perf_counter() - started, calibration_cpu_s=time.process_time() - cpu,
                        calibration_peak_rss_mb=common.peak_rss_mb())
        if not whole:
            raise _CalibrationDone
        return result

    pipeline.calibrate = calibrate_and_record
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(_CalibrationDone):
        code = main(["quantize", str(common.MODEL), "--calib", str(common.SAMPLES), "--samples", str(n),
                     "--method", method, "-o", str(out), "--json"])
        if code:
            raise SystemExit(code)
    if not measured:  # the phase was renamed or moved: a whole-command time must not pass for it
        raise SystemExit("qx quantize never called quantize.calibrate: update the benchmark's hook")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=4, metavar=("TOOL", "N", "METHOD", "WHOLE"), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, nargs="+", default=[8, 128])
    parser.add_argument("--methods", nargs="+", default=["minmax", "entropy"])
    parser.add_argument("--tools", nargs="+", default=["qx", "onnxruntime"], choices=["qx", "onnxruntime"])
    parser.add_argument("--ort-entropy-max-n", type=int, default=128)
    parser.add_argument("--whole", action="store_true",
                        help="let each qx quantize run to the end (its whole wall time and peak RSS are printed too)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds; each runs the floor and every measurement once (a shared machine is noisy)")
    parser.add_argument("--baseline", metavar="REV", help="also measure qx as of this git revision, side by side")
    parser.add_argument("--json", type=Path, default=common.CACHE / "bench_calibration.json")
    args = parser.parse_args()
    if args.worker:
        tool, n, method, whole = args.worker
        print(json.dumps(worker(tool, int(n), method, whole == "whole")))
        return
    common.ensure_model()
    common.ensure_samples(max(args.n))
    tools = args.tools + ([f"qx@{args.baseline}"] if args.baseline else [])
    cases = [(n, tool, method) for n in args.n for method in args.methods for tool in tools]
    runs: dict[tuple, list[dict]] = {}
    # This tree's kernels compiled too (an edited kernel recompiles on its first call).
    subprocess.run([sys.executable, "-c", "from mlperf_qx.kernels.warm_up import _touch_kernels; _touch_kernels()"],
                   check=True)
    with _baseline_tree(args.baseline) as baseline:
        for _ in range(args.repeat):
            for n in args.n:
                # Each measurement between two floors, its ratio against their mean: the machine's
                # speed drifts within a round (one floor per round put 0.8-1.5x of noise in a ratio).
                before = common.run_worker(Path(__file__), ["floor", str(n), "-", "-"])
                runs.setdefault((n, "fp32 floor", "-"), []).append(before)
                for case in [c for c in cases if c[0] == n]:
                    measured = _one(case, args, baseline)
                    after = common.run_worker(Path(__file__), ["floor", str(n), "-", "-"])
                    runs[(n, "fp32 floor", "-")].append(after)
                    runs.setdefault(case, []).append(_against_floors(measured, before, after))
                    before = after
    results, rows = [], []
    for key, measured in runs.items():
        summary = _summary(measured)
        results.append({"n": key[0], "tool": key[1], "method": key[2], **summary, "runs": measured})
        rows.append([key[1], key[2], key[0], _fmt(summary.get("calibration_s")), _fmt(summary.get("ratio"), 2),
                     _fmt(summary.get("cpu_ratio"), 2), _fmt(summary.get("calibration_peak_rss_mb"), 0),
                     _fmt(summary.get("wall_s")), _fmt(summary.get("peak_rss_mb"), 0),
                     summary.get("note") or " ".join(map(str, summary.get("ratio_runs", [])))])
    common.print_table(f"calibration: seconds and x the FP32 floor measured in the same round (medians of {args.repeat})",
                       ["tool", "method", "N", "calibration s", "x floor", "CPU s x floor", "its peak RSS MB",
                        "whole command s", "peak RSS MB", "x floor per round"], rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {args.json}")


@contextlib.contextmanager
def _baseline_tree(revision: str | None):
    """The source folder of qx as of ``revision`` (None: no baseline), importable as ``mlperf_qx``:
    src/ with kernels/ placed where the package imports them from."""
    if revision is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="qx-baseline-") as folder:
        root = Path(__file__).resolve().parent.parent
        archive = subprocess.run(["git", "-C", str(root), "archive", revision, "src", "kernels"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
        shutil.copytree(Path(folder) / "kernels", Path(folder) / "src" / "mlperf_qx" / "kernels")
        # Compile its numba kernels into their cache now, not inside its first measured run.
        subprocess.run([sys.executable, "-c", "from mlperf_qx.kernels.warm_up import _touch_kernels; _touch_kernels()"],
                       check=True, env={**os.environ, "PYTHONPATH": str(Path(folder) / "src")})
        yield Path(folder) / "src"


def _one(case: tuple, args, baseline: Path | None) -> dict:
    n, tool, method = case
    if tool == "onnxruntime" and method == "entropy" and n > args.ort_entropy_max_n:
        return {"skipped": f"N > {args.ort_entropy_max_n}: its memory grows with N past this machine"}
    saved = os.environ.get("PYTHONPATH")
    if tool.startswith("qx@"):  # the worker imports mlperf_qx from the baseline's tree
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(baseline), saved]))
    try:
        measured = common.run_worker(Path(__file__), ["qx" if tool.startswith("qx@") else tool, str(n), method,
                                                      "whole" if args.whole else "-"])
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    return measured


def _against_floors(measured: dict, before: dict, after: dict) -> dict:
    """``measured`` with its ratios to the mean of the floors measured just before and after it."""
    floors = [f for f in (before, after) if "calibration_s" in f]
    if "calibration_s" in measured and floors:
        floor_s = statistics.mean(f["calibration_s"] for f in floors)
        measured["ratio"] = measured["calibration_s"] / floor_s
        measured["cpu_ratio"] = measured["calibration_cpu_s"] / statistics.mean(f["calibration_cpu_s"] for f in floors)
        measured["floor_s"] = [round(f["calibration_s"], 3) for f in floors]
    return measured


def _summary(measured: list[dict]) -> dict:
    good = [m for m in measured if "error" not in m and "skipped" not in m]
    if not good:
        return {"note": measured[0].get("error") or measured[0].get("skipped", "")}
    keys = ("calibration_s", "calibration_cpu_s", "wall_s", "ratio", "cpu_ratio")
    summary = {key: statistics.median(m[key] for m in good) for key in keys if key in good[0]}
    summary.update({key: max(m[key] for m in good) for key in ("calibration_peak_rss_mb", "peak_rss_mb") if key in good[0]})
    summary.setdefault("ratio", 1.0)
    summary.setdefault("cpu_ratio", 1.0)
    summary["ratio_runs"] = [round(m.get("ratio", 1.0), 2) for m in good]
    return summary


def _fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()
