#!/usr/bin/env python3
"""Top-1 accuracy from a LoadGen accuracy log, with the flags and defaults of MLPerf's
``accuracy-imagenet.py``:

    python classification.py --mlperf-accuracy-file mlperf_log_accuracy.json --imagenet-val-file val_map.txt [--dtype float32]

val_map.txt: one "<sample> <label>" per line; the QSL index of a sample is its line number.
Each log entry's "data" is the hex of the SUT's response, decoded as --dtype (float32 by default,
as the reference harness answers); its first value, as an int, is compared with the label.
Entries are de-duplicated by qsl_idx. Prints the line MLPerf's submission checker parses:
    accuracy=NN.NNN%, good=N, total=N
Needs numpy only.
"""

import argparse
import json
import sys

import numpy as np

DTYPES = {"float32": np.float32, "int32": np.int32, "int64": np.int64}


def read_labels(path):
    labels = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise ValueError(f"{path}:{number}: expected '<sample> <label>'")
            labels.append(int(parts[1]))
    return labels


def read_predictions(path, dtype):
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    predictions = {}
    for entry in entries:
        index = int(entry["qsl_idx"])
        if index in predictions:
            continue  # LoadGen may log a sample more than once; MLPerf scores it once
        values = np.frombuffer(bytes.fromhex(entry["data"]), dtype=dtype)
        predictions[index] = int(values[0]) if values.size else None
    return predictions


def score(predictions, labels):
    good = sum(1 for index, predicted in predictions.items() if index < len(labels) and predicted == labels[index])
    return good, len(predictions)


def accuracy_line(good, total):
    return f"accuracy={100.0 * good / total if total else 0.0:.3f}%, good={good}, total={total}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlperf-accuracy-file", required=True, help="path to mlperf_log_accuracy.json")
    parser.add_argument("--imagenet-val-file", required=True, help="val_map.txt: '<sample> <label>' per line")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="dtype of the SUT's response")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        labels = read_labels(args.imagenet_val_file)
        predictions = read_predictions(args.mlperf_accuracy_file, np.dtype(DTYPES[args.dtype]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_of_range = [i for i in predictions if i >= len(labels)]
    if out_of_range:
        print(f"error: qsl_idx {out_of_range[0]} has no line in {args.imagenet_val_file}", file=sys.stderr)
        return 2
    good, total = score(predictions, labels)
    if args.verbose:
        for index, predicted in sorted(predictions.items()):
            if predicted != labels[index]:
                print(f"qsl_idx {index}: expected {labels[index]}, found {predicted}")
    print(accuracy_line(good, total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
