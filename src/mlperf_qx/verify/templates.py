"""What the submission checker wants beside the results and a person writes by hand: the system
description ``systems/<system>.json``, ``src/<benchmark>/README.md`` (v6.1's SRC_PATH is ``src``,
constants.py:2181-2187) and the scenario's README.md (REQUIRED_MEASURE_FILES, constants.py:1486).
qx writes each one only where none exists (a person's edits are never overwritten), filled with
what qx knows: the machine, the model, the commands run. Every value a person must give reads
``TO BE COMPLETED: ...``; the checker accepts such text, so it must be replaced before submitting.

The JSON follows the checker's system checks (checks/system_check.py): numbers as strings
("0" accelerators: the number 0 is an empty answer to a field that needs a meaningful one), and
no ``is_network`` key for the closed division (any non-empty string, "false" included, turns on
the network-mode fields; a boolean cannot be lower-cased).
"""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .benchmarks import LOADGEN_VERSION, RULES

TODO = "TO BE COMPLETED: "
# tools/submission/submission_checker/constants.py SYSTEM_DESC_REQUIRED_FIELDS (lines 1833-1869).
ASK = {
    "status": "available, preview or rdi",
    "system_name": "the system's name as the results table shows it",
    "system_type": "edge, datacenter or datacenter,edge",
    "host_storage_capacity": "e.g. 1 TB", "host_storage_type": "e.g. NVMe SSD",
    "host_processor_frequency": "e.g. 3.5 GHz", "host_processor_caches": "L1/L2/L3 sizes",
    "host_memory_configuration": "e.g. 8x 32 GB DDR5-4800", "host_processor_interconnect": "e.g. N/A",
    "host_networking": "e.g. 1x 10 GbE", "host_networking_topology": "e.g. N/A",
    "host_network_card_count": "e.g. 1", "cooling": "e.g. air", "system_type_detail": "e.g. workstation",
    "hw_notes": "anything else about the hardware", "sw_notes": "anything else about the software",
}
CPU_ONLY = ("accelerator_frequency", "accelerator_host_interconnect", "accelerator_interconnect",
            "accelerator_interconnect_topology", "accelerator_memory_configuration", "accelerator_on-chip_memories",
            "accelerator_model_name", "accelerator_memory_capacity")


def write_templates(results_dir: Path, benchmark: str, scenario: str, backend: str, command: str) -> list[Path]:
    """Templates around ``results_dir`` (``<division>/<submitter>/results/<system>``); the ones
    written. Nothing is written beside a folder not laid out that way."""
    if results_dir.parent.name != "results":
        return []
    root, system = results_dir.parent.parent, results_dir.name
    written = []
    files = {root / "systems" / f"{system}.json": lambda: system_json(root.parent.name, root.name, backend),
             root / "src" / benchmark / "README.md": lambda: source_readme(benchmark),
             results_dir / benchmark / scenario / "README.md": lambda: scenario_readme(benchmark, scenario, command)}
    for path, text in files.items():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text(), encoding="utf-8")
            written.append(path)
    return written


def system_json(division: str, submitter: str, backend: str) -> str:
    fields = {"division": division, "submitter": submitter, "number_of_nodes": "1",
              "host_processor_model_name": _cpu_model(), "host_processors_per_node": _sockets(),
              "host_processor_core_count": str(os.cpu_count() or 1), "host_memory_capacity": _memory(),
              "accelerators_per_node": "0", "framework": backend,
              "operating_system": f"{platform.system()} {platform.release()} ({platform.platform()})",
              "other_software_stack": f"Python {platform.python_version()}, mlperf-qx {package_version('mlperf-qx')}, "
                                      f"onnxruntime {package_version('onnxruntime')}, LoadGen {LOADGEN_VERSION}"}
    fields |= {name: "N/A" for name in CPU_ONLY}
    fields |= {name: TODO + hint for name, hint in ASK.items()}
    return json.dumps(dict(sorted(fields.items())), indent=4) + "\n"


def source_readme(benchmark: str) -> str:
    return (f"# {benchmark}: the code that produced these results\n\n"
            f"Quantized and verified with mlperf-qx {package_version('mlperf-qx')} (`qx quantize`, "
            f"`qx verify-equivalence`); results checked against {RULES}.\n\n"
            f"{TODO}where the model, its calibration and the harness come from, and how to run them.\n")


def scenario_readme(benchmark: str, scenario: str, command: str) -> str:
    return (f"# {benchmark} {scenario}\n\nThe results in this folder were measured with:\n\n"
            f"```\n{command}\n```\n\n{TODO}how to set up the system and reproduce the run.\n")


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or TODO + "the processor model"


def _sockets() -> str:
    ids = {line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
           if line.startswith("physical id")}
    return str(len(ids) or 1)


def _memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 ** 2:.0f} GB"
    return TODO + "e.g. 256 GB"


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"
