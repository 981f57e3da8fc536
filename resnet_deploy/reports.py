"""Atomic file writes, JSON rendering, file hashes and the progress protocol shared by every stage.

An artifact is written to a hidden temp file in its target folder and renamed over the target
only once complete (``os.replace`` is atomic on POSIX): a crash, a failed check or Ctrl-C never
leaves a partial file at the output path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .errors import ConfigError


def check_output_path(path: str | os.PathLike[str], default_name: str) -> Path:
    """Resolve an output path (a file, or an existing folder to put ``default_name`` in) and check
    that its folder exists and is writable, before any slow work starts."""
    text = os.fspath(path)
    p = Path(text).expanduser()
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
        fd, probe = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"output folder is not writable: {parent} ({e.strerror})") from None
    return p


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on normal exit rename it onto ``target``, else delete it."""
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, target)
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
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
