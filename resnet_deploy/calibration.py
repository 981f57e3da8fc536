"""INT8 calibration inputs: an image folder, an array, or seeded noise; and the range cache.

Images are preprocessed exactly as the model's metadata says (``data.Preprocess``, the same code
as ``eval`` and ``Predictor``), sampled with a seed across the whole folder, and the images after
the calibration set are held out for the int8-vs-fp32 comparison. Ranges are cached by model
hash, inputs and method, so the same run twice calibrates once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .choices import CalibMethod as CalibMethod
from .data import Preprocess, list_images, load_image
from .errors import ConfigError, DataError
from .reports import Steps as Steps
from .safeio import CALIBRATION_CACHE_MAX_BYTES, read_text_capped

CALIB_METHODS = tuple(m.value for m in CalibMethod)
DEFAULT_CALIB_COUNT = 512
CACHE_ENV = "RESNET_DEPLOY_CACHE"


HELD_OUT = 32  # images read beyond the calibration set to compare int8 with fp32 on unseen data


@dataclass
class CalibrationSet:
    """Preprocessed calibration inputs and where they came from."""

    inputs: NDArray[Any]  # float32 [n, 3, H, W]
    source: str  # a folder, "array" or "random"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    held_out: NDArray[Any] | None = None  # images not used for calibration, for the parity check

    @property
    def digest(self) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.inputs, dtype=np.float32).tobytes()).hexdigest()


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over in-memory batches, with ``set_range`` so
    that calibration runs one batch at a time (``CalibStridedMinMax``): ranges and histograms are
    merged batch by batch instead of holding every activation of every image in memory (~100 MB
    per ResNet-50 image). (ORT's own ``CalibMaxIntermediateOutputs`` drops data with MinMax.)"""

    def __init__(self, inputs: NDArray[Any], input_name: str, batch_size: int, progress: Steps) -> None:
        self._batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
        self._name = input_name
        self._start, self._end, self._i = 0, len(self._batches), 0
        self._progress = progress
        self._total = len(inputs)
        self._seen = 0

    def set_range(self, start_index: int, end_index: int) -> None:
        self._start, self._end, self._i = start_index, min(end_index, len(self._batches)), start_index

    def get_next(self) -> dict[str, NDArray[Any]] | None:
        if self._i >= self._end:
            return None
        batch = self._batches[self._i]
        self._i += 1
        self._seen = min(self._seen + len(batch), self._total)
        self._progress("calibrating", self._seen, self._total)
        return {self._name: batch}

    def __len__(self) -> int:
        return len(self._batches)


MAX_CALIBRATION_COUNT = 100_000  # ImageNet's whole validation set is 50,000


def load_calibration(
    calibration: str | os.PathLike[str] | NDArray[Any],
    meta: Mapping[str, str],
    *,
    count: int = DEFAULT_CALIB_COUNT,
    seed: int = 0,
    steps: Steps | None = None,
) -> CalibrationSet:
    """Calibration inputs from an image folder (preprocessed as the model's metadata says), an
    array of already-preprocessed inputs, or ``"random"`` (seeded noise: the accuracy is meaningless)."""
    step = steps or (lambda _stage, _done, _total: None)
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise ConfigError(f"calibration count must be a positive integer, got {count}")
    if count > MAX_CALIBRATION_COUNT:
        raise ConfigError(f"calibration count {count}: at most {MAX_CALIBRATION_COUNT:,} images")
    pre = Preprocess.from_metadata(meta)
    if isinstance(calibration, np.ndarray):
        arr = np.asarray(calibration, dtype=np.float32)
        if arr.ndim != 4 or arr.shape[1:] != (3, *pre.crop) or len(arr) == 0:
            raise ConfigError(f"calibration array must be [n, 3, {pre.crop[0]}, {pre.crop[1]}], got {arr.shape}")
        return CalibrationSet(arr[:count], "array")
    text = os.fspath(calibration)
    if text.strip().lower() == "random":
        rng = np.random.default_rng(seed)
        n = min(count, 64)
        return CalibrationSet(rng.standard_normal((n, 3, *pre.crop)).astype(np.float32), "random")
    files = list_images(text)  # DataError for a missing folder
    if not files:
        raise DataError(f"no images ({', '.join(('.jpg', '.jpeg', '.png', '.webp', '.bmp'))}) in {text}")
    # A seeded sample across the whole folder (not the first files in sorted order, which on an
    # ImageNet-style tree would be the first few classes); the next images are held out.
    order = np.random.default_rng(seed).permutation(len(files))
    skipped: list[tuple[str, str]] = []
    rows: list[NDArray[Any]] = []
    extra: list[NDArray[Any]] = []
    want = min(count, len(files))
    for k in order:
        if len(rows) >= count and len(extra) >= HELD_OUT:
            break
        try:
            x = pre(load_image(files[k]))
        except DataError as e:
            if len(rows) < count:
                skipped.append((str(files[k]), str(e)))
            continue
        if len(rows) < count:
            rows.append(x)
            step("reading calibration images", len(rows), want)
        else:
            extra.append(x)
    if not rows:
        raise DataError(f"none of the {len(files)} image files in {text} could be read ({skipped[0][1]})")
    held = np.stack(extra) if extra else None
    return CalibrationSet(np.stack(rows), str(Path(text).resolve()), skipped, held)


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "resnet-deploy"
    )
    return Path(root) / "calibration"


def prepare_cache(enabled: bool, key: str) -> tuple[Path | None, str, str | None]:
    """(path or None, "hit" | "miss" | "off", a warning). An unusable cache never stops a run: a
    corrupt entry is deleted and recomputed, an unwritable folder turns caching off."""
    if not enabled:
        return None, "off", None
    folder = _cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, "off", f"calibration cache disabled: cannot use {folder} ({e.strerror}); set {CACHE_ENV}"
    path = folder / f"{key}.json"
    if not path.exists() and not path.is_symlink():
        return path, "miss", None
    try:  # a device, FIFO or oversized entry is unreadable like a corrupt one: replaced, never read
        data = json.loads(
            read_text_capped(path, "calibration cache entry", CALIBRATION_CACHE_MAX_BYTES, error=DataError)
        )
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (DataError, OSError, ValueError) as e:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # a folder in the way: writing the entry will say so
        why = str(e) if isinstance(e, DataError) else f"calibration cache entry {path} was unreadable ({e})"
        return path, "miss", f"{why}; recomputed"
    return path, "hit", None
