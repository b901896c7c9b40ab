#!/usr/bin/env python3
"""Top-1 accuracy from a LoadGen accuracy log, in the shape of MLPerf's accuracy scripts.

    python classification.py --mlperf-accuracy-file mlperf_log_accuracy.json --labels val_map.txt [--dtype int32]

val_map.txt: one "<sample> <label>" per line; the QSL index of a sample is its line number.
Each log entry's "data" is the hex of the SUT's response: the top-1 class index in --dtype.
Entries are de-duplicated by qsl_idx. Prints the line MLPerf's submission checker parses:
    accuracy=NN.NNN%, good=N, total=N
Needs numpy only.
"""

import argparse
import json
import sys

import numpy as np


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
        predictions[index] = int(values[0]) if values.size else -1
    return predictions


def score(predictions, labels):
    good = sum(1 for index, predicted in predictions.items() if index < len(labels) and predicted == labels[index])
    return good, len(predictions)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlperf-accuracy-file", required=True, help="path to mlperf_log_accuracy.json")
    parser.add_argument("--labels", required=True, help="val_map.txt: '<sample> <label>' per line")
    parser.add_argument("--dtype", default="int32", choices=["int32", "int64", "float32"],
                        help="dtype of the SUT's response payload")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    try:
        labels = read_labels(args.labels)
        predictions = read_predictions(args.mlperf_accuracy_file, np.dtype(args.dtype))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out_of_range = [i for i in predictions if i >= len(labels)]
    if out_of_range:
        print(f"error: qsl_idx {out_of_range[0]} has no line in {args.labels}", file=sys.stderr)
        return 2
    good, total = score(predictions, labels)
    accuracy = 100.0 * good / total if total else 0.0
    print(f"accuracy={accuracy:.3f}%, good={good}, total={total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
