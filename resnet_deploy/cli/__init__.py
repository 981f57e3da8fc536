"""The ``resnet-deploy`` command line: a thin layer over the library.

One module per command group (``models``, ``export``, ``build``, ``check``, ``bench``,
``deploy``), each a set of plain functions that build arguments, call the library function of the
same name and render its typed report (a rich table for people, ``--json`` for machines). This
module holds the app and registers every command in one place; errors become one line on stderr
and an exit code in exactly one place: ``_Group.main``. The command modules import ``_common``
and the library, never this module.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from .._version import __version__
from ..errors import ConfigError, ResnetDeployError
from ..reports import printable
from ._common import err
from .bench import bench_cmd
from .build import build_cmd
from .check import check_cmd, eval_cmd, info_cmd
from .deploy import predict_cmd, serve_cmd, ship_cmd
from .export import convert_cmd, export_cmd
from .models import models_cmd

__all__ = ["app", "main"]

DEBUG_ENV = "RESNET_DEPLOY_DEBUG"


class _Group(TyperGroup):
    """Turns every failure into ``error: <one line>`` on stderr and a non-zero exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            rv = super().main(*args, **kwargs)
        except ResnetDeployError as e:
            _fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:  # '| head' closed the pipe: stop quietly, as other tools do
            _quiet_stdout()
            sys.exit(141)
        except OSError as e:  # the OS refused a path we were given (too long, not a folder...)
            if os.environ.get(DEBUG_ENV):
                raise
            where = f": {_shortened(os.fsdecode(e.filename))}" if e.filename is not None else ""
            _fail(f"{e.strerror or type(e).__name__}{where}", 2 if e.errno in _PATH_ERRORS else 1)
        except Exception as e:
            # typer bundles its own click: recognise its usage errors by shape, not by class.
            if hasattr(e, "format_message") and hasattr(e, "exit_code"):
                if type(e).__name__ == "NoArgsIsHelpError":
                    typer.echo(e.format_message())
                    sys.exit(0)
                if type(e).__name__ == "Abort":
                    _fail("aborted", 1)
                _fail(_one_line(e.format_message()) + _help_hint(e), int(e.exit_code))
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(f"unexpected {type(e).__name__}: {_one_line(str(e))} (set {DEBUG_ENV}=1 for a traceback)", 1)
        code = rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        if code == 130:  # typer turns Ctrl-C into a silent Exit(130)
            _fail("interrupted", 130)
        sys.exit(code)


_PATH_ERRORS = {errno.ENAMETOOLONG, errno.ENOTDIR, errno.ENOENT, errno.ELOOP, errno.EISDIR}


def _shortened(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]} ({len(text)} characters)"


def _json_to_stdout(argv: list[str]) -> bool:
    """Whether the command line asks for JSON on stdout (``--json``; bench: ``--json -``)."""
    command = next((a for a in argv if not a.startswith("-")), "")
    for i, arg in enumerate(argv):
        if arg == "--json" or arg.startswith("--json="):
            if command != "bench":
                return True
            value = arg.partition("=")[2] if "=" in arg else (argv[i + 1] if i + 1 < len(argv) else "")
            return value == "-"
    return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so Python's exit-time flush of a broken pipe stays silent."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno() if sys.stdout is not None else 1)


def _one_line(text: str) -> str:
    return printable(" ".join(str(text).split()))


def _help_hint(e: Exception) -> str:
    ctx = getattr(e, "ctx", None)
    path = getattr(ctx, "command_path", None)
    return f" (see '{path} --help')" if path else ""


def _fail(message: str, code: int) -> None:
    err.print("[bold red]error:[/] " + escape(printable(message)), markup=True, highlight=False)
    if code == 130:
        _interrupted.append(True)
    sys.exit(code)


_interrupted: list[bool] = []


def _keep_interrupt_status() -> None:
    """The last exit handler: an interrupted command exits 130, always. CPython remembers a
    KeyboardInterrupt that once escaped code a C extension ran with ``PyRun_String`` (a Ctrl-C
    landing inside such an import), and after finalizing kills itself with SIGINT (-2 to a
    parent) whatever ``sys.exit`` said. The other exit handlers and the threads' shutdown have
    run by now; only the interpreter's own teardown is skipped."""
    if _interrupted:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(130)


app = typer.Typer(
    cls=_Group,
    name="resnet-deploy",
    help="The ResNets of He et al. (2015) from PyTorch to production: ONNX, TensorRT, Triton.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"resnet-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
    allow_host_code: Annotated[
        bool,
        typer.Option(
            "--allow-host-code",
            help="Let version-compatible TensorRT plans run the host code they carry (trusted plans only; "
            "recorded in each runner's description).",
        ),
    ] = False,
) -> None:
    """The ResNets of He et al. (2015) from PyTorch to production: ONNX, TensorRT, Triton."""
    if sys.stdout is None and _json_to_stdout(sys.argv[1:]):
        # before any work: a check would otherwise run (and rewrite its record) for a report that
        # cannot be written
        raise ConfigError("standard output is closed: nowhere to write the JSON (redirect it to a file)")
    if allow_host_code:
        from ..engine import set_host_code_default

        set_host_code_default(True)


# The commands, in the order 'resnet-deploy --help' lists them.
app.command("models")(models_cmd)
app.command("export")(export_cmd)
app.command("convert")(convert_cmd)
app.command("eval")(eval_cmd)
app.command("build")(build_cmd)
app.command("check")(check_cmd)
app.command("bench")(bench_cmd)
app.command("ship")(ship_cmd)
app.command("predict")(predict_cmd)
app.command("serve")(serve_cmd)
app.command("info")(info_cmd)


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM (a timeout, CI cancelling) unwinds like Ctrl-C, so temp files are removed.
    raise KeyboardInterrupt


def main() -> None:
    """Console-script entry point."""
    import atexit
    import signal

    atexit.register(_keep_interrupt_status)  # registered first, so it runs last
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except KeyboardInterrupt:  # during start-up imports, before the app's own handler runs
        _fail("interrupted", 130)
