"""Usage errors (a bad, missing or unknown option, argument or command) get qx's one-line answer
like every other user error: exit 2, the command and the option named, no usage box."""

from __future__ import annotations

import pytest

from conftest import assert_user_error


@pytest.mark.parametrize(("args", "fragments"), [
    (["quantize"], ["qx quantize:", "'model'", "qx quantize --help"]),
    (["quantize", "m.onnx", "--bogus"], ["qx quantize:", "--bogus"]),
    (["verify-equivalence", "--reference", "a", "--candidate", "b", "--dataset", "c", "--out", "d",
      "--performance-runs", "abc"], ["qx verify-equivalence:", "'--performance-runs'", "integer"]),
    (["export", "--opset", "seventeen"], ["qx export:", "'--opset'"]),
    (["frobnicate"], ["qx:", "'frobnicate'"]),
])
def test_a_usage_error_is_one_line_naming_the_command_and_what_is_wrong(qx, args, fragments):
    assert_user_error(qx(*args), *fragments)


def test_help_still_answers_and_qx_alone_shows_it(qx):
    assert qx("quantize", "--help").code == 0
    alone = qx()
    assert alone.code == 2 and "verify-equivalence" in alone.out + alone.err
