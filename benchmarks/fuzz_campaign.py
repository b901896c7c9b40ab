"""Randomized fuzz campaign: corrupt inputs of every format qx reads and check each run ends
cleanly (exit 0, or exit 2 with one ``error:`` line, or exit 1 with one when quantize measured
that no op can stay int8; never a traceback, exit 3 or a crash).

The test suite runs the same fuzzers derandomized (fixed examples, tests/test_security.py) so CI
never fails on a new draw; this script draws new cases. Every failure is saved with its input
under ``--out`` for a regression test.

    python benchmarks/fuzz_campaign.py                       # 10,000 cases per format, random seed
    python benchmarks/fuzz_campaign.py --cases 200 --seed 7  # a short, reproducible campaign

Formats: onnx (inspect + quantize a corrupted model), safetensors (export with corrupted weights),
npz (quantize from a corrupted .npz), list (a corrupted --calib-list), cache (a random JSON --cache).
A case is reproducible from (seed, format, index), printed for each failure.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FORMATS = ("onnx", "safetensors", "npz", "list", "cache")
REPO = Path(__file__).resolve().parents[1]


def tiny_model(path: Path) -> Path:
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def corrupt(rng: random.Random, raw: bytes) -> bytes:
    """Truncate, flip a byte, or insert bytes at a random position."""
    position = rng.randrange(len(raw) + 1)
    mode = rng.choice(("truncate", "flip", "insert"))
    if mode == "truncate":
        return raw[:position]
    if mode == "flip" and position < len(raw):
        return raw[:position] + bytes([raw[position] ^ rng.randrange(1, 256)]) + raw[position + 1:]
    return raw[:position] + rng.randbytes(rng.randrange(1, 17)) + raw[position:]


def random_json(rng: random.Random, depth: int = 0):
    kind = rng.choice(("none", "bool", "float", "text", "list", "dict") if depth < 3 else ("none", "bool", "float", "text"))
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "float":
        return rng.uniform(-1e6, 1e6)
    if kind == "text":
        return "".join(rng.choice("abcdefghij_-.0123456789") for _ in range(rng.randrange(9)))
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_json(rng, 3) or "k": random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


class Case:
    """One format's inputs, built once in ``folder``; ``run(rng)`` makes and runs one case."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.model = tiny_model(folder / "tiny.onnx")
        self.model_bytes = self.model.read_bytes()
        self.calib = folder / "calib"
        self.calib.mkdir()
        np.save(self.calib / "a.npy", np.zeros((3, 4, 4), np.float32))
        self.good_npz = folder / "good.npz"
        np.savez(self.good_npz, x=np.zeros((2, 3, 4, 4), np.float32))
        self.weights_bytes = _safetensors_bytes()

    def run(self, fmt: str, rng: random.Random) -> list[tuple[list[str], Path]]:
        """The commands of one case, each with the corrupted file it reads."""
        out = self.folder / "out.onnx"
        if fmt == "onnx":
            path = self._write("fuzz.onnx", corrupt(rng, self.model_bytes))
            return [(["inspect", str(path)], path),
                    (["quantize", str(path), "--calib", str(self.calib), "-o", str(out)], path)]
        if fmt == "safetensors":
            path = self._write("w.safetensors", corrupt(rng, self.weights_bytes) if rng.random() < 0.8
                               else rng.randbytes(rng.randrange(300)))
            return [(["export", "--framework", "torch", "--model", f"{REPO / 'tests' / 'models' / 'zoo.py'}:MLP",
                      "--weights", str(path), "--input", "x:2x16", "-o", str(out)], path)]
        if fmt == "npz":
            path = self._write("bad.npz", corrupt(rng, self.good_npz.read_bytes()))
            return [(["quantize", str(self.model), "--calib", str(path), "-o", str(out)], path)]
        if fmt == "list":
            path = self._write("list.txt", rng.randbytes(rng.randrange(64)))
            return [(["quantize", str(self.model), "--calib", str(self.good_npz), "--calib-list", str(path), "-o",
                      str(out)], path)]
        path = self._write("cache.json", json.dumps(random_json(rng)).encode())
        return [(["quantize", str(self.model), "--calib", str(self.good_npz), "--cache", str(path), "-o", str(out)],
                 path)]

    def _write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path


def _safetensors_bytes() -> bytes:
    from safetensors.torch import save

    sys.path.insert(0, str(REPO / "tests" / "models"))
    from zoo import MLP

    return save({k: v.contiguous() for k, v in MLP().state_dict().items()})


def run_qx(argv: list[str]) -> tuple[int, str]:
    from mlperf_qx.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except BaseException as exc:  # noqa: BLE001 - anything escaping main is a finding
            return -1, f"{type(exc).__name__}: {exc}"
    return code, err.getvalue()


def clean(code: int, err: str) -> bool:
    if code == 0:
        return True
    lines = err.strip().splitlines()
    return code in (1, 2) and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err


def campaign(formats: list[str], cases: int, seed: int, out: Path) -> dict[str, dict]:
    summary = {}
    with tempfile.TemporaryDirectory() as scratch:
        case = Case(Path(scratch))
        for fmt in formats:
            started, failures = time.perf_counter(), 0
            for index in range(cases):
                rng = random.Random(f"{seed}:{fmt}:{index}")
                for argv, path in case.run(fmt, rng):
                    code, err = run_qx(argv)
                    if not clean(code, err):
                        failures += 1
                        saved = out / f"{fmt}_{seed}_{index}{path.suffix}"
                        out.mkdir(parents=True, exist_ok=True)
                        saved.write_bytes(path.read_bytes())
                        print(f"FAIL {fmt} seed={seed} index={index} exit={code}: {err.strip()[:300]} "
                              f"(input saved as {saved})", flush=True)
                if (index + 1) % max(1, cases // 10) == 0:
                    print(f"{fmt}: {index + 1}/{cases} cases, {failures} failures, "
                          f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            summary[fmt] = {"cases": cases, "failures": failures, "seconds": round(time.perf_counter() - started, 1)}
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="cases per format (default 10,000)")
    parser.add_argument("--seed", type=int, default=None, help="default: drawn from the clock, and printed")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, from {', '.join(FORMATS)}")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / ".cache" / "fuzz_findings")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    print(f"fuzz campaign: seed {seed}, {args.cases} cases per format", file=sys.stderr)
    summary = campaign(args.formats.split(","), args.cases, seed, args.out)
    print(json.dumps({"seed": seed, "formats": summary}, indent=2))
    return 1 if any(s["failures"] for s in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
