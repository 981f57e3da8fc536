"""Top-1 / top-5 accuracy of any artifact on an ImageFolder dataset (``DIR/<class>/<image>``)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import image_folder, iter_batches
from .errors import ConfigError, DataError
from .metrics import check_batch_sizes
from .reports import Progress, Reporter, StepProgress
from .runtime.base import Runner
from .runtime.registry import Backend, open_backend, parse_backend


@dataclass
class EvalReport:
    artifact: str
    data: str
    count: int
    top1: float
    top5: float
    classes: int
    runner: dict[str, Any]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    per_class_top1: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "data": self.data,
            "count": self.count,
            "top1": self.top1,
            "top5": self.top5,
            "classes": self.classes,
            "runner": self.runner,
            "skipped": len(self.skipped),
            "skipped_files": [{"path": p, "reason": r} for p, r in self.skipped[:20]],
            "per_class_top1": self.per_class_top1,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.count / self.seconds, 2) if self.seconds > 0 else None,
        }


def evaluate(
    artifact: str | os.PathLike[str] | Runner,
    data: str | os.PathLike[str],
    *,
    batch_size: int = 32,
    limit: int | None = None,
    labels_file: str | os.PathLike[str] | None = None,
    weights: str | None = None,
    depth: int | str | None = None,
    threads: int | None = None,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
    progress: Progress | StepProgress | None = None,
    backend: str | Backend = Backend.auto,
) -> EvalReport:
    """Accuracy of an ONNX file, a zoo model / checkpoint, or any Runner on an image folder.

    Class ``i`` is the ``i``-th class folder in sorted order (ImageNet's wnid folders sort into
    its class indices), or the ``i``-th line of ``labels_file``. ``limit`` evaluates that many
    images spread evenly over the dataset. ``backend`` runs an artifact path on that backend
    (``auto``: by its kind).
    """
    say = Reporter(progress)
    check_batch_sizes([batch_size], "--batch-size")
    if limit is not None and limit <= 0:
        raise ConfigError(f"limit must be a positive integer, got {limit}")
    key = parse_backend(backend)
    if key not in (Backend.auto, Backend.onnxruntime) and tuple(providers) != ("CPUExecutionProvider",):
        raise ConfigError(f"--provider applies to --backend onnxruntime, not {key.value}")
    runner = (
        artifact
        if isinstance(artifact, Runner)
        else open_backend(artifact, backend, weights=weights, depth=depth, threads=threads, providers=providers)
    )
    dataset = image_folder(data, labels_file)
    samples = dataset.samples
    if limit is not None and limit < len(samples):
        picks = np.linspace(0, len(samples) - 1, limit).round().astype(int)
        samples = [samples[i] for i in picks]
    paths = [p for p, _ in samples]
    labels = np.array([label for _, label in samples])
    if runner.fixed_batch is not None:
        batch_size = runner.fixed_batch
    skipped: list[tuple[Path, str]] = []
    hits1 = np.zeros(len(samples), bool)
    hits5 = np.zeros(len(samples), bool)
    seen = np.zeros(len(samples), bool)
    t0 = time.perf_counter()
    with runner:
        for batch in iter_batches(paths, runner.preprocess, batch_size, skipped):
            logits = runner.infer_all(batch.inputs)  # fixed batches and engine profiles handled there
            if logits.shape[1] < len(dataset.classes):
                raise DataError(
                    f"the dataset has {len(dataset.classes)} classes but the model outputs {logits.shape[1]}"
                )
            idx = np.array(batch.indices)
            y = labels[idx]
            top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
            hits1[idx] = top5[:, 0] == y
            hits5[idx] = (top5 == y[:, None]).any(axis=1)
            seen[idx] = True
            say.step("evaluating", int(seen.sum()) + len(skipped), len(samples))
        desc = runner.describe()
    count = int(seen.sum())
    if count == 0:
        raise DataError(f"none of the {len(samples)} images in {data} could be read")
    per_class = {
        dataset.classes[c]: float(hits1[seen & (labels == c)].mean()) for c in sorted(set(labels[seen].tolist()))
    }
    return EvalReport(
        artifact=str(artifact if not isinstance(artifact, Runner) else artifact.name),
        data=str(Path(data).resolve()),
        count=count,
        top1=float(hits1[seen].mean()),
        top5=float(hits5[seen].mean()),
        classes=len(dataset.classes),
        runner=desc,
        skipped=[(str(p), r) for p, r in skipped],
        per_class_top1=per_class,
        seconds=time.perf_counter() - t0,
    )
