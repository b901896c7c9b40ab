#!/usr/bin/env python3
"""Exact match and F1 of answer spans from start/end logits in a LoadGen accuracy log, in the shape
of MLPerf's BERT scorer (``accuracy-squad.py``), without a tokenizer or a SQuAD file:

    python spans.py --mlperf-accuracy-file cand.json --reference-accuracy-file ref.json [--dtype float32]
    python spans.py --mlperf-accuracy-file cand.json --spans-file spans.txt

Each entry's data is float logits laid out (seq, 2): start and end per token, as the BERT
reference's SUT answers (np.stack([start, end], axis=-1)). A sample's answer is the span that
maximises start + end logit among the --n-best best starts and ends, with start <= end and at most
--max-answer-length tokens, as accuracy-squad.py chooses. Without labels the reference log's spans
are the truth; spans.txt holds "<sample> <start> <end>" (token positions) per line, the QSL index
being the line number. F1 is over token positions. Prints {"exact_match": .., "f1": ..}, as
accuracy-squad.py does.
Needs numpy only.
"""

import argparse
import json
import sys

import numpy as np

DTYPES = {"float32": np.float32, "float16": np.float16}


def best_span(logits, n_best=20, max_answer_length=30):
    start_logits, end_logits = logits[:, 0], logits[:, 1]
    starts = np.argsort(-start_logits, kind="stable")[:n_best]
    ends = np.argsort(-end_logits, kind="stable")[:n_best]
    best, best_score = (0, 0), -np.inf
    for start in starts:
        for end in ends:
            if end < start or end - start + 1 > max_answer_length:
                continue
            score = start_logits[start] + end_logits[end]
            if score > best_score:
                best, best_score = (int(start), int(end)), score
    return best


def read_spans_log(path, dtype, n_best=20, max_answer_length=30):
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    spans = {}
    for entry in entries:
        index = int(entry["qsl_idx"])
        if index in spans:
            continue
        logits = np.frombuffer(bytes.fromhex(entry["data"]), dtype=dtype).astype(np.float64)
        if logits.size % 2:
            raise ValueError(f"{path}: qsl_idx {index} holds {logits.size} values, not (seq, 2) start/end logits")
        spans[index] = best_span(logits.reshape(-1, 2), n_best, max_answer_length)
    return spans


def read_spans_file(path):
    spans = {}
    with open(path, encoding="utf-8") as handle:
        index = 0
        for number, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise ValueError(f"{path}:{number}: expected '<sample> <start> <end>'")
            spans[index] = (int(parts[1]), int(parts[2]))
            index += 1
    return spans


def span_f1(predicted, truth):
    overlap = max(0, min(predicted[1], truth[1]) - max(predicted[0], truth[0]) + 1)
    if overlap == 0:
        return 0.0
    precision = overlap / (predicted[1] - predicted[0] + 1)
    recall = overlap / (truth[1] - truth[0] + 1)
    return 2 * precision * recall / (precision + recall)


def score(predicted, truth):
    missing = sorted(set(predicted) - set(truth))
    if missing:
        raise ValueError(f"qsl_idx {missing[0]} has no true span")
    if not predicted:
        raise ValueError("the accuracy log holds no responses")
    exact = sum(predicted[i] == truth[i] for i in predicted)
    f1 = sum(span_f1(predicted[i], truth[i]) for i in predicted)
    total = len(predicted)
    return {"exact_match": 100.0 * exact / total, "f1": 100.0 * f1 / total, "total": total}


def accuracy_line(result):
    """The line accuracy-squad.py prints (json of exact_match and f1, nothing after f1): the
    submission checker's F1 pattern ends at f1's value and its closing brace."""
    return f'{{"exact_match": {result["exact_match"]:.3f}, "f1": {result["f1"]:.3f}}}'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mlperf-accuracy-file", required=True)
    truth = parser.add_mutually_exclusive_group(required=True)
    truth.add_argument("--reference-accuracy-file", help="the reference's accuracy log: its spans are the truth")
    truth.add_argument("--spans-file", help="'<sample> <start> <end>' per line")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--n-best", type=int, default=20)
    parser.add_argument("--max-answer-length", type=int, default=30)
    args = parser.parse_args(argv)
    dtype = np.dtype(DTYPES[args.dtype])
    try:
        predicted = read_spans_log(args.mlperf_accuracy_file, dtype, args.n_best, args.max_answer_length)
        truth_spans = (read_spans_log(args.reference_accuracy_file, dtype, args.n_best, args.max_answer_length)
                       if args.reference_accuracy_file else read_spans_file(args.spans_file))
        result = score(predicted, truth_spans)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(accuracy_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
