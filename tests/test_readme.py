"""The README's CLI examples run as written (against a freshly trained digits model)."""

import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO

README = (REPO / "README.md").read_text()


def _console_commands() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    return [line[2:] for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def test_quick_start_has_install_and_test_commands():
    bash_blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    assert "pip install" in bash_blocks[0] and "run_all.sh" in bash_blocks[0]
    assert "pytest" in bash_blocks[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert 'pip install -q -e ".[test]"' in ci and "python -m pytest" in ci


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    for script, epochs in (("train_torch.py", "15"), ("train_tf.py", "2")):
        subprocess.run([sys.executable, str(REPO / "examples/digits" / script), "--out", str(out), "--epochs", epochs],
                       check=True, capture_output=True)
    subprocess.run([sys.executable, str(REPO / "examples/digits/dataset.py"), "--out", str(out / "data")],
                   check=True, capture_output=True)
    first_export = shlex.split(_console_commands()[0].replace("build/digits", str(out)))
    assert first_export[1] == "export"
    from mlperf_qx.cli.main import main

    assert main(first_export[1:]) == 0
    return out


@pytest.mark.parametrize("command", _console_commands())
def test_readme_example_runs(qx, digits_dir, command, monkeypatch):
    monkeypatch.chdir(REPO)
    args = shlex.split(command.replace("build/digits", str(digits_dir)))
    assert args[0] == "qx"
    result = qx(*args[1:])
    assert result.code == 0, result
