"""``Predictor``: images in, top-k labels out, from any artifact the toolkit makes.

The preprocessing comes from the artifact's own metadata through ``data.Preprocess`` (the same
code calibration, parity checks and ``eval`` use), inputs are batched up to what the artifact
accepts, and ``predict`` may be called from many threads at once: ONNX Runtime sessions run
concurrently, other runners (TensorRT execution contexts, CUDA graphs) are serialised by a lock.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .data import Preprocess, from_array, load_image
from .errors import ConfigError, DataError, EngineError
from .metrics import check_batch_sizes
from .models.labels import class_names
from .runtime.base import Runner
from .runtime.registry import Backend, open_backend

BACKENDS = tuple(b.value for b in Backend)  # the runtime registry's backends (kept under its old name)
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one image, most probable first."""

    labels: list[str]
    indices: list[int]
    probabilities: list[float]
    source: str = ""  # the image's path, or "image N" for in-memory images

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "labels": self.labels,
            "indices": self.indices,
            "probabilities": self.probabilities,
        }


def softmax(logits: NDArray[Any]) -> NDArray[Any]:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    probs: NDArray[Any] = e / e.sum(axis=-1, keepdims=True)
    return probs


class Predictor:
    """Top-k classification with an artifact. Use as a context manager, or call ``close``.

    >>> with Predictor.from_artifact("resnet50.onnx") as p:          # doctest: +SKIP
    ...     [pred] = p.predict(["cat.jpg"], topk=5)
    ...     pred.labels[0], pred.probabilities[0]
    """

    def __init__(
        self,
        runner: Runner,
        *,
        labels: str | os.PathLike[str] | Sequence[str] | None = None,
        batch_size: int | None = None,
    ) -> None:
        if batch_size is not None:
            check_batch_sizes([batch_size], "--batch-size")
        self.runner = runner
        self.metadata = runner.metadata
        self.labels = class_names(self.metadata, labels)
        limit = runner.fixed_batch or runner.max_batch
        self.batch_size = min(batch_size or DEFAULT_BATCH, limit) if limit else (batch_size or DEFAULT_BATCH)
        self._owns = not runner.active  # a runner the caller already opened stays the caller's
        if self._owns:
            runner.__enter__()

    @classmethod
    def from_artifact(
        cls,
        path: str | os.PathLike[str],
        backend: str | Backend = "auto",
        *,
        labels: str | os.PathLike[str] | Sequence[str] | None = None,
        batch_size: int | None = None,
        threads: int | None = None,
        depth: int | str | None = None,
    ) -> Predictor:
        """Open ``path`` (an ONNX file, a TensorRT plan, a model id or a ``.pth`` checkpoint, whose
        architecture ``depth`` names) on ``backend``: auto | onnxruntime | onnxruntime-cuda |
        onnxruntime-tensorrt | tensorrt | torch | openvino."""
        runner = open_backend(path, backend, threads=threads, depth=depth)
        return cls(runner, labels=labels, batch_size=batch_size)

    @property
    def preprocess(self) -> Preprocess:
        return self.runner.preprocess

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def __enter__(self) -> Predictor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns and self.runner.active:
            self.runner.__exit__(None, None, None)

    def logits(self, inputs: NDArray[Any]) -> NDArray[Any]:
        """Logits for already preprocessed inputs (the runner's input format), in batches."""
        x = np.asarray(inputs)
        parts = [self.runner.infer_all(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.num_classes), np.float32)

    def _images(self, images: Any) -> list[tuple[str, Any]]:
        if (
            isinstance(images, (str, os.PathLike))
            or not isinstance(images, (Sequence, np.ndarray))
            or (isinstance(images, np.ndarray) and images.ndim in (2, 3))
        ):
            images = [images]
        out = []
        for i, im in enumerate(images):
            if isinstance(im, (str, os.PathLike)):
                out.append((os.fspath(im), load_image(im)))
            elif isinstance(im, np.ndarray):
                out.append((f"image {i}", from_array(im)))
            elif hasattr(im, "mode") and hasattr(im, "size"):  # a PIL image
                out.append((f"image {i}", im))
            else:
                raise DataError(f"image {i}: expected a path, a PIL image or a numpy array, got {type(im).__name__}")
        return out

    def predict(self, images: Any, topk: int = 5) -> list[Prediction]:
        """Top-``topk`` predictions for each image: a path, a PIL image, an ``HxWx3`` array
        (uint8 0-255 or float 0-1), or a sequence / ``[n, H, W, 3]`` array of them."""
        if isinstance(topk, bool) or not isinstance(topk, int) or topk <= 0:
            raise ConfigError(f"topk must be a positive integer, got {topk}")
        k = min(topk, self.num_classes)
        items = self._images(images)
        pre = self.preprocess
        results: list[Prediction] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            probs = softmax(self._checked(self.runner.infer_all(np.stack([pre.transform(im) for _, im in chunk]))))
            for (source, _), p in zip(chunk, probs, strict=True):
                top = np.argsort(-p, kind="stable")[:k]
                results.append(
                    Prediction(
                        labels=[self.labels[i] for i in top],
                        indices=[int(i) for i in top],
                        probabilities=[float(p[i]) for i in top],
                        source=source,
                    )
                )
        return results

    def _checked(self, logits: NDArray[Any]) -> NDArray[Any]:
        """Logits that are one finite score per label, or a one-line error (never ``nan%``, an
        ``IndexError`` or one model's labels on another's outputs)."""
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ConfigError(
                f"the model outputs {list(logits.shape)} but there are {self.num_classes} labels: "
                "labels and model disagree"
            )
        if not np.isfinite(logits).all():
            raise EngineError("the model's outputs are not finite (NaN or infinity): no prediction can be made")
        return logits

    def describe(self) -> dict[str, Any]:
        return {
            **self.runner.describe(),
            "input": self.runner.input_spec,
            "batch_size": self.batch_size,
            "num_classes": self.num_classes,
            "thread_safe": self.runner.thread_safe,
        }
