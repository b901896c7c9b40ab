"""int8 against FP32 on each runtime qx can verify on, side by side in one run.

For ResNet-50 (224x224) and a BERT encoder of BERT-base's shape (bert_encoder.py: 12 x 768, seq 128;
``bert-small``: 4 x 256), on each backend
(onnxruntime with qx's session options, OpenVINO): median latency of FP32 and of qx's int8 QDQ model
at batch 1 and 8, the models taking turns run by run; then a LoadGen Offline performance run of
each (a quick run, ``--duration-ms``) and the int8/FP32 throughput ratio. Then, in onnxruntime, the
QOperator/QDQ latency ratio for QOperator as qx writes it (uint8 activations at zero point 128)
and with int8 activations (the former encoding, S8S8 kernels), and both int8 models with the
opposite ``session.x64quantprecision`` setting to qx's decision for this CPU (what the decision
costs or saves, and the output SQNR with each). Under OpenVINO, the same models quantized by other
tools take turns with them (``peer_quantizers.py``: onnxruntime's ``quantize_static`` in its
default U8 asymmetric and in a S8 symmetric encoding, and NNCF, OpenVINO's own quantizer, when
installed: ``pip install -e ".[bench]"``), and OpenVINO's per-layer profile at batch 1 splits each
model's time into its convolutions and matrix products and the rest (``openvino_layers.py``): the
first part's int8/FP32 ratio is the runtime's kernels on this CPU, whoever wrote the file. Prints
the CPU's int8 features and the decision; writes JSON. Speed only: the weights are random.

    python benchmarks/bench_backends.py [--runs 3] [--duration-ms 1000] [--families resnet50,bert,bert-small]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import openvino_layers  # noqa: E402
import peer_quantizers  # noqa: E402

BERT_SAMPLES = common.CACHE / "bert_samples"
# family -> (class in bert_encoder.py, file stem in the cache)
BERT_CLASSES = {"bert": ("BertBase", "bert_base"), "bert-small": ("BertEncoder", "bert_small")}
CALIB_N = 16


def quantize(model: Path, samples: Path, out: Path, fmt: str) -> Path:
    from mlperf_qx.runtime import has_int8_activation_kernels

    stale = out.exists() and fmt == "qoperator" and has_int8_activation_kernels(out)  # written before uint8
    if not out.exists() or stale:
        subprocess.run([common.QX, "quantize", str(model), "--calib", str(samples), "--samples", str(CALIB_N),
                        "--format", fmt, "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
    return out


def int8_activation_variant(qdq: Path, out: Path) -> Path:
    """The QOperator lowering of ``qdq`` with int8 activations (before qx stored them as uint8)."""
    import onnx
    import onnx_ir as ir

    from mlperf_qx.quant.lower_qoperator import LowerToQOperator

    if not out.exists():
        model = ir.serde.deserialize_model(onnx.load(str(qdq)))
        LowerToQOperator(uint8_activations=False)(model)
        onnx.save(ir.serde.serialize_model(model), str(out))
    return out


def ensure_bert(family: str) -> Path:
    """The family's encoder exported to ONNX (random weights, seeded), and the token samples."""
    class_name, stem = BERT_CLASSES[family]
    onnx_file = common.CACHE / f"{stem}_encoder.onnx"
    if not onnx_file.exists():
        import torch
        from safetensors.torch import save_file

        import bert_encoder

        torch.manual_seed(0)
        common.CACHE.mkdir(parents=True, exist_ok=True)  # a fresh clone asking for BERT alone has none yet
        weights = onnx_file.with_suffix(".safetensors")
        model = getattr(bert_encoder, class_name)()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
        subprocess.run([common.QX, "export", "--framework", "torch", "--model", f"{common.HERE / 'bert_encoder.py'}:{class_name}",
                        "--weights", str(weights), "--input", "input_ids:1x128:int64", "--dynamic-batch",
                        "--opset", "17", "-o", str(onnx_file)], check=True, stdout=subprocess.DEVNULL)
    BERT_SAMPLES.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(CALIB_N):
        ids = rng.integers(0, 8192, (1, 128)).astype(np.int64)
        if not (BERT_SAMPLES / f"sample_{index:04d}.npy").exists():
            np.save(BERT_SAMPLES / f"sample_{index:04d}.npy", ids)
    return onnx_file


