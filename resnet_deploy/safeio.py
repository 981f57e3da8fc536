"""One rule for every file the toolkit reads: a regular file, under a size cap, checked first.

A path handed to the toolkit can be anything: ``/dev/zero`` (read until memory runs out), a FIFO
named ``model.onnx`` (an ``open`` that never returns), a link to either, or a real file far larger
than anything it could hold. Every reader goes through here: ``check_readable`` stats the path
(following links, never opening it, so a FIFO cannot block) and ``open_checked`` /
``read_bytes_capped`` / ``read_text_capped`` open it non-blocking and check the open descriptor
again, so what is read is the file that was checked, and never more than the cap.

Errors are the caller's toolkit error (``ConfigError``, ``WeightsError``, ``DataError``,
``EngineError``) with one line naming the path and what is wrong. Only the standard library and
``errors``: the lowest layer, usable from any module.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import ResnetDeployError

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# The caps, in one place (each caller may pass a tighter one it knows, e.g. a plan's recorded size).
ONNX_MAX_BYTES = (1 << 31) - 1  # protobuf cannot parse a message over 2 GiB
EXTERNAL_DATA_MAX_BYTES = 16 * GiB  # all of a model's external tensors together (ResNet-152 fp32: 0.23 GiB)
PLAN_MAX_BYTES = 4 * GiB  # a TensorRT plan (and exactly the size its sidecar records)
TIMING_CACHE_MAX_BYTES = 256 * MiB  # TensorRT timing caches are a few MB
SIDECAR_MAX_BYTES = 4 * MiB  # engine sidecars: a few KB of JSON
RECORD_MAX_BYTES = 16 * MiB  # parity records: a few KB of JSON
CALIBRATION_CACHE_MAX_BYTES = 64 * MiB  # cached calibration entries (JSON)
LABELS_MAX_BYTES = 16 * MiB  # class names, one a line (ImageNet's 1,000: 10 KB)
CHECKPOINT_MAX_BYTES = 2 * GiB  # a checkpoint when the architecture is not known yet
IMAGE_MAX_BYTES = 512 * MiB  # an image file (an uncompressed 89 Mpx RGBA BMP is 358 MB)
IMAGE_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb warning threshold (~268 MB as RGB)

ErrorType = type[ResnetDeployError]


def human_size(n: int) -> str:
    """``1610612736`` -> ``1.5 GiB``; ``2147483647`` -> ``2 GiB``; ``100`` -> ``100 B``."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size - size // 1024:  # 2 GiB - 1 byte reads as 2 GiB
            text = f"{n / size:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    return f"{n} B"


def _article(kind: str) -> str:
    return "an" if kind[:1].lower() in "aeiou" else "a"


def _describe(p: Path) -> str:
    """The path as given, and where it leads when it is a link."""
    if p.is_symlink():
        return f"{p} (a link to {os.path.realpath(p)})"
    return str(p)


def _kind_of(mode: int) -> str | None:
    """What is wrong with a file of this mode, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def _check_stat(p: Path, st: os.stat_result, kind: str, max_bytes: int, error: ErrorType, why: str) -> None:
    problem = _kind_of(st.st_mode)
    if problem is not None:
        raise error(f"{kind} {_describe(p)} {problem}")
    if st.st_size > max_bytes:
        raise error(
            f"{kind} {_describe(p)} is {human_size(st.st_size)}, over the {human_size(max_bytes)} limit "
            f"for {_article(kind)} {kind}{why}"
        )


def check_readable(
    path: str | os.PathLike[str],
    kind: str,
    max_bytes: int,
    *,
    error: ErrorType,
    missing: str | None = None,
    why: str = "",
) -> Path:
    """``path`` if it is a regular file (after following links) of at most ``max_bytes``, else
    ``error`` with one line: ``missing`` (default ``<kind> not found: <path>``) when there is
    nothing there, or what the path is instead. Only stats: never opens, so a FIFO cannot block."""
    p = Path(path)
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise error(missing or f"{kind} not found: {_describe(p)}") from None
    except OSError as e:
        raise error(f"cannot read {kind} {_describe(p)}: {e.strerror or type(e).__name__}") from None
    _check_stat(p, st, kind, max_bytes, error, why)
    return p


@contextlib.contextmanager
def open_checked(
    path: str | os.PathLike[str],
    kind: str,
    max_bytes: int,
    *,
    error: ErrorType,
    missing: str | None = None,
    why: str = "",
) -> Iterator[BinaryIO]:
    """The file open for binary reading, after ``check_readable`` and the same check on the open
    descriptor (opened non-blocking: a FIFO swapped in after the stat cannot block either)."""
    p = check_readable(path, kind, max_bytes, error=error, missing=missing, why=why)
    try:
        fd = os.open(
            p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        )
    except FileNotFoundError:
        raise error(missing or f"{kind} not found: {_describe(p)}") from None
    except OSError as e:
        raise error(f"cannot read {kind} {_describe(p)}: {e.strerror or type(e).__name__}") from None
    try:
        _check_stat(p, os.fstat(fd), kind, max_bytes, error, why)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: ordinary reads from here on
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        yield f


def read_bytes_capped(
    path: str | os.PathLike[str],
    kind: str,
    max_bytes: int,
    *,
    error: ErrorType,
    missing: str | None = None,
    why: str = "",
) -> bytes:
    """All of a checked file's bytes, never more than ``max_bytes`` (even if it grows meanwhile)."""
    p = Path(path)
    with open_checked(p, kind, max_bytes, error=error, missing=missing, why=why) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise error(f"cannot read {kind} {_describe(p)}: {e.strerror or type(e).__name__}") from None
    if len(data) > max_bytes:
        raise error(f"{kind} {_describe(p)} grew past the {human_size(max_bytes)} limit while being read")
    return data


def read_text_capped(
    path: str | os.PathLike[str],
    kind: str,
    max_bytes: int,
    *,
    error: ErrorType,
    missing: str | None = None,
    encoding: str = "utf-8",
) -> str:
    """A checked file's text (``encoding``, UTF-8 by default), never more than ``max_bytes``."""
    data = read_bytes_capped(path, kind, max_bytes, error=error, missing=missing)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise error(f"{kind} {_describe(Path(path))} is not {encoding.upper()} text (byte {e.start})") from None
