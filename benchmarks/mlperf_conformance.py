"""The submission tree qx writes, judged by MLPerf's own scripts (not a speed benchmark: the bar of
issue 22). A digits stand-in mapped to the `resnet` benchmark runs SingleStream, MultiStream,
Offline and Server, each with TEST01 and TEST04, into one tree; the templates are completed as a
submitter would; then MLPerf's submission checker (--version v6.1), TEST01/TEST04 verify scripts
and TEST01/run_verification.py run on qx's output and their verdicts are printed beside qx's.

    python benchmarks/mlperf_conformance.py --mlperf-inference /path/to/inference --out /tmp/bar
        [--official-offline]   # also one Offline run of mlperf.conf's full length (600 s minimum)
        [--official-only]      # only that run, into the tree an earlier call wrote, then the checker

--mlperf-inference is a checkout of github.com/mlcommons/inference (tools/submission, compliance).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from common import QX  # noqa: E402  (this folder is on the path: the script's own)

SCENARIOS = ("SingleStream", "MultiStream", "Offline", "Server")
SYSTEM = "digits-cpu"
COMPLETED = {"status": "available", "system_name": "digits stand-in on a shared CPU host",
             "system_type": "datacenter,edge", "host_storage_capacity": "1 TB", "host_storage_type": "SSD",
             "host_processor_frequency": "unknown (virtual machine)", "host_processor_caches": "unknown",
             "host_memory_configuration": "unknown (virtual machine)", "host_processor_interconnect": "N/A",
             "host_networking": "N/A", "host_networking_topology": "N/A", "host_network_card_count": "1",
             "cooling": "air", "system_type_detail": "virtual machine", "hw_notes": "none", "sw_notes": "none"}


def models(folder: Path) -> dict:
    from quant_fixtures import export_trained_digits

    from conftest import CALIB_LIST

    fp32, data = (folder / "fp32.onnx", folder / "data") if (folder / "fp32.onnx").exists() else \
        export_trained_digits(folder)
    int8 = folder / "int8.onnx"
    if not int8.exists():
        subprocess.run([QX, "quantize", str(fp32), "--calib", str(data / "calibration_candidates"), "--calib-list",
                        str(CALIB_LIST), "--method", "entropy", "-o", str(int8)], check=True)
    return {"fp32": fp32, "int8": int8, "data": data}


def verify(digits: dict, out: Path, tree: Path, scenario: str, *extra: str) -> int:
    command = [QX, "verify-equivalence", "--reference", str(digits["fp32"]), "--candidate", str(digits["int8"]),
               "--dataset", str(digits["data"] / "validation"), "--labels",
               str(digits["data"] / "validation_map.txt"), "--mode", "extensional", "--model-name", "resnet",
               "--scenario", scenario, "--submission-dir", str(tree), "--out", str(out), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    print(f"$ {' '.join(command[:2])} --scenario {scenario} {' '.join(extra)} -> exit {done.returncode}")
    print("  " + "\n  ".join(line for line in done.stdout.splitlines() if "TEST0" in line or "performance" in line))
    return done.returncode


def complete_templates(root: Path) -> None:
    system = root / "systems" / f"{SYSTEM}.json"
    fields = json.loads(system.read_text())
    fields |= {k: v for k, v in COMPLETED.items() if str(fields.get(k, "")).startswith("TO BE COMPLETED")}
    system.write_text(json.dumps(fields, indent=4) + "\n")
    for readme in list(root.glob("src/*/README.md")) + list(root.glob(f"results/{SYSTEM}/*/*/README.md")):
        readme.write_text(readme.read_text().replace("TO BE COMPLETED: ", "Completed for the bar: "))


def script(inference: Path, relative: str, *arguments: str, cwd: Path | None = None) -> str:
    done = subprocess.run([sys.executable, str(inference / relative), *arguments], capture_output=True, text=True,
                          cwd=cwd)
    return (done.stdout + done.stderr).strip()


def verdict(text: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("TEST ")]
    return lines[-1] if lines else text.splitlines()[-1] if text else "(no output)"


def compare_compliance(inference: Path, out: Path, test: str, qx_folder: Path) -> None:
    candidate, run = out / "candidate", out / "candidate" / test / "run"
    if test == "TEST01":
        mlperf = script(inference, "compliance/TEST01/verify_accuracy.py", "-r",
                        str(candidate / "accuracy" / "mlperf_log_accuracy.json"), "-t",
                        str(run / "mlperf_log_accuracy.json"), "--dtype", "float32")
        print(f"    TEST01 verify_accuracy: MLPerf '{verdict(mlperf)}', qx "
              f"'{(qx_folder / 'verify_accuracy.txt').read_text().splitlines()[-1]}'")
        mlperf = script(inference, "compliance/TEST01/verify_performance.py", "-r",
                        str(candidate / "performance" / "run_1" / "mlperf_log_detail.txt"), "-t",
                        str(run / "mlperf_log_detail.txt"))
        scratch = out / "run_verification"
        scratch.mkdir(exist_ok=True)
        whole = script(inference, "compliance/TEST01/run_verification.py", "-r", str(candidate), "-c", str(run),
                       "-o", str(scratch), "--dtype", "float32", cwd=scratch)
        print("    TEST01 run_verification.py: " + "; ".join(line for line in whole.splitlines()
                                                           if "check pass" in line or "Error" in line))
    else:
        mlperf = script(inference, "compliance/TEST04/verify_performance.py", "-r",
                        str(candidate / "performance" / "run_1" / "mlperf_log_summary.txt"), "-t",
                        str(run / "mlperf_log_summary.txt"))
    print(f"    {test} verify_performance: MLPerf '{verdict(mlperf)}', qx "
          f"'{(qx_folder / 'verify_performance.txt').read_text().splitlines()[-1]}'")


# What the checker reports of quick runs (300 ms, a few thousand samples, noisy on a shared machine:
# early stopping and the compliance runs' performance bands) and of the 500-sample stand-in for
# ImageNet's 50000, with the summaries that follow from them; anything else is listed apart.
EXPECTED_ERRORS = ("Test duration less than 600s", "Required minimum samples per query", "Early stopping condition",
                   "Compliance test performance check", "does not cover all dataset", "Checks failed for",
                   "NoResults", "SUMMARY: submission has errors")


def checker(inference: Path, submission: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "inference.tools.submission.submission_checker.main", "--input",
                           str(submission), "--version", "v6.1", "--csv", str(submission.parent / "summary.csv")],
                          capture_output=True, text=True, cwd=inference.parent)
    lines = (done.stdout + done.stderr).splitlines()
    # The checker logs "[time file:line ERROR] message" (logging's "%(levelname)s]").
    errors = [line for line in lines if "ERROR]" in line]
    print(f"submission checker --version v6.1: exit {done.returncode}, {len(errors)} ERROR line(s)")
    for line in errors:
        print("  " + line)
    others = [line for line in errors if not any(known in line for known in EXPECTED_ERRORS)]
    print(f"ERROR lines other than quick-run lengths and the stand-in's dataset size: {len(others)}")
    for line in others:
        print("  ! " + line)
    for line in lines[-12:]:
        print("  | " + line)


def spans_line_matches_bert(inference: Path) -> None:
    from mlperf_qx.accuracy.spans import accuracy_line

    constants = (inference / "tools/submission/submission_checker/constants.py").read_text()
    pattern = re.search(r'"F1": r"(.*)",\n', constants).group(1)
    line = accuracy_line({"exact_match": 100.0, "f1": 100.0})
    print(f"spans line {line} against the checker's F1 pattern: {'match' if re.match(pattern, line) else 'NO MATCH'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlperf-inference", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--official-offline", action="store_true")
    parser.add_argument("--official-only", action="store_true",
                        help="skip the quick runs (the tree of an earlier call keeps them); implies --official-offline")
    args = parser.parse_args()
    inference, out = args.mlperf_inference.resolve(), args.out.resolve()
    digits = models(out / "models")
    root = out / "submission" / "closed" / "qx"
    tree = root / "results" / SYSTEM
    for scenario in () if args.official_only else SCENARIOS:
        for test in ("TEST04", "TEST01"):
            runs = out / "runs" / f"{scenario}-{test}"
            verify(digits, runs, tree, scenario, "--compliance", test, "--duration-ms", "300", "--samples", "500")
            compare_compliance(inference, runs, test, tree / "resnet" / scenario / test)
    if args.official_offline or args.official_only:
        verify(digits, out / "runs" / "Offline-official", tree, "Offline", "--run-length", "official",
               "--samples", "500")
    complete_templates(root)
    checker(inference, out / "submission")
    spans_line_matches_bert(inference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
