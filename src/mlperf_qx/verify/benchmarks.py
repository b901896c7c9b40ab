"""The MLPerf Inference round qx targets, and what its submission checker knows about each
benchmark: the name the checker uses (the results folder), the mlperf.conf key the reference
harness passes to ``TestSettings.FromConfig``, and the checker's performance and compliance rules.

Read from the MLPerf inference repository at commit b66003e (2026-08-20), whose LoadGen is 6.0.17:
- names, performance sample counts, min-queries, latency constraints, scenarios, TEST01/TEST04
  benchmarks: ``tools/submission/submission_checker/constants.py`` MODEL_CONFIG["v6.1"] (lines 1-329);
  Offline samples per query: OFFLINE_MIN_SPQ_SINCE_V4 (lines 1506-1537); the first accuracy metric of
  each benchmark (an ACC_PATTERN key, lines 1804-1831);
- mlperf.conf keys: the reference harnesses' FromConfig model argument (resnet50 in
  vision/classification_and_detection/python/main.py:138, bert in language/bert/run.py:157, 3d-unet in
  vision/medical_imaging/3d-unet-kits19/run.py:158, yolo in vision/classification_and_detection/yolo/
  yolo_loadgen.py:123, llama3_1-8b[-edge] in language/llama3.1-8b/main.py:124, llama2-70b in
  language/llama2-70b/main.py:126, ...); the checker maps them back (MODEL_CONFIG model_mapping);
- TEST01 ``accuracy_log_sampling_target``: compliance/TEST01/<harness folder>/audit.config.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserInputError

ROUND = "v6.1"
LOADGEN_VERSION = "6.0.17"
RULES = f"MLPerf Inference {ROUND} (submission checker --version {ROUND}, LoadGen {LOADGEN_VERSION})"
SS, MS, SERVER, OFFLINE = "SingleStream", "MultiStream", "Server", "Offline"


@dataclass(frozen=True)
class Benchmark:
    name: str  # the checker's name: the results folder <benchmark>/
    conf_key: str  # mlperf.conf's model key
    metric: str  # the checker's ACC_PATTERN key for its first accuracy target
    performance_sample_count: int
    min_queries: dict[str, int]  # the checker's min-queries (scenarios without early stopping use it)
    offline_samples_per_query: int | None
    scenarios: tuple[str, ...]  # every scenario the round knows for it (edge and datacenter)
    server_latency_ns: int | None = None
    test01_sampling_target: int | None = None  # None: the round has no TEST01 for it
    test04: bool = False


_EDGE_VISION = {SS: 1024, MS: 270336, OFFLINE: 1}
_LLM = {SS: 1024, SERVER: 270336, OFFLINE: 1}
_TABLE = (
    Benchmark("resnet", "resnet50", "acc", 1024, {**_EDGE_VISION, SERVER: 270336}, 24576, (SS, MS, OFFLINE, SERVER),
              15_000_000, 4096, True),
    Benchmark("bert-99", "bert", "F1", 10833, {SS: 1024, OFFLINE: 1}, 10833, (SS, OFFLINE), None, 4096),
    Benchmark("bert-99.9", "bert", "F1", 10833, {SS: 1024, OFFLINE: 1}, 10833, (SS, OFFLINE), None, 4096),
    Benchmark("3d-unet-99", "3d-unet", "DICE", 43, {SS: 1024, OFFLINE: 1}, 43, (SS, OFFLINE), None, 64),
    Benchmark("3d-unet-99.9", "3d-unet", "DICE", 43, {SS: 1024, OFFLINE: 1}, 43, (SS, OFFLINE), None, 64),
    Benchmark("llama3.1-8b", "llama3_1-8b", "ROUGE1", 13368, _LLM, 13368, (OFFLINE, SERVER), 20_000_000_000),
    Benchmark("llama3.1-8b-edge", "llama3_1-8b-edge", "ROUGE1", 5000, {SS: 1024, OFFLINE: 1}, 5000, (SS, OFFLINE)),
    Benchmark("llama2-70b-99.9", "llama2-70b", "ROUGE1", 24576, _LLM, 24576, (OFFLINE, SERVER), 20_000_000_000),
    Benchmark("stable-diffusion-xl", "stable-diffusion-xl", "CLIP_SCORE", 5000, _LLM, 5000, (SS, OFFLINE, SERVER),
              20_000_000_000, 128, True),
    Benchmark("rgat", "rgat", "acc", 788379, {SS: 1024, OFFLINE: 1}, 788379, (OFFLINE,), None, 4096),
    Benchmark("deepseek-r1", "deepseek-r1", "exact_match", 4388, _LLM, 4388, (OFFLINE, SERVER), 60_000_000_000),
    Benchmark("whisper", "whisper", "ACCURACY", 1633, {SS: 1024, OFFLINE: 1}, 1633, (OFFLINE,), None, 4096),
    Benchmark("gpt-oss-120b", "gpt-oss-120b", "exact_match", 6396, _LLM, 6396, (OFFLINE, SERVER), 60_000_000_000),
    Benchmark("wan-2.2-t2v-a14b", "wan-2.2-t2v-a14b", "vbench_score", 50, {SS: 50, OFFLINE: 1}, 50, (OFFLINE, SS),
              None, None, True),
    Benchmark("qwen3-vl-235b-a22b", "qwen3-vl-235b-a22b", "F1_HIERARCHICAL", 48289, _LLM, 48289, (OFFLINE, SERVER),
              12_000_000_000),
    Benchmark("qwen3.6-27b", "qwen3.6-27b", "mAP", 995, {SS: 995}, None, (SS,)),
    Benchmark("dlrm-v3", "dlrm-v3", "DLRM_NE", 349823, {SERVER: 270336, OFFLINE: 1}, 349823, (OFFLINE, SERVER),
              60_000_000_000),
    Benchmark("yolo-95", "yolo", "mAP", 64, _EDGE_VISION, 1525, (SS, MS, OFFLINE), None, 64),
    Benchmark("yolo-99", "yolo", "mAP", 64, _EDGE_VISION, 1525, (SS, MS, OFFLINE), None, 64),
    Benchmark("e2e-rag-qna", "e2e-rag-qna", "E2E_ACCURACY", 824, {OFFLINE: 1}, 824, (OFFLINE,)),
    Benchmark("e2e-rag-db", "e2e-rag-db", "E2E_ACCURACY", 2515, {OFFLINE: 1}, 2515, (OFFLINE,)),
)
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in _TABLE}
# The checker's own aliases (MODEL_CONFIG["v6.1"]["model_mapping"]): mlperf.conf spellings it accepts.
ALIASES = {"resnet50": "resnet", "mobilenet": "resnet", "llama3_1-8b": "llama3.1-8b",
           "llama3_1-8b-edge": "llama3.1-8b-edge"}
# Benchmarks of earlier rounds (v5.1's list) that v6.1 retired: refused with a word on why.
RETIRED = ("retinanet", "dlrm-v2-99", "dlrm-v2-99.9", "gptj-99", "gptj-99.9", "llama2-70b-99", "mixtral-8x7b",
           "llama3.1-405b", "pointpainting")


def benchmark(name: str) -> Benchmark:
    """The benchmark a ``--model-name`` names, by the checker's name or one of its aliases."""
    found = BENCHMARKS.get(ALIASES.get(name, name))
    if found is not None:
        return found
    known = ", ".join(BENCHMARKS)
    if name in RETIRED:
        raise UserInputError(f"--model-name '{name}' is a benchmark of an earlier round, not of {ROUND} (qx applies "
                             f"{RULES}); {ROUND}'s benchmarks: {known}")
    raise UserInputError(f"--model-name '{name}' is not a benchmark the {ROUND} submission checker knows "
                         f"(an mlperf.conf key alone, such as 'bert', names no results folder); choose one of: {known}")


def check_scenario(bench: Benchmark, scenario: str) -> None:
    if scenario not in bench.scenarios:
        raise UserInputError(f"--scenario {scenario}: {ROUND} has no {scenario} result for {bench.name} "
                             f"(its scenarios: {', '.join(bench.scenarios)})")


def check_compliance(bench: Benchmark, test: str | None) -> None:
    """The round asks TEST01 and TEST04 of some benchmarks only (models_TEST01, models_TEST04)."""
    asked = {"TEST01": bench.test01_sampling_target is not None, "TEST04": bench.test04}
    if test is not None and not asked.get(test, False):
        tests = [name for name, yes in asked.items() if yes]
        raise UserInputError(f"--compliance {test}: {ROUND} asks no {test} of {bench.name} "
                             f"(it asks {', '.join(tests) or 'neither TEST01 nor TEST04'})")