def families(names: list[str]) -> dict[str, dict]:
    """Per family: its models by role, the samples folder and other quantizers' files (``peers``)."""
    found = {}
    if "resnet50" in names:
        common.ensure_model()
        common.ensure_samples(CALIB_N)
        cache = common.CACHE
        found["resnet50"] = {"samples": common.SAMPLES, "transformer": False, "models": {
            "fp32": common.MODEL, "int8 qdq": quantize(common.MODEL, common.SAMPLES, cache / "resnet50_qx_qdq.onnx", "qdq"),
            "int8 qoperator": quantize(common.MODEL, common.SAMPLES, cache / "resnet50_qx_qoperator.onnx", "qoperator")}}
    for family in (name for name in names if name in BERT_CLASSES):
        fp32 = ensure_bert(family)
        found[family] = {"samples": BERT_SAMPLES, "transformer": True, "models": {
            "fp32": fp32, "int8 qdq": quantize(fp32, BERT_SAMPLES, fp32.with_name(fp32.stem + "_qx_qdq.onnx"), "qdq"),
            "int8 qoperator": quantize(fp32, BERT_SAMPLES, fp32.with_name(fp32.stem + "_qx_qoperator.onnx"), "qoperator")}}
    for family in found.values():
        models = family["models"]
        models["int8 qoperator, int8 activations"] = int8_activation_variant(
            models["int8 qdq"], models["int8 qdq"].with_name(models["int8 qdq"].stem + "_qoperator_s8.onnx"))
        # The same calibration samples as qx's, one batch of one each.
        feeds = [stacked([path]) for path in sample_files(family["samples"], CALIB_N)]
        family["peers"] = peer_quantizers.peer_models(models["fp32"], feeds, family["transformer"])
    return found


def sample_files(samples: Path, count: int) -> list[Path]:
    return sorted(samples.glob("sample_*.npy"))[:count]


def stacked(paths: list[Path]) -> np.ndarray:
    """The samples in ``paths`` as one batch (each sample file holds a batch of one or none)."""
    arrays = [np.load(p) for p in paths]
    return np.stack(arrays) if arrays[0].dtype == np.float32 else np.concatenate(arrays)


def batch_of(samples: Path, batch: int) -> np.ndarray:
    """The first ``batch`` samples stacked along the batch axis."""
    return stacked(sample_files(samples, batch))


def latencies(backends: dict, feed: np.ndarray, runs: int) -> dict[str, float]:
    """Median seconds per run; the backends take turns run by run, so a slow spell of the shared
    machine hits all of them alike."""
    for backend in backends.values():
        backend.run({backend.input_names[0]: feed})
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(runs):
        for name, backend in backends.items():
            started = time.perf_counter()
            backend.run({backend.input_names[0]: feed})
            times[name].append(time.perf_counter() - started)
    return {name: float(np.median(t)) for name, t in times.items()}


def offline_throughput(backend, model: Path, samples: Path, duration_ms: int) -> float:
    """Samples per second of a quick LoadGen Offline performance run, on verify's own harness."""
    import onnx_ir as ir

    from mlperf_qx.calibration.model_inputs import model_inputs
    from mlperf_qx.calibration.readers import open_all_samples
    from mlperf_qx.verify.loadgen_harness import run_loadgen
    from mlperf_qx.verify.loadgen_settings import LoadGenConfig, QuickRun

    dataset = open_all_samples(samples, model_inputs(ir.load(str(model))), "samples")
    config = LoadGenConfig(scenario="Offline", quick=QuickRun(min_duration_ms=duration_ms, min_query_count=8))
    with tempfile.TemporaryDirectory() as folder:
        run = run_loadgen(backend, dataset, lambda outputs, count: np.zeros((count, 0), np.uint8), "performance", Path(folder), config)
    return float(run.samples_per_second or 0.0)


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    from mlperf_qx.quant.runtime_check import sqnr_db as sqnr

    return sqnr(reference, candidate)


def flipped_precision(models: dict[str, Path]) -> dict:
    """onnxruntime backends of the QDQ and uint8 QOperator models with the opposite
    ``session.x64quantprecision`` setting to qx's decision on this CPU, by role name."""
    from mlperf_qx.runtime import PRECISION_OPTION, int8_precision
    from mlperf_qx.verify.backends import onnxruntime_backend

    flipped = {}
    for role in ("int8 qdq", "int8 qoperator"):
        setting = not int8_precision(models[role]).exact_option
        flipped[f"{role}, {PRECISION_OPTION}={int(setting)}"] = onnxruntime_backend(models[role], 8,
                                                                                     x64quantprecision=setting)
    return flipped


