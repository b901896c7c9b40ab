#!/usr/bin/env python3
"""Agreement of two LoadGen accuracy logs of raw outputs, for tasks without labels.

    python agreement.py --reference-accuracy-file A.json --candidate-accuracy-file B.json [--dtype float32] [--width N]

Each entry's data is the hex of a float vector (one sample's output). Entries are de-duplicated by
qsl_idx and matched by it. Prints top-1 agreement, mean cosine similarity and max abs error.
Needs numpy only.
"""

import argparse
import json
import sys

import numpy as np


def read_outputs(path, dtype):
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    outputs = {}
    for entry in entries:
        index = int(entry["qsl_idx"])
        if index not in outputs:
            outputs[index] = np.frombuffer(bytes.fromhex(entry["data"]), dtype=dtype).astype(np.float64)
    return outputs


def compare(reference, candidate):
    common = sorted(set(reference) & set(candidate))
    if not common:
        raise ValueError("the two logs share no qsl_idx")
    agree, cosines, max_abs = 0, [], 0.0
    for index in common:
        a, b = reference[index], candidate[index]
        if a.shape != b.shape:
            raise ValueError(f"qsl_idx {index}: outputs of {a.size} and {b.size} values")
        agree += int(np.argmax(a) == np.argmax(b))
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        cosines.append(float(a @ b / norm) if norm else 1.0)
        max_abs = max(max_abs, float(np.max(np.abs(a - b))) if a.size else 0.0)
    return {"samples": len(common), "top1_agreement": agree / len(common), "mean_cosine": float(np.mean(cosines)),
            "min_cosine": float(np.min(cosines)), "max_abs_error": max_abs,
            "missing": len(set(reference) ^ set(candidate))}


def agreement_line(result):
    return (f"top1_agreement={100 * result['top1_agreement']:.3f}%, mean_cosine={result['mean_cosine']:.6f}, "
            f"min_cosine={result['min_cosine']:.6f}, max_abs_error={result['max_abs_error']:.6g}, "
            f"total={result['samples']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-accuracy-file", required=True)
    parser.add_argument("--candidate-accuracy-file", required=True)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "float64"])
    args = parser.parse_args(argv)
    try:
        result = compare(read_outputs(args.reference_accuracy_file, np.dtype(args.dtype)),
                         read_outputs(args.candidate_accuracy_file, np.dtype(args.dtype)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(agreement_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
