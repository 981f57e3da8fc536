"""What the runners of an ONNX file share (ONNX Runtime, OpenVINO): the file checked by the
toolkit before a runtime opens it, its metadata and preprocessing, its batch (dynamic or fixed),
and the thread count. A new ONNX runtime subclasses this and writes only its session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from numpy.typing import NDArray

from ..data import Preprocess
from ..errors import ConfigError
from ..onnx_io import ArtifactMeta, check_external_data, load_onnx
from ..safeio import ONNX_MAX_BYTES, check_readable
from ..system import cpu_count
from .base import Runner, check_threads


class OnnxFileRunner(Runner):
    """An ONNX file a runtime opens itself. ``__init__`` loads the graph without its weights
    (clear errors for a missing or non-ONNX file, external data checked: regular files of the
    right sizes), so a bad artifact is refused before any runtime is imported."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        check_threads(threads)
        self.threads = threads or cpu_count()
        model = load_onnx(self.path, load_weights=False)
        check_external_data(model, self.path)
        self.metadata = ArtifactMeta.from_model(model)
        self._pre = Preprocess.from_metadata(self.metadata)
        batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
        self._fixed = batch_dim.dim_value if batch_dim.HasField("dim_value") else None
        self._inspect(model)

    def _inspect(self, model: Any) -> None:
        """A subclass's look at the graph (without weights) while it is loaded."""

    def _check_file(self) -> None:
        """Before the runtime opens the path itself: still the regular file ``__init__`` checked
        (not swapped for a FIFO or something too large)."""
        check_readable(self.path, "ONNX model", ONNX_MAX_BYTES, error=ConfigError)

    @property
    def preprocess(self) -> Preprocess:
        return self._pre

    @property
    def fixed_batch(self) -> int | None:
        return self._fixed

    def _check_batch(self, batch: NDArray[Any]) -> NDArray[Any]:
        """``Runner._check``, and a fixed-batch artifact takes only its own batch size."""
        x = self._check(batch)
        if self._fixed is not None and len(x) != self._fixed:
            raise ConfigError(f"{self.path.name} has a fixed batch of {self._fixed}, got {len(x)}")
        return x
