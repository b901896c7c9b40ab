"""``--equalize smoothquant`` alone, side by side with a git revision of qx, in one run.

Times ``equalize()`` in-process on a pretrained transformer's calibration windows (the benchmark
caches of bench_transformer.py: all-MiniLM-L6-v2 or all-mpnet-base-v2, the list less its 16 held-out
windows, as ``qx quantize --holdout 16`` uses them), split into its parts: the observing pass
(one onnxruntime pass), the scoring of every group (``choose_all``, wall and CPU seconds: on a
loaded machine the CPU seconds are the steadier figure) and the rest (the rewrite and its exactness
check). Rounds alternate between this tree and ``--baseline REV`` (each round in the
other order) so that both see the same load; the table prints each part's median and the ratio this/baseline, and whether the
two records (every factor, split and clip chosen) are the same.

    python benchmarks/bench_equalize.py [--model minilm|mpnet] [--rounds 3] [--baseline main]
    python benchmarks/bench_equalize.py --matmuls   # one trial's product: float32 GEMM vs the exact int8 MatMul

``--matmuls`` times, on one thread and in CPU seconds, the scorer's product on the shapes of mpnet's
and MiniLM's groups (rows x channels x outputs of the group's weights side by side): numpy's float32
GEMM of fake-quantized values (the scorer before) against ``integer_matmul`` of their codes (now).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from bench_calibration import _baseline_tree  # noqa: E402 - the same git-archive tree of the baseline

CACHE = Path(__file__).resolve().parent / ".cache"
HOLDOUT = 16
PARTS = ("observe", "choose_all", "choose_all_cpu", "rest", "total")


def _worker(model_name: str) -> None:
    from mlperf_qx.kernels.warm_up import _touch_kernels
    from mlperf_qx.quant import equalize as module
    from mlperf_qx.quant.calibrated_ranges import open_calibration
    from mlperf_qx.quant.holdout import split_holdout
    from mlperf_qx.quant.options import QuantizeOptions
    from mlperf_qx.quantize import load_fp32_model

    folder = CACHE / model_name
    model = load_fp32_model(folder / f"{model_name}.onnx")
    options = QuantizeOptions(calib=folder / "calib", calib_list=folder / "calib_list.txt", show_progress=False)
    ranges_calib, _ = split_holdout(open_calibration(model, options), HOLDOUT)
    _touch_kernels()
    seconds = {}
    for part in ("observe", "choose_all"):
        original = getattr(module, part)

        def timed(*args, _original=original, _part=part, **kwargs):
            started, cpu = time.perf_counter(), time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_part] = time.perf_counter() - started
                seconds[f"{_part}_cpu"] = time.process_time() - cpu

        setattr(module, part, timed)
    started = time.perf_counter()
    result = module.equalize(model, ["smoothquant"], ranges_calib, set(), None, False)
    seconds["total"] = time.perf_counter() - started
    seconds["rest"] = seconds["total"] - seconds["observe"] - seconds["choose_all"]
    import mlperf_qx

    print(json.dumps({**seconds, "record_sha256": result.record.sha256(), "load": os.getloadavg()[0],
                      "qx": str(Path(mlperf_qx.__file__).parent)}))


# mpnet's and MiniLM's groups; then mpnet's in the blocks of rows a bounded trial runs (ROW_BLOCK)
MATMUL_SHAPES = ((640, 768, 2304), (640, 768, 3072), (640, 3072, 768), (640, 768, 768), (448, 384, 1152),
                 (448, 384, 1536), (448, 1536, 384), (128, 768, 2304), (128, 768, 3072), (128, 3072, 768))


def _matmul_rates() -> None:
    import numpy as np
    from threadpoolctl import threadpool_limits

    from mlperf_qx.quant.integer_matmul import integer_matmul

    rng = np.random.default_rng(0)
    print(f"{'rows x channels x outputs':26} {'float32 ms':>10} {'int8 ms':>8} {'int8 G op/s':>11} {'float/int8':>10}")
    with threadpool_limits(limits=1, user_api="blas"):
        for rows, channels, outputs in MATMUL_SHAPES:
            a = rng.integers(0, 256, (rows, channels)).astype(np.uint8)
            b = rng.integers(0, 256, (channels, outputs)).astype(np.uint8)
            af, bf = a.astype(np.float32), b.astype(np.float32)
            seconds = {}
            for name, call in (("float", lambda: np.matmul(af, bf)), ("int8", lambda: integer_matmul(a, b))) * 2:
                call()
                started = time.process_time()
                for _ in range(5):
                    call()
                seconds[name] = min(seconds.get(name, 1e9), (time.process_time() - started) / 5)
            ops = 2 * rows * channels * outputs
            print(f"{f'{rows} x {channels} x {outputs}':26} {seconds['float'] * 1e3:10.1f} {seconds['int8'] * 1e3:8.1f} "
                  f"{ops / seconds['int8'] / 1e9:11.0f} {seconds['float'] / seconds['int8']:10.2f}")
    print(f"load average {os.getloadavg()[0]:.1f}")


def _run(model_name: str, tree: Path | None) -> dict:
    """One worker process; ``tree``: import mlperf_qx from there (the baseline) instead of this tree."""
    saved = os.environ.get("PYTHONPATH")
    if tree is not None:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), saved]))
    try:
        measured = common.run_worker(Path(__file__), [model_name])
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
    if "error" in measured:
        raise SystemExit(f"worker failed: {measured['error']}")
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["minilm", "mpnet"], default="minilm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", default="main")
    parser.add_argument("--matmuls", action="store_true", help="time one trial's product, float32 vs int8")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return
    if args.matmuls:
        _matmul_rates()
        return
    runs: dict[str, list[dict]] = {"this": [], "baseline": []}
    with _baseline_tree(args.baseline) as baseline:
        for round_index in range(args.rounds):
            # Each round in the other order: a load that rises or falls over the run favours neither.
            for tool in ("baseline", "this")[::1 if round_index % 2 == 0 else -1]:
                runs[tool].append(_run(args.model, baseline if tool == "baseline" else None))
                print(tool, json.dumps(runs[tool][-1]), flush=True)
    medians = {tool: {p: statistics.median(r[p] for r in runs[tool]) for p in PARTS} for tool in runs}
    print(f"\n{args.model}, {args.rounds} alternating rounds, medians (this tree vs qx@{args.baseline}):")
    print(f"{'part':12} {'baseline s':>11} {'this s':>8} {'this/baseline':>14}")
    for part in PARTS:
        before, after = medians["baseline"][part], medians["this"][part]
        print(f"{part:12} {before:11.2f} {after:8.2f} {after / before:14.3f}")
    same = {r["record_sha256"] for r in runs["this"] + runs["baseline"]}
    print(f"records identical (every factor, split and clip): {len(same) == 1}; load average "
          f"{min(r['load'] for v in runs.values() for r in v):.1f}-{max(r['load'] for v in runs.values() for r in v):.1f}")


if __name__ == "__main__":
    main()
