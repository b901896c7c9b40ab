"""Verify tasks by name; ``make_task`` picks the response format from the flags and the model."""

from __future__ import annotations

from ...errors import UserInputError
from .base import ResponseFormat, Score, Task, output_names
from .classification import Classification
from .raw_outputs import RawOutputs
from .spans import Spans

TASKS: dict[str, type[Task]] = {t.name: t for t in (Classification, RawOutputs, Spans)}
RESPONSE_DTYPES = ("float32", "int32", "int64")

__all__ = ["TASKS", "ResponseFormat", "Score", "Task", "check_task_metric", "make_task"]


def check_task_metric(bench, name: str) -> None:
    """A submission's accuracy.txt must hold the line the checker's pattern for the benchmark reads."""
    task = TASKS.get(name)
    if task is not None and task.checker_metric != bench.metric:
        line = f"the checker's '{task.checker_metric}' line" if task.checker_metric else "qx's own agreement line"
        raise UserInputError(f"--task {name} writes {line}, but the submission checker reads {bench.name}'s "
                             f"accuracy as '{bench.metric}'; choose the task that answers as {bench.name}'s "
                             "reference does, or drop --submission-dir")


def make_task(name: str, model_outputs: list[str], outputs: list[str], dtype: str | None,
              label_offset: int) -> Task:
    if name not in TASKS:
        raise UserInputError(f"--task '{name}': choose one of {', '.join(TASKS)}")
    dtype = dtype or "float32"
    if dtype not in RESPONSE_DTYPES:
        raise UserInputError(f"--response-dtype '{dtype}': choose one of {', '.join(RESPONSE_DTYPES)}")
    if name == "classification":
        chosen = output_names(outputs, model_outputs, model_outputs[:1])
        if len(chosen) != 1:
            raise UserInputError("--task classification answers from one output; give one --output")
        layout = f"argmax of '{chosen[0]}'" + (f" {label_offset:+d}" if label_offset else "") + ", one value"
        return Classification(ResponseFormat(chosen, dtype, layout, label_offset))
    if dtype != "float32":
        raise UserInputError(f"--task {name} logs float32 outputs, as MLPerf's references do; drop --response-dtype")
    if label_offset:
        raise UserInputError(f"--label-offset applies to --task classification, not {name}")
    if name == "raw":
        chosen = output_names(outputs, model_outputs, model_outputs)
        return RawOutputs(ResponseFormat(chosen, dtype, "outputs flattened and concatenated"))
    chosen = output_names(outputs, model_outputs, model_outputs[:2])
    if len(chosen) > 2:
        raise UserInputError("--task spans reads start and end logits: two outputs, or one laid out (seq, 2)")
    return Spans(ResponseFormat(chosen, dtype, "(seq, 2) start/end logits"))
