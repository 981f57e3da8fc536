"""What ``serve`` tells people about tritonserver: why it died (one line, from its output and log),
and, through PyTriton's Python-backend stub, what a client sees when inference fails (one line,
never the stub's traceback). No PyTriton import here: this works on texts, bytes and bound models.

PyTriton 0.7 sends its stub (``pytriton/proxy/model.py``) to Triton with every model load
(``Model.get_proxy_model_files``, called from ``Triton.run``; Triton writes it to its own
``/tmp/folderXXXXXX``), and that stub answers any failure with ``Model execute error:
<traceback.format_exc()>`` raised as an exception, which the backend reports with an ``At:
<file>(<line>): execute`` frame. ``quiet_stub_errors`` rewrites that one ``except`` block, found
by exact text, to answer each request with an error response carrying the last line of the error
(our own ``InferenceFailed`` line); with another PyTriton the text is not found and the stub is
left as it is (a warning says so).
"""

from __future__ import annotations

import logging
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOCKET_PATH_MAX = 107  # bytes in a Unix socket path (sun_path is 108 with the final NUL)


def socket_room(workspace: str, model: str, instances: int) -> str | None:
    """The longest Unix socket path PyTriton will create in ``workspace`` for ``model`` if it
    exceeds ``SOCKET_PATH_MAX`` bytes (ZeroMQ refuses it and the model never loads), else None."""
    longest = f"{workspace}/{model}_0_{max(instances, 1) - 1}-server.sock"
    return longest if len(longest.encode()) > SOCKET_PATH_MAX else None


def remove_shared_memory_of(pids: list[int], folder: str = "/dev/shm") -> list[str]:
    """Remove the Python backend's shared-memory regions that PyTriton named after ``pids``
    (``pytrtion<pid>-<hash>...``, 4 MB each): tritonserver unlinks them when it stops, a SIGKILL
    leaves them. Only for pids known to be dead ``serve`` processes (their temp folder was stale)."""
    removed = []
    for pid in pids:
        for region in Path(folder).glob(f"pytrtion{int(pid)}-*"):
            try:
                region.unlink()
                removed.append(region.name)
            except OSError:
                pass
    return removed


# ------------------------------------------------------------------ what a failing request tells


STUB_EXECUTE_ERROR = (
    "        except Exception:\n"
    "            msg = traceback.format_exc()\n"
    '            raise pb_utils.TritonModelException(f"Model execute error: {msg}") from None'
    "  # pytype: disable=module-attr\n"
)
QUIET_EXECUTE_ERROR = (
    "        except Exception as e:  # resnet-deploy: the client gets one line, never a traceback\n"
    "            import re\n"
    "\n"
    "            lines = [line.strip() for line in str(e).splitlines() if line.strip()]\n"
    '            msg = re.sub(r"(?:/[\\w.@+-]+){2,}", "<path>", lines[-1] if lines else type(e).__name__)[:500]\n'
    "            if self._decoupled_model:\n"
    "                raise pb_utils.TritonModelException(msg) from None  # pytype: disable=module-attr\n"
    "            return [\n"
    "                pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(msg))\n"
    "                for _ in triton_requests\n"
    "            ]  # pytype: disable=module-attr\n"
)
STUB_FILE = "model.py"


def quiet_stub(source: bytes) -> bytes | None:
    """PyTriton's stub ``source`` with ``execute``'s error answer rewritten (see the module's
    docstring); None when the expected text is not there exactly once (another PyTriton)."""
    text = source.decode("utf-8")
    if text.count(STUB_EXECUTE_ERROR) != 1:
        return None
    return text.replace(STUB_EXECUTE_ERROR, QUIET_EXECUTE_ERROR).encode("utf-8")


def quiet_stub_errors(models: Any) -> bool:
    """Make each bound PyTriton model (``Triton._model_manager.models``) send Triton the quiet
    stub when it is loaded; the models must not be loaded yet (after ``bind``, before ``run``).
    False, with a warning, when the stub is not the one we know (it is then sent unchanged)."""
    patched = True
    for model in list(models):
        original: Callable[[], dict[str, bytes]] = model.get_proxy_model_files
        files = original()
        key = next((k for k in files if k.endswith("/" + STUB_FILE)), None)
        quiet = quiet_stub(files[key]) if key is not None else None
        if key is None or quiet is None:
            patched = False
            continue

        def files_with_quiet_stub(original: Callable[[], dict[str, bytes]] = original) -> dict[str, bytes]:
            out = dict(original())
            for k, v in out.items():
                if k.endswith("/" + STUB_FILE):
                    out[k] = quiet_stub(v) or v
            return out

        model.get_proxy_model_files = files_with_quiet_stub
    if not patched:
        log.warning(
            "this PyTriton's model stub is not the one serve knows (nvidia-pytriton 0.7): a failing request "
            "still sends the client PyTriton's traceback"
        )
    return patched


# ------------------------------------------------------------------------ why tritonserver died


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "no message")[:300]


_BENIGN = (
    "CudaDriverHelper has not been initialized",
    "Unable to allocate pinned system memory",
    "Failed to set config modification time",  # Triton 2.51 on every model loaded by PyTriton
)
_TRITON_ERROR = re.compile(r"^E\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]+\]\s*(.*)$")
_SIGNAL_LINE = re.compile(r"^Signal \((\d+)\) received")


def explain_death(output: str, exit_code: int | None) -> str:
    """One line saying why tritonserver stopped, from its console output and log (``output``)
    and its exit code (negative: the signal that killed it): an uncaught C++ exception (the
    ``terminate called...`` and ``what():`` lines), a fatal signal it reported, or its last ``E``
    (error) line (none for SIGKILL, which leaves no trace); not the last line that mentions "error"."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not any(b in line for b in _BENIGN)]
    cause = ""
    for i, line in enumerate(lines):
        if line.startswith("terminate called"):
            what = next((w for w in lines[i + 1 : i + 3] if w.startswith("what():")), "")
            cause = " ".join(f"{line} ({what})".split()) if what else line
    if not cause and exit_code != -signal.SIGKILL:  # a SIGKILLed process logs nothing: older lines explain nothing
        errors = [m.group(1) or m.group(0) for m in map(_TRITON_ERROR.match, lines) if m]
        cause = errors[-1] if errors else ""
    status = ""
    if exit_code is not None and exit_code < 0:
        status = f"killed by {_signal_name(-exit_code)}"
    elif exit_code:
        status = f"exit status {exit_code}"
    reported = [int(m.group(1)) for m in map(_SIGNAL_LINE.match, lines) if m]
    if reported and not status:
        status = f"{_signal_name(reported[-1])} received"
    if not cause and not status:
        return "no cause in tritonserver's output or log" if lines else "no tritonserver output or log"
    return _one_line(f"{status}: {cause}" if status and cause else status or cause)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
