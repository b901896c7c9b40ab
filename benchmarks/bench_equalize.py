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
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
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