def measure_family(name: str, family: dict, runtime: str, args) -> list[dict]:
    from mlperf_qx.verify.backends import model_backend

    # Under OpenVINO, the other quantizers' files take turns with qx's (the question there is
    # whether the figure is the file's or the runtime's); in onnxruntime, qx's own variants do.
    models = family["models"] | family["peers"] if runtime == "openvino" else family["models"]
    roles = ("fp32", "int8 qdq", *family["peers"]) if runtime == "openvino" else tuple(models)
    backends = {role: model_backend(models[role], 8, runtime) for role in roles}
    if runtime == "onnxruntime":
        backends |= flipped_precision(family["models"])
    rows = []
    for batch in (1, 8):
        # The int8-activation QOperator variant (S8S8 kernels) is measured at batch 1 only: it is the
        # slow one, and batch 8 alone would take minutes.
        timed = {r: b for r, b in backends.items() if batch == 1 or "int8 activations" not in r}
        feed = batch_of(family["samples"], batch)
        measured = latencies(timed, feed, args.runs)
        for role, seconds in measured.items():
            rows.append({"model": name, "backend": runtime, "variant": role, "batch": batch, "median_s": seconds,
                         "vs_fp32": seconds / measured["fp32"], "vs_qdq": seconds / measured["int8 qdq"]})
    outputs = {role: next(iter(b.run({b.input_names[0]: feed}).values())) for role, b in backends.items()}
    if runtime == "openvino":
        profiled = openvino_layers.layer_times({role: models[role] for role in roles}, batch_of(family["samples"], 1),
                                               args.runs)
        for role, parts in profiled.items():
            rows.append({"model": name, "backend": runtime, "variant": role, "profile_batch": 1, **parts})
    for role, output in outputs.items():
        rows.append({"model": name, "backend": runtime, "variant": role, "sqnr_vs_fp32_db": sqnr_db(outputs["fp32"], output)})
    # As verify runs Offline: OpenVINO with its THROUGHPUT hint's streams, each kept busy (an
    # onnxruntime session is the same for every scenario: the one above serves).
    offline = {role: backends[role] if runtime == "onnxruntime"
               else model_backend(family["models"][role], 8, runtime, throughput=True)
               for role in ("fp32", "int8 qdq", "int8 qoperator") if role in backends}
    for role, backend in offline.items():
        qps = offline_throughput(backend, family["models"][role], family["samples"], args.duration_ms)
        rows.append({"model": name, "backend": runtime, "variant": role, "offline_samples_per_s": qps})
    rows.append({"model": name, "backend": runtime, "session": {r: b.name for r, b in backends.items()},
                 "offline_session": {r: b.name for r, b in offline.items()}})
    return rows


def print_rows(rows: list[dict]) -> None:
    table = [[r["model"], r["backend"], r["variant"], r["batch"], f"{r['median_s'] * 1e3:.1f}", f"{r['vs_fp32']:.2f}",
              f"{r['vs_qdq']:.2f}"] for r in rows if "median_s" in r]
    common.print_table("latency (median, models taking turns)", ["model", "backend", "variant", "batch", "ms",
                                                                 "x fp32", "x qdq"], table)
    common.print_table("output SQNR vs the same backend's FP32 (batch 8)", ["model", "backend", "variant", "dB"],
                       [[r["model"], r["backend"], r["variant"], f"{r['sqnr_vs_fp32_db']:.1f}"]
                        for r in rows if "sqnr_vs_fp32_db" in r and r["variant"] != "fp32"])
    profiles = {}
    for r in rows:
        if "compute_ms" in r:
            profiles.setdefault((r["model"], r["backend"]), {})[r["variant"]] = r
    common.print_table("OpenVINO's per-layer profile, batch 1 (PERF_COUNT; compute: convolutions and matrix products)",
                       ["model", "variant", "compute ms", "x fp32", "other ms", "x fp32"],
                       [[m, variant, f"{p['compute_ms']:.2f}", f"{p['compute_ms'] / v['fp32']['compute_ms']:.2f}",
                         f"{p['other_ms']:.2f}", f"{p['other_ms'] / v['fp32']['other_ms']:.2f}"]
                        for (m, _), v in profiles.items() for variant, p in v.items()])
    offline = {}
    for r in rows:
        if "offline_samples_per_s" in r:
            offline.setdefault((r["model"], r["backend"]), {})[r["variant"]] = r["offline_samples_per_s"]
    common.print_table("LoadGen Offline (quick run)", ["model", "backend", "variant", "samples/s", "x fp32"],
                       [[m, b, variant, f"{qps:.2f}", f"{qps / v['fp32']:.2f}"]
                        for (m, b), v in offline.items() for variant, qps in v.items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration-ms", type=int, default=1000)
    parser.add_argument("--families", default="resnet50,bert")
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--json", type=Path, default=common.CACHE / "bench_backends.json")
    args = parser.parse_args()
    from mlperf_qx.runtime import cpu_flags, int8_precision, int8_dot_product

    started = time.perf_counter()
    found = families(args.families.split(","))
    if any(peer_quantizers.NNCF not in family["peers"] for family in found.values()):
        print("NNCF is not installed: its files are left out (pip install -e \".[bench]\")")
    rows = []
    for name, family in found.items():
        for runtime in args.backends.split(","):
            rows += measure_family(name, family, runtime, args)
    flags = sorted(f for f in cpu_flags() if f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"))
    print(f"CPU int8 features: {', '.join(flags) or 'unknown'} (int8 dot product: {int8_dot_product() or 'none'})")
    first = next(iter(found.values()))["models"]["int8 qdq"]
    print(f"onnxruntime int8 sessions: {int8_precision(first).describe()}")
    print_rows(rows)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"cpu_features": flags, "results": rows}, indent=2) + "\n")
    print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
