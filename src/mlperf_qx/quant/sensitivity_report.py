"""The per-op sensitivity table (JSON, Markdown) and plot (PNG), and the precision search's record."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_text_atomic
from ..plots import pyplot, save
from .precision_search import SearchResult, Sensitivity


def sensitivity_rows(sensitivities: list[Sensitivity], search: SearchResult | None) -> list[dict]:
    total = sum(s.flops for s in sensitivities) or 1.0
    rows = []
    for s in sorted(sensitivities, key=lambda s: -s.cost):
        row = {"op": s.unit, "op_type": s.op_type, "flop_share": s.flops / total,
               "only_int8_cosine": s.alone_int8.mean_cosine, "only_int8_sqnr_db": s.alone_int8.sqnr_db}
        if s.block > 1 or s.inferred:  # a share of its group's figure, not its own measurement
            row.update(group_size=s.block, group_cost_inferred=s.inferred)
        if s.alone_fp32 is not None:
            row.update(only_fp32_cosine=s.alone_fp32.mean_cosine, only_fp32_sqnr_db=s.alone_fp32.sqnr_db)
        if search is not None:
            row["precision"] = "fp32" if s.unit in search.fp32 else "int8"
        rows.append(row)
    return rows


def write_sensitivity(folder: Path, sensitivities: list[Sensitivity], search: SearchResult | None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rows = sensitivity_rows(sensitivities, search)
    payload = {"ops": rows}
    if search is not None:
        payload["search"] = search.as_dict()
    files = [folder / "sensitivity.json", folder / "sensitivity.md", folder / "sensitivity.png"]
    write_text_atomic(files[0], json.dumps(payload, indent=2, sort_keys=True) + "\n")
    write_text_atomic(files[1], _markdown(rows, search))
    _plot(files[2], rows)
    return files


def _markdown(rows: list[dict], search: SearchResult | None) -> str:
    lines = ["# Per-op sensitivity (held-out samples, output vs FP32)", ""]
    if search is not None:
        lines += [f"Target {search.target.describe()}: {'met' if search.met else 'NOT met'}; {len(search.fp32)} ops kept "
                  f"FP32; {100 * search.int8_flop_share:.1f}% of MatMul/Conv FLOPs in int8; mean cosine "
                  f"{search.start.mean_cosine:.5f} (all int8) -> {search.final.mean_cosine:.5f}; {search.trials} "
                  f"trials in {search.seconds:.1f} s, no recalibration.", ""]
    both = any("only_fp32_cosine" in r for r in rows)
    header = "| op | type | FLOP share | only it int8: cosine | SQNR (dB) |" + (" all but it int8: cosine |" if both else "")
    lines += [header + (" precision |" if search else ""), "|" + "---|" * (header.count("|") - 1 + bool(search))]
    for r in rows:
        line = (f"| {r['op']} | {r['op_type']} | {100 * r['flop_share']:.2f}% | {r['only_int8_cosine']:.6f} | "
                f"{r['only_int8_sqnr_db']:.1f} |")
        if both:
            line += f" {r.get('only_fp32_cosine', float('nan')):.6f} |"
        if search:
            line += f" {r['precision']} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _plot(path: Path, rows: list[dict]) -> Path:
    plt = pyplot()
    shown = rows[:60]
    figure, axis = plt.subplots(figsize=(max(6, 0.22 * len(shown) + 2), 4))
    costs = [max(1.0 - r["only_int8_cosine"], 1e-9) for r in shown]
    colors = ["#d62728" if r.get("precision") == "fp32" else "#3b7dd8" for r in shown]
    axis.bar(range(len(shown)), costs, color=colors, log=True)
    axis.set_xticks(range(len(shown)), [f"{r['op']} ({r['op_type']})" for r in shown], rotation=75, ha="right",
                    fontsize=6)
    axis.set_ylabel("1 - cosine with only this op int8")
    axis.set_title("Per-op sensitivity (red: kept FP32 by the search)")
    return save(figure, path, dpi=110)
