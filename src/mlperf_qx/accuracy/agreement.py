#!/usr/bin/env python3
"""Agreement of two LoadGen accuracy logs of raw outputs, for tasks without labels.

    python agreement.py --reference-accuracy-file A.json --candidate-accuracy-file B.json [--dtype float32]
                        [--layout NAME:DxD[,NAME:DxD...]]

Each entry's data is the hex of a float vector (one sample's outputs, flattened and concatenated).
Entries are de-duplicated by qsl_idx and matched by it. Prints mean and min cosine similarity and
max abs error over the whole vector.

With ``--layout`` (each output's per-sample shape, in the order they are concatenated), each
output is also judged channel by channel: along the axis whose channels' reference ranges differ
most (a detection head's boxes ~320 next to scores 0..1), the cosine of each channel pooled over
samples; the smallest is ``min_channel_cosine``. A pooled cosine is dominated by the largest
channels; a channel that one coarse int8 scale zeroed shows here. Top-1 agreement is argmax
agreement along each output's last axis (its class axis), per position: for a (seq, classes)
output, the share of positions whose argmax agrees. Without a layout the vector is one output.
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


def parse_layout(text):
    """'boxes:4x64,scores:80' -> [('boxes', (4, 64)), ('scores', (80,))]."""
    layout = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, dims = part.rpartition(":")
        if not name or not dims:
            raise ValueError(f"--layout '{part}': write NAME:DxD")
        layout.append((name, tuple(int(d) for d in dims.split("x"))))
    return layout


class _Channels:
    """Per output and per axis, per channel sums over samples: a*b, a*a, b*b, max|a|."""

    def __init__(self, shape):
        self.shape = shape
        self.sums = [np.zeros((4, size)) for size in shape]

    def add(self, a, b):
        a, b = a.reshape(self.shape), b.reshape(self.shape)
        for axis, sums in enumerate(self.sums):
            others = tuple(k for k in range(len(self.shape)) if k != axis)
            sums[0] += np.sum(a * b, axis=others)
            sums[1] += np.sum(a * a, axis=others)
            sums[2] += np.sum(b * b, axis=others)
            sums[3] = np.maximum(sums[3], np.max(np.abs(a), axis=others))

    def worst(self):
        """(axis, channel, cosine) on the axis whose channels' ranges differ most; None if no
        axis has two channels."""
        axes = [k for k, size in enumerate(self.shape) if size >= 2]
        if not axes:
            return None
        spread = [self.sums[k][3].max() / max(self.sums[k][3].min(), 1e-30) for k in axes]
        axis = axes[int(np.argmax(spread))]
        dot, norm_a, norm_b, _ = self.sums[axis]
        denominator = np.sqrt(norm_a * norm_b)
        both_zero = (norm_a == 0) & (norm_b == 0)
        cosine = np.where(both_zero, 1.0, np.divide(dot, denominator, out=np.zeros_like(dot), where=denominator > 0))
        channel = int(np.argmin(cosine))
        return axis, channel, float(cosine[channel])


def _top1(a, b, shape):
    """(positions whose argmax along the last axis agree, positions)."""
    a, b = a.reshape(-1, shape[-1] if shape else a.size), b.reshape(-1, shape[-1] if shape else b.size)
    return int(np.sum(np.argmax(a, axis=1) == np.argmax(b, axis=1))), a.shape[0]


def compare(reference, candidate, layout=None):
    common = sorted(set(reference) & set(candidate))
    if not common:
        raise ValueError("the two logs share no qsl_idx")
    size = reference[common[0]].size
    layout = layout or [("output", (size,))]
    sizes = [int(np.prod(shape)) for _, shape in layout]
    if sum(sizes) != size:
        raise ValueError(f"--layout describes {sum(sizes)} values per sample, the log holds {size}")
    channels = [_Channels(shape) for _, shape in layout]
    agree = positions = 0
    cosines, max_abs = [], 0.0
    for index in common:
        a, b = reference[index], candidate[index]
        if a.shape != b.shape:
            raise ValueError(f"qsl_idx {index}: outputs of {a.size} and {b.size} values")
        norm = np.linalg.norm(a) * np.linalg.norm(b)
        cosines.append(float(a @ b / norm) if norm else 1.0)
        max_abs = max(max_abs, float(np.max(np.abs(a - b))) if a.size else 0.0)
        for (_, shape), part, start, count in zip(layout, channels, np.cumsum([0] + sizes[:-1]), sizes):
            piece_a, piece_b = a[start:start + count], b[start:start + count]
            part.add(piece_a, piece_b)
            good, total = _top1(piece_a, piece_b, shape)
            agree, positions = agree + good, positions + total
    result = {"samples": len(common), "top1_agreement": agree / positions, "mean_cosine": float(np.mean(cosines)),
              "min_cosine": float(np.min(cosines)), "max_abs_error": max_abs,
              "missing": len(set(reference) ^ set(candidate))}
    worst = [(part.worst(), name) for part, (name, _) in zip(channels, layout)]
    worst = [(found, name) for found, name in worst if found is not None]
    if worst:
        (axis, channel, cosine), name = min(worst, key=lambda item: item[0][2])
        result.update({"min_channel_cosine": cosine, "worst_channel": f"{name} axis {axis + 1} channel {channel}"})
    return result


def agreement_line(result):
    channel = (f"min_channel_cosine={result['min_channel_cosine']:.6f} ({result['worst_channel']}), "
               if "min_channel_cosine" in result else "")
    return (f"mean_cosine={result['mean_cosine']:.6f}, min_cosine={result['min_cosine']:.6f}, {channel}"
            f"max_abs_error={result['max_abs_error']:.6g}, top1_agreement_per_position="
            f"{100 * result['top1_agreement']:.3f}%, total={result['samples']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-accuracy-file", required=True)
    parser.add_argument("--candidate-accuracy-file", required=True)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "float64"])
    parser.add_argument("--layout", default="", help="each output's per-sample shape: NAME:DxD[,NAME:DxD...]")
    args = parser.parse_args(argv)
    try:
        result = compare(read_outputs(args.reference_accuracy_file, np.dtype(args.dtype)),
                         read_outputs(args.candidate_accuracy_file, np.dtype(args.dtype)), parse_layout(args.layout))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(agreement_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
