"""Atomic file writes, JSON rendering, file hashes and the progress protocol shared by every stage.

An artifact is written to a hidden temp file in its target folder and renamed over the target
only once complete (``os.replace`` is atomic on POSIX): a crash, a failed check or Ctrl-C never
leaves a partial file at the output path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError, ResnetDeployError


def check_output_path(path: str | os.PathLike[str], default_name: str) -> Path:
    """Resolve an output path (a file, or an existing folder to put ``default_name`` in) and check
    that its folder exists and is writable, before any slow work starts."""
    text = os.fspath(path)
    p = Path(text).expanduser()
    if len(os.fsencode(p.name)) > _NAME_MAX:
        raise ConfigError(f"output file name of {len(os.fsencode(p.name))} bytes: at most {_NAME_MAX}")
    if p.is_dir():
        p = p / default_name
    elif text.endswith(("/", os.sep)):
        raise ConfigError(f"output folder does not exist: {p} (create it first)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise ConfigError(f"output folder does not exist: {parent} (create it first)")
    if not parent.is_dir():
        raise ConfigError(f"output folder is not a folder: {parent}")
    if p.exists() and p.is_dir():
        raise ConfigError(f"output path is a folder: {p}")
    if p.exists() and not os.access(p, os.W_OK):
        raise ConfigError(f"output file is read-only: {p} (remove it or choose another path)")
    try:  # the only reliable test (root ignores mode bits; read-only mounts ignore both)
        fd, probe = tempfile.mkstemp(prefix=temp_prefix(p.name), suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"output folder is not writable: {parent} ({e.strerror})") from None
    return p


# C0/C1 control characters (terminal escapes, carriage returns, NUL...) and the Unicode bidi and
# line/paragraph separators that can make printed text lie about what it says.
_UNPRINTABLE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object, *, newlines: bool = False) -> str:
    """``text`` safe to print: every control character shown as an escape (``\\x1b``, ``\\n``),
    so a value from a file (metadata, a path, a label) cannot move the cursor, recolour the
    terminal or forge a line of its own. ``newlines=True`` keeps line feeds (for our own layout)."""
    s = str(text)
    if not newlines:
        s = s.replace("\n", "\\n")
    return _UNPRINTABLE.sub(lambda m: _escape_char(m.group()), s)


def _escape_char(ch: str) -> str:
    if ch == "\t":
        return "\\t"
    if ch == "\r":
        return "\\r"
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def shown_path(path: str | os.PathLike[str]) -> str:
    """The absolute path the user gave, for reports: symlinks are *not* resolved, so an output
    written over a symlink (which replaces the link, never its target) is named as given."""
    return os.path.abspath(os.fspath(path))


# Our temp names: ``.<name>.<pid>.<random>.tmp`` (or ``.probe``), the name cut so the whole stays
# within the 255 bytes a file name may have (a valid 243-character output name must not fail).
_NAME_MAX = 255
_TEMP_OVERHEAD = 32  # '.' + '.' + pid (<= 10) + '.' + mkstemp's 8 random characters + '.probe'


# A write that fails for lack of room or permission (disk full, quota, file size limit, read-only).
_WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def temp_prefix(name: str) -> str:
    """The prefix of our temp files for ``name``: hidden, naming it, carrying our pid (for the sweep)."""
    stem = name.encode("utf-8")[: _NAME_MAX - _TEMP_OVERHEAD].decode("utf-8", "ignore")
    return f".{stem}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _stale_owner(name: str) -> int | None:
    """The pid in one of our temp names (``.<name>.<pid>.<random>.tmp|.probe``) whose process is gone."""
    if not name.startswith(".") or not name.endswith((".tmp", ".probe")):
        return None
    parts = name.rsplit(".", 3)  # ['.<name>', '<pid>', '<random>', 'tmp']
    if len(parts) != 4 or not parts[1].isdigit() or len(parts[2]) != 8:
        return None
    pid = int(parts[1])
    return pid if pid != os.getpid() and not _pid_alive(pid) else None


def sweep_stale_temps(folder: str | os.PathLike[str], only: str = "") -> list[str]:
    """Remove our temp files (and ship's staging folders) in ``folder`` left by a process that no
    longer runs (SIGKILL, power loss); never another live process's, never anything not named by
    us. Returns the names removed. Best effort: a folder that cannot be listed is skipped."""
    import shutil

    removed: list[str] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(only) or _stale_owner(entry.name) is None:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(entry.name)
        except OSError:
            pass
    return removed


_SWEPT: set[str] = set()  # folders this process has swept: leftovers only come from processes already gone


def _sweep_once(folder: Path) -> None:
    """``sweep_stale_temps`` the first time this process writes in ``folder``, not at every write."""
    key = os.path.abspath(folder)
    if key not in _SWEPT:
        _SWEPT.add(key)
        sweep_stale_temps(folder)


SCRATCH_LABEL = "resnet-deploy-scratch"


@contextmanager
def owned_scratch() -> Iterator[Path]:
    """A scratch folder of ours in the system temp folder, made the process's default temp folder
    while the block runs, so the scratch of libraries that use ``tempfile`` (ONNX Runtime's
    quantizer: ~100 MB per ResNet-50) lands in it; removed afterwards, and swept by a later run if
    this process is killed first. Not thread-safe (``tempfile.tempdir`` is process-wide)."""
    import shutil

    base = tempfile.gettempdir()
    sweep_stale_temps(base, only=f".{SCRATCH_LABEL}.")
    path = tempfile.mkdtemp(prefix=temp_prefix(SCRATCH_LABEL), suffix=".tmp", dir=base)
    old = tempfile.tempdir
    tempfile.tempdir = path
    try:
        yield Path(path)
    finally:
        tempfile.tempdir = old
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on normal exit rename it onto ``target``, else delete it."""
    target = Path(target)
    _sweep_once(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
    except OSError as e:
        if e.errno in _WRITE_FAILURES:  # the OS does not say which file: we do
            raise ResnetDeployError(f"cannot write {target}: {e.strerror}") from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, paths, numpy scalars, tuples -> plain JSON types; non-finite floats -> None."""
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return to_jsonable(obj.to_dict())
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item"):  # numpy scalar
        return to_jsonable(obj.item())
    return str(obj)


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    from .safeio import open_checked

    h = hashlib.sha256()
    # streamed, so any size; but a regular file only (a FIFO or /dev/zero would never end)
    with open_checked(path, "file", 1 << 46, error=ResnetDeployError) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------ progress


@runtime_checkable
class StepProgress(Protocol):
    """A progress display that also draws counted stages (a bar): the CLI's rich UI."""

    def __call__(self, stage: str) -> None: ...

    def step(self, stage: str, done: int, total: int) -> None: ...


# The one progress protocol of the library: a callable that takes the current stage's name. An
# object that also has ``step(stage, done, total)`` (``StepProgress``) gets counted stages as
# bars; a plain callable gets each counted stage's name once.
Progress = Callable[[str], None]
Steps = Callable[[str, int, int], None]  # ``Reporter.step``: (stage, done, total)


class Reporter:
    """What a stage calls to report progress, whatever (if anything) the caller passed."""

    def __init__(self, progress: Progress | StepProgress | None = None) -> None:
        self._progress = progress
        self._last = ""

    def __call__(self, stage: str) -> None:
        if self._progress is not None:
            self._progress(stage)

    def step(self, stage: str, done: int, total: int) -> None:
        if isinstance(self._progress, StepProgress):
            self._progress.step(stage, done, total)
        elif stage != self._last:
            self(stage)
        self._last = stage


def save_png(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write a matplotlib figure as a PNG atomically (temp file, then rename) and close it."""
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return target
