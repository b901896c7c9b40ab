"""``qx`` entry point: one typer app, one module per command, one error policy.

Errors: a QxError prints ``error: <one line>`` and exits with its code (2 bad input, 1 failed
verification); so does a usage error (a bad, missing or unknown option, argument or command: exit
2, naming the command and where its options are listed); anything unexpected is an internal
error: one line with its whole cause and what to do, exit 3. ``--debug`` anywhere on the command
line also prints the traceback; the exit code stays the same, so a script that reruns with
--debug still sees 2, 1 or 3.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings

from . import lazy_modules

lazy_modules.defer()  # before any command module imports onnx_ir (which imports sympy)

import typer  # noqa: E402
import typer.rich_utils  # noqa: E402

try:  # typer 0.2x carries its own copy of click, whose exceptions its commands raise
    from typer._click import exceptions as click_exceptions  # noqa: E402
except ImportError:  # earlier typer: click itself
    from click import exceptions as click_exceptions  # noqa: E402

from ..errors import InternalError, QxError  # noqa: E402
from . import context, export_cmd, inspect_cmd, quantize_cmd, verify_cmd  # noqa: E402

app = typer.Typer(
    name="qx",
    help="mlperf-qx: export, quantize and verify MLPerf reference models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("export", help=export_cmd.HELP)(export_cmd.export)
app.command("quantize", help=quantize_cmd.HELP)(quantize_cmd.quantize)
app.command("verify-equivalence", help=verify_cmd.HELP)(verify_cmd.verify_equivalence)
app.command("inspect", help=inspect_cmd.HELP)(inspect_cmd.inspect)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """mlperf-qx: export, quantize and verify MLPerf reference models."""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("QX_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    context.argv = ["qx", *args]
    if not debug:
        # Library warnings (deprecations, exporter notes) are noise next to qx's own one-line answers.
        warnings.simplefilter("ignore")
        logging.getLogger().setLevel(logging.ERROR)
    try:
        # Not standalone: usage errors come here, to be answered in one line like every other error
        # (click's own answer is a usage line, a hint and a framed box). An explicit exit's code
        # (typer.Exit: a verdict's 1) is returned.
        code = app(args=args, prog_name="qx", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click_exceptions.NoArgsIsHelpError as asked:  # `qx` alone: its help, as before
        typer.rich_utils.rich_format_error(asked)
        return asked.exit_code
    except click_exceptions.ClickException as usage:  # a bad, missing or unknown option or argument
        print(f"error: {_usage_line(usage, args)}", file=sys.stderr)
        return usage.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        return 1
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else (0 if done.code is None else 2)
    except QxError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or a library failure we did not foresee: still one line
        if debug:
            traceback.print_exc()
        cause = " ".join(str(exc).split()) or "no message"  # the whole cause on one line: the end is often the point
        then = "report the traceback above" if debug else "rerun with --debug and report the traceback"
        print(f"error: internal error ({type(exc).__module__}.{type(exc).__name__}): {cause[:2000]} — not a "
              f"problem with your input; {then}", file=sys.stderr)
        return InternalError.exit_code


def _usage_line(usage: click_exceptions.ClickException, args: list[str]) -> str:
    """click's message on one line, with the command it is about and where its options are listed.
    Some of click's errors carry no context (an option missing its value): the command is then the
    first word of the command line that names one."""
    message = " ".join(usage.format_message().split()).rstrip(".")
    command = getattr(getattr(usage, "ctx", None), "command_path", None)
    if command is None:
        named = next((arg for arg in args if arg in app_command_names()), None)
        command = f"qx {named}" if named else "qx"
    return f"{command}: {message} (see '{command} --help')"


def app_command_names() -> set[str]:
    return {info.name for info in app.registered_commands}


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
