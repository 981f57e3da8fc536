"""Run runners on the same inputs, compare their outputs, and keep the evidence.

``compare`` opens the candidate and the reference (any artifact, a model id, PyTorch rebuilt from
the candidate's metadata, or ready Runners), feeds both the same seeded random inputs and real
images, and judges each output pair with ``metrics.compare_outputs``. ``check`` is what the CLI
runs: compare, write the candidate's parity record, and raise ``ParityError`` on a failure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .data import Preprocess, iter_batches, list_images
from .errors import ConfigError, DataError, ParityError
from .metrics import (
    MIN_JUDGED_SAMPLES,
    CheckReport,
    ParityRow,
    Tolerance,
    check_batch_sizes,
    check_seed,
    compare_outputs,
    random_inputs,
)
from .onnx_io import ArtifactMeta
from .precisions import PRECISIONS, Precision, precision_spec
from .records import record_check
from .reports import sha256_file
from .runtime.base import Runner
from .runtime.pyt import TorchRunner
from .runtime.registry import Backend, open_backend, open_runner, parse_backend, resolve_backend


def _file_sha256(artifact: Any) -> str | None:
    """The sha256 of an artifact given as a file path (None for runners, "torch" and model ids)."""
    if not isinstance(artifact, (str, os.PathLike)) or not os.path.isfile(artifact):
        return None
    return sha256_file(artifact)


InputSet = tuple[str, NDArray[Any]]  # (what it is, the candidate's input batch)


def compare(
    candidate: Any,
    reference: Any = "torch",
    *,
    batch_sizes: Sequence[int] = (1, 8),
    images: str | os.PathLike[str] | None = None,
    max_images: int = 64,
    seed: int = 0,
    tolerance: Tolerance | None = None,
    weights: str | None = None,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
    inputs: Sequence[InputSet] | None = None,
    backend: str | Backend = Backend.auto,
) -> CheckReport:
    """Run ``candidate`` and ``reference`` on the same inputs and judge the difference.

    ``candidate``: an artifact path or a Runner. ``reference``: ``"torch"`` (the PyTorch model
    rebuilt from the candidate's metadata and checked against its weights hash), another artifact
    path, or a Runner. Inputs: seeded random tensors at each batch size (or the given ``inputs``,
    ``(label, batch)`` pairs, instead), plus up to ``max_images`` real images from ``images``
    preprocessed as the candidate's metadata says. ``tolerance`` overrides the per-precision
    defaults (``precisions.PRECISIONS``) for every input set. ``backend`` runs a candidate path
    on that backend (``auto``: its own; ``providers`` apply to ONNX Runtime only).
    """
    t0 = time.perf_counter()
    check_batch_sizes(batch_sizes)
    check_seed(seed)
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ConfigError(f"--max-images {max_images}: must be at least 1")
    # The bytes compared, hashed once before they run (what a parity record vouches for).
    key = parse_backend(backend)
    if key not in (Backend.auto, Backend.onnxruntime) and tuple(providers) != ("CPUExecutionProvider",):
        raise ConfigError(f"--provider applies to --backend onnxruntime, not {key.value}")
    cand_sha, ref_sha = _file_sha256(candidate), _file_sha256(reference)
    same_backend = cand_sha is None or resolve_backend(candidate, key) is resolve_backend(candidate)
    if cand_sha is not None and cand_sha == ref_sha and tuple(providers) == ("CPUExecutionProvider",) and same_backend:
        # (the same file on a GPU provider or another backend against ONNX Runtime's CPU is a real
        # check; on the CPU twice it is not)
        raise ConfigError(
            f"the reference {os.path.basename(reference)} is the candidate itself (same bytes): nothing would be checked"
        )
    cand, ref = _open_pair(candidate, reference, weights, providers, key)
    meta = ArtifactMeta(cand.metadata)
    notes: list[str] = []
    sizes = list(batch_sizes)
    if cand.fixed_batch is not None and sizes != [cand.fixed_batch]:
        notes.append(f"the candidate has a fixed batch of {cand.fixed_batch}: inputs run in batches of that size")
    known = meta.precision in {p.value for p in PRECISIONS}
    spec = precision_spec(meta.precision if known else Precision.fp32)
    trained = meta.weights_trained
    noise_gate = spec.gate("random", trained)
    if not spec.noise_judged and meta.get("calibration_source", "random") != "random" and inputs is None:
        noise_gate = replace(noise_gate, min_sqnr_db=None, min_retrieval=None)
        if images is None:
            notes.append(
                f"{meta.precision} calibrated on images is judged on images (--images DIR): on noise inputs, "
                "which its ranges never saw, only by cosine"
            )
    _check_judgeable(tolerance or noise_gate, sizes, images, inputs)
    rows: list[ParityRow] = []
    with cand, ref:
        for what, x in inputs if inputs is not None else _random_sets(cand.preprocess, sizes, seed):
            rows.append(_compare_on(cand, ref, what, x, tolerance or noise_gate))
        if images is not None:
            if not trained and tolerance is None and spec.check_images.min_top1_agreement is not None:
                notes.append("untrained weights: top-1 agreement is reported, not required")
            what, x = _image_set(images, cand.preprocess, max_images, max(sizes), notes)
            rows.append(_compare_on(cand, ref, what, x, tolerance or spec.gate("images", trained)))
        cand_desc, ref_desc = cand.describe(), ref.describe()
    if any(r.result.batch_size < MIN_JUDGED_SAMPLES for r in rows) and any(
        r.result.judged_across_samples for r in rows
    ):
        notes.append(
            f"SQNR and retrieval are judged on batches of {MIN_JUDGED_SAMPLES} or more samples; smaller ones by the rest"
        )
    for desc, sha in ((cand_desc, cand_sha), (ref_desc, ref_sha)):
        if sha is not None:
            desc["sha256"] = sha
    passed = all(r.result.passed for r in rows)
    seconds = time.perf_counter() - t0
    return CheckReport(
        cand_desc, ref_desc, meta.precision, rows, passed, seconds, notes, weights_trained=meta.weights_trained
    )


def _check_judgeable(
    tolerance: Tolerance, sizes: Sequence[int], images: object, inputs: Sequence[InputSet] | None
) -> None:
    """A gate judged across samples needs a batch of enough samples: refuse before anything runs."""
    if not tolerance.across_samples or images is not None or inputs is not None:
        return  # a caller's own inputs (a conversion's held-out images) are judged as they are
    if tolerance.scale_rtol is not None:
        return  # max|diff| against the logits' scale (fp32) fails a wrong input by itself
    if max(sizes) < MIN_JUDGED_SAMPLES:
        raise ConfigError(
            f"parity is judged across samples (SQNR, retrieval): give a batch of at least {MIN_JUDGED_SAMPLES} "
            f"(e.g. --batch-sizes 1,{MIN_JUDGED_SAMPLES}) or --images DIR"
        )


def _open_pair(
    candidate: Any, reference: Any, weights: str | None, providers: tuple[str, ...], backend: Backend
) -> tuple[Runner, Runner]:
    """The candidate's and the reference's runners, checked to take the same inputs."""
    cand = candidate if isinstance(candidate, Runner) else open_backend(candidate, backend, providers=providers)
    if isinstance(reference, Runner):
        ref = reference
    elif str(reference) == "torch":
        ref = TorchRunner.from_metadata(cand.metadata, weights=weights, preprocess=cand.preprocess)
    else:
        ref = open_runner(reference)
    if tuple(ref.preprocess.crop) != tuple(cand.preprocess.crop):
        raise ConfigError(f"reference input {ref.preprocess.crop} and candidate input {cand.preprocess.crop} differ")
    if ref.preprocess.pixels and not cand.preprocess.pixels:
        raise ConfigError("the reference takes uint8 pixels and the candidate floats: swap them")
    return cand, ref


def _compare_on(cand: Runner, ref: Runner, what: str, x: NDArray[Any], tolerance: Tolerance) -> ParityRow:
    # A pixel-input candidate against a float reference: the reference gets the same pixels,
    # normalised in numpy exactly as the candidate's graph does it.
    ref_x = cand.preprocess.normalize(x) if cand.preprocess.pixels and not ref.preprocess.pixels else x
    return ParityRow(what, compare_outputs(ref.infer_all(ref_x), cand.infer_all(x), tolerance))


def _random_sets(pre: Preprocess, sizes: Sequence[int], seed: int) -> list[InputSet]:
    """Seeded random inputs, one batch per size: normalised floats, or uniform pixels."""
    if pre.pixels:
        rng = np.random.default_rng(seed)
        return [(f"random pixels, batch {b}", pre.random(b, rng)) for b in sizes]
    return [(f"random, batch {len(x)}", x) for x in random_inputs(pre.crop, sizes, seed)]


def _image_set(
    images: str | os.PathLike[str], pre: Preprocess, max_images: int, batch: int, notes: list[str]
) -> InputSet:
    """Up to ``max_images`` real images spread over the folder, preprocessed as ``pre`` says."""
    files = list_images(images)
    if not files:
        raise DataError(f"no images in {images}")
    picks = np.linspace(0, len(files) - 1, min(max_images, len(files))).round().astype(int)
    skipped: list[tuple[Any, str]] = []
    batches = [b.inputs for b in iter_batches([files[i] for i in picks], pre, batch, skipped)]
    if not batches:
        raise DataError(f"none of the images in {images} could be read")
    if skipped:
        notes.append(f"skipped {len(skipped)} unreadable image(s)")
    x = np.concatenate(batches)
    return f"images ({len(x)} from {images})", x


def check(
    candidate: str | os.PathLike[str],
    reference: Any = "torch",
    *,
    record: bool = True,
    **options: Any,
) -> CheckReport:
    """``compare`` the artifact ``candidate`` with ``reference`` (options as ``compare``), write
    its parity record (what ``ship`` requires) and raise ``ParityError`` with the report when any
    input set fails its tolerance."""
    report = compare(candidate, reference, **options)
    backend = options.get("backend", Backend.auto)
    if record and resolve_backend(candidate, backend) is not resolve_backend(candidate):
        # The record vouches for the artifact where it runs by default (what ship serves): a run on
        # another backend neither earns nor revokes it.
        report.notes = [
            *(report.notes or []),
            f"no parity record written: it vouches for {os.path.basename(candidate)} on "
            f"{resolve_backend(candidate).value}, and this check ran on {parse_backend(backend).value}",
        ]
    elif record:
        record_check(candidate, report)
    if not report.passed:
        failed = [row.inputs for row in report.rows if not row.result.passed]
        raise ParityError(f"{candidate} differs from the reference beyond tolerance on: {'; '.join(failed)}", report)
    return report
