"""``ship``: an artifact -> a model in an NVIDIA Triton Inference Server model repository.

Layout (Triton's): ``REPO/<name>/config.pbtxt``, ``REPO/<name>/labels.txt`` and
``REPO/<name>/<version>/model.onnx`` (platform ``onnxruntime_onnx``) or ``model.plan`` (platform
``tensorrt_plan``, with its sidecar ``model.plan.json`` beside it). The artifact's parity record
is copied beside the model file, so the repository carries its own evidence.

Only verified artifacts ship: the parity record must be present, passing, and for these exact
bytes (its sha256), a plan must match its sidecar, and random (untrained) weights are refused;
``force`` overrides the first and the last, and the refusal reasons are then kept in the report.
The version folder is assembled under a hidden temp name and renamed into place, so Triton (which
polls repositories) never sees a half-written version.

Triton's own rules (names, batch limits, the ``config.pbtxt`` text and its schema) live in
``triton.py``; the names this module used to define are re-exported here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._version import __version__
from .artifacts import artifact_metadata, load_onnx
from .errors import ConfigError, ResnetDeployError
from .errors import ShipRefused as ShipRefused
from .onnx_io import UINT8_NHWC, ArtifactMeta, check_external_data
from .records import record_path, record_problem
from .reports import atomic_write_text, sha256_file, sweep_stale_temps, temp_prefix
from .safeio import LABELS_MAX_BYTES, SIDECAR_MAX_BYTES, read_text_capped
from .triton import (
    ACCELERATOR_PRECISIONS,
    DEFAULT_MAX_BATCH,
    KINDS,
    ModelIo,
    check_instances,
    check_model_name,
    check_queue_delay,
    config_signature,
    parse_batch_list,
    render_config,
    triton_format,
    triton_max_batch,
    validate_config,
)

__all__ = [
    "ACCELERATOR_PRECISIONS",
    "DEFAULT_MAX_BATCH",
    "KINDS",
    "ShipRefused",
    "ShipReport",
    "check_model_name",
    "parse_batch_list",
    "render_config",
    "ship",
    "triton_max_batch",
    "validate_config",
]

_MARK = "Written by resnet-deploy"  # the first comment of every config.pbtxt this module writes


@dataclass
class ShipReport:
    repository: str
    model_dir: str
    version_dir: str
    name: str
    version: int
    platform: str
    max_batch_size: int
    input: dict[str, Any]
    output: dict[str, Any]
    files: list[str]
    config: str
    artifact: str
    artifact_sha256: str
    labels: str | None
    forced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    validated_with: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class _Artifact:
    """The file to ship, what it says about itself, and how Triton will see it."""

    src: Path
    meta: ArtifactMeta
    model_name: str
    platform: str  # onnxruntime_onnx | tensorrt_plan
    filename: str  # model.onnx | model.plan, in the version folder
    io: ModelIo
    sidecar: Any  # a plan's verified sidecar; None for an ONNX


@dataclass(frozen=True)
class _Layout:
    """Where a model version goes in the repository."""

    repo: Path
    model_dir: Path
    version_dir: Path
    config: Path


# --------------------------------------------------------------------------- arguments


def _check_source(artifact: str | os.PathLike[str]) -> Path:
    src = Path(artifact)
    if not src.exists():
        raise ConfigError(f"file not found: {src}")
    if src.is_dir():
        raise ConfigError(f"expected an artifact file, got a folder: {src}")
    if src.suffix.lower() not in (".onnx", ".plan", ".engine"):
        raise ConfigError(f"{src.name}: ship takes an .onnx file or a TensorRT .plan/.engine")
    return src


def _check_options(
    kind: str, version: int, instances: int, max_queue_delay_us: int | None, preferred_batch: str | Sequence[int] | None
) -> tuple[str, list[int]]:
    """The config options that do not depend on the artifact: the normalized kind, the preferred sizes."""
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: choose gpu or cpu")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 2**63:
        # Triton parses version folders with stoll: a larger number aborts the whole server
        raise ConfigError(f"--version {version}: must be an integer in 1-{2**63 - 1}")
    check_instances(instances)
    check_queue_delay(max_queue_delay_us)
    preferred = parse_batch_list(preferred_batch)
    if max_queue_delay_us is None and preferred:
        raise ConfigError("--preferred-batch configures the dynamic batcher: drop --no-dynamic-batching")
    return kind, preferred


def _check_repository(repo: str | os.PathLike[str]) -> Path:
    """The repository folder, or the folder it will be made in, must be writable."""
    repo_path = Path(repo).expanduser()
    if repo_path.is_symlink() and not repo_path.exists():
        raise ConfigError(f"--repo {repo_path} is a broken symbolic link (to {os.readlink(repo_path)})")
    if repo_path.exists() and not repo_path.is_dir():
        raise ConfigError(f"--repo {repo_path} is a file, not a folder")
    if not repo_path.parent.is_dir():
        raise ConfigError(f"the folder above --repo does not exist: {repo_path.parent}")
    probe_dir = repo_path if repo_path.is_dir() else repo_path.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".probe.", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"cannot write in {probe_dir} ({e.strerror})") from None
    return repo_path


# --------------------------------------------------------------------------- the artifact and its I/O


def _onnx_io(path: Path) -> ModelIo:
    model = load_onnx(path, load_weights=False)
    from onnx import helper

    def describe(v: Any) -> tuple[str, str, list[int | str]]:
        t = v.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(t.elem_type).name
        return v.name, dtype, [d.dim_param or d.dim_value for d in t.shape.dim]

    inits = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ConfigError(f"{path.name}: expected one input and one output")
    iname, idtype, idims = describe(inputs[0])
    oname, odtype, odims = describe(model.graph.output[0])
    if len(idims) != 4 or len(odims) != 2:
        raise ConfigError(f"{path.name}: expected a 4-D image input and a 2-D [batch, classes] output")
    fixed = idims[0] if isinstance(idims[0], int) and idims[0] > 0 else None
    nhwc = idims[3] == 3 and idims[1] != 3
    return ModelIo(
        iname,
        idtype,
        [int(d) for d in idims[1:]],
        triton_format(nhwc),
        oname,
        odtype,
        [int(odims[1])],
        fixed,
        None,
    )


def _plan_io(path: Path) -> tuple[ModelIo, Any]:
    from .sidecar import verify_plan

    _, sidecar = verify_plan(path, None)  # integrity: the bytes are the ones the sidecar describes
    meta = ArtifactMeta(sidecar.metadata)
    shape = [int(d) for d in sidecar.profile["max"][1:]]
    nhwc = meta.input_format == UINT8_NHWC
    io = ModelIo(
        sidecar.input_name,
        meta.input_dtype,
        shape,
        triton_format(nhwc),
        sidecar.output_name,
        meta.output_dtype,
        [meta.num_classes or 0],
        None,
        (int(sidecar.profile["min"][0]), int(sidecar.profile["max"][0])),
    )
    if io.output_dims[0] <= 0:
        raise ConfigError(f"the sidecar of {path.name} does not say how many classes the model has")
    return io, sidecar


def _resolve_artifact(src: Path, name: str | None, kind: str, accelerator: str | None) -> _Artifact:
    """Read the artifact's metadata and I/O; a plan runs on GPU instances, without --accelerator."""
    meta = artifact_metadata(src)
    if "model" not in meta or "image_size" not in meta:
        raise ConfigError(f"{src.name} was not made by resnet-deploy (no model metadata): export it first")
    model_name = meta["model"] if name is None else name  # an empty --name is an error, not the default
    check_model_name(model_name)
    if src.suffix.lower() == ".onnx":
        return _Artifact(src, meta, model_name, "onnxruntime_onnx", "model.onnx", _onnx_io(src), None)
    if kind == "cpu":
        raise ConfigError("a TensorRT plan runs on GPU instances only: drop --kind cpu, or ship the ONNX")
    if accelerator is not None:
        raise ConfigError("--accelerator is for ONNX models (ONNX Runtime's TensorRT provider), not plans")
    io, sidecar = _plan_io(src)
    return _Artifact(src, meta, model_name, "tensorrt_plan", "model.plan", io, sidecar)


def _check_accelerator(accelerator: str | None, kind: str, meta: ArtifactMeta, warnings: list[str]) -> str | None:
    """The normalized precision for ONNX Runtime's TensorRT provider, if one was asked for."""
    if accelerator is None:
        return None
    accelerator = accelerator.strip().lower()
    if accelerator not in ACCELERATOR_PRECISIONS:
        raise ConfigError(f"--accelerator {accelerator!r}: choose one of {', '.join(ACCELERATOR_PRECISIONS)}")
    if kind != "gpu":
        raise ConfigError("--accelerator (ONNX Runtime's TensorRT provider) needs --kind gpu")
    precision = meta.precision
    if accelerator == "int8" and precision != "int8":
        raise ConfigError("--accelerator int8 runs Q/DQ models: ship the int8 ONNX (export --precision int8)")
    if precision == "int8" and accelerator != "int8":
        warnings.append("an int8 (Q/DQ) model under --accelerator fp32/fp16 runs its Q/DQ pairs without int8 kernels")
    return accelerator


def _max_batch_size(art: _Artifact, max_batch: int | None, preferred: list[int], warnings: list[str]) -> int:
    """Triton's max_batch_size: 0 (no batching) for a fixed-batch ONNX, else Triton's batch rule."""
    fixed = art.io.fixed_batch
    if fixed is None:
        return triton_max_batch(max_batch, art.io.profile, preferred)
    if max_batch not in (None, 0):
        raise ConfigError(f"{art.src.name} has a fixed batch of {fixed}: it cannot batch (omit --max-batch)")
    if preferred:
        raise ConfigError(f"{art.src.name} has a fixed batch of {fixed}: --preferred-batch needs a dynamic batch")
    warnings.append(f"fixed batch of {fixed}: clients must send exactly {fixed} images; no dynamic batching")
    return 0


# --------------------------------------------------------------------------- the refusals


def _evidence(art: _Artifact) -> tuple[str, list[str]]:
    """The artifact's sha256, and the reasons not to ship it (none: it is fit to ship)."""
    src = art.src
    # (a plan's bytes were hashed against its sidecar by verify_plan, when its I/O was read)
    digest = art.sidecar.plan_sha256 if art.sidecar is not None else sha256_file(src)
    problems = []
    problem = record_problem(src, digest)
    if problem:
        hint = f"run 'resnet-deploy check {src}'" + (" --reference ONNX" if art.sidecar is not None else "")
        problems.append(f"{problem}; {hint}")
    if not art.meta.weights_trained:
        problems.append(
            f"{src.name} was exported from random (untrained) weights ({art.meta.get('weights', 'random')}): "
            "its answers are meaningless"
        )
    return digest, problems


# --------------------------------------------------------------------------- the config


def _label_names(art: _Artifact, labels: str | os.PathLike[str] | None, warnings: list[str]) -> list[str] | None:
    """The class names for labels.txt: the --labels file, else the dataset's own; None for neither."""
    from .models.labels import class_names

    names: list[str] | None = None
    num_classes = art.io.output_dims[0]
    if labels is not None:
        names = class_names({"num_classes": str(num_classes)}, labels)
    elif art.meta.get("labels") in ("imagenet", "cifar10"):
        names = class_names(art.meta)
        if len(names) != num_classes or names == [str(i) for i in range(num_classes)]:
            names = None
    if names is None:
        warnings.append(f"{num_classes} custom classes and no --labels file: no label_filename in the config")
    return names


def _layout(repo_path: Path, model_name: str, version: int, replace: bool) -> _Layout:
    model_dir = repo_path / model_name
    layout = _Layout(repo_path, model_dir, model_dir / str(version), model_dir / "config.pbtxt")
    if model_dir.exists() and not model_dir.is_dir():
        raise ConfigError(f"{model_dir} is a file, not a model folder")
    if layout.config.exists() and not layout.config.is_file():
        raise ConfigError(f"{layout.config} is not a file")
    if layout.version_dir.exists() and not replace:
        raise ConfigError(f"{layout.version_dir} exists: choose another --version, or --replace it")
    return layout


def _header(art: _Artifact, digest: str, problems: list[str], evidence: Sequence[str]) -> list[str]:
    """The comments at the top of config.pbtxt: where the model came from, how to feed it, and
    the caller's ``evidence`` for the settings (``ship --tune``'s measurements)."""
    meta, sidecar = art.meta, art.sidecar
    header = [
        f"{_MARK} {__version__} from {art.src.name} (sha256 {digest[:16]}...)",
        f"model {meta.model}, {meta.precision}, weights {meta.weights}",
        f"input {meta.input_format}: {meta.get('image_size')} crop of a "
        f"{meta.get('resize_size')} resize, mean {meta.get('mean')}, std {meta.get('std')}",
    ]
    if sidecar is not None:
        header.append(
            f"engine: TensorRT {sidecar.tensorrt_version}, built on {sidecar.gpu_name} (sm {sidecar.compute_capability}); "
            "Triton must run the same TensorRT version"
        )
    if problems:
        header.append("SHIPPED WITH --force: " + "; ".join(problems))
    return [*header, *evidence]


def _check_same_model(config_path: Path, text: str, model_dir: Path, version: int, names: list[str] | None) -> None:
    """Triton serves every version folder of a model with the one config.pbtxt: refuse a version
    that would change what the other versions are (platform, batch limit, input, output, labels)."""
    current = read_text_capped(config_path, "model config", SIDECAR_MAX_BYTES, error=ConfigError)
    if _MARK not in current:  # someone's own (or a damaged) config is never overwritten
        raise ConfigError(f"{config_path} was not written by resnet-deploy: ship under another --name, or remove it")
    others = sorted(
        int(d.name) for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit() and int(d.name) != version
    )
    if not others:
        return
    labels_path = model_dir / "labels.txt"
    old_labels = (
        read_text_capped(labels_path, "labels file", LABELS_MAX_BYTES, error=ConfigError).split()
        if labels_path.exists() or labels_path.is_symlink()
        else None
    )
    new_labels = "\n".join(names).split() if names is not None else None
    if config_signature(current) != config_signature(text) or old_labels != new_labels:
        raise ConfigError(
            f"{model_dir} holds version(s) {', '.join(map(str, others))} with another platform, batch limit, "
            "input, output or labels, and one config.pbtxt serves them all: ship this under another --name"
        )


# --------------------------------------------------------------------------- the version folder


def _copy_external_data(art: _Artifact, staging: Path) -> list[str]:
    """An ONNX whose weights live in external data files is useless without them: copy each file it
    references (checked to be a regular file inside the source's folder, of the right size) to the
    same relative place beside the shipped model. Returns their relative names."""
    if art.platform != "onnxruntime_onnx":
        return []
    copied: list[str] = []
    for _tensor, file, _offset, _count in check_external_data(load_onnx(art.src, load_weights=False), art.src):
        rel = file.relative_to(art.src.parent).as_posix()
        if rel in copied:
            continue
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, staging / rel)
        copied.append(rel)
    return copied


def _assemble(
    art: _Artifact, layout: _Layout, version: int, digest: str, text: str, names: list[str] | None
) -> list[str]:
    """Copy the model (and its sidecar and parity record) into a new version folder, write the
    config and labels, and rename everything into place. Returns the files of the version folder."""
    src, filename, model_dir = art.src, art.filename, layout.model_dir
    layout.repo.mkdir(exist_ok=True)
    new_model = not model_dir.exists()
    # A new model is assembled whole under a hidden name and renamed into place; an existing one
    # (same signature, checked before) gets its config and labels first, then the new version.
    parent = layout.repo if new_model else model_dir
    sweep_stale_temps(parent)
    root = Path(tempfile.mkdtemp(prefix=temp_prefix(art.model_name), suffix=".tmp", dir=parent))
    try:
        staging = root / str(version)
        staging.mkdir()
        shutil.copyfile(src, staging / filename)
        files = [filename, *_copy_external_data(art, staging)]
        if art.sidecar is not None:
            from .sidecar import sidecar_path

            shutil.copyfile(sidecar_path(src), staging / f"{filename}.json")
            files.append(f"{filename}.json")
        if record_path(src).is_file():
            shutil.copyfile(record_path(src), staging / f"{filename}.parity.json")
            files.append(f"{filename}.parity.json")
        if sha256_file(staging / filename) != digest:
            raise ResnetDeployError(f"{src.name} changed while it was being copied: ship it again")
        for d in (root, staging):
            os.chmod(d, 0o755)
        if new_model:
            if names is not None:
                (root / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
            (root / "config.pbtxt").write_text(text, encoding="utf-8")
            os.replace(root, model_dir)
        else:
            if names is not None:
                atomic_write_text(model_dir / "labels.txt", "\n".join(names) + "\n")
            atomic_write_text(layout.config, text)
            if layout.version_dir.exists():  # --replace: the old version is gone for the moment of two renames
                os.replace(layout.version_dir, root / "old")
            os.replace(staging, layout.version_dir)
    finally:
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
    return files


def ship(
    artifact: str | os.PathLike[str],
    repo: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: int = 1,
    max_batch: int | None = None,
    instances: int = 1,
    kind: str = "gpu",
    preferred_batch: str | Sequence[int] | None = None,
    max_queue_delay_us: int | None = 100,
    accelerator: str | None = None,
    labels: str | os.PathLike[str] | None = None,
    force: bool = False,
    replace: bool = False,
    evidence: Sequence[str] = (),
    dry_run: bool = False,
) -> ShipReport:
    """Put ``artifact`` (a toolkit ONNX or TensorRT plan) into the Triton model repository ``repo``.

    ``accelerator``: for an ONNX on GPU instances, run it through ONNX Runtime's TensorRT
    execution provider at this precision (fp32 | fp16 | int8). ``max_queue_delay_us=None``
    turns dynamic batching off. ``evidence``: lines for the config's header comment (why these
    settings). ``dry_run``: every check, the config text and the report, but nothing written."""
    src = _check_source(artifact)
    kind, preferred = _check_options(kind, version, instances, max_queue_delay_us, preferred_batch)
    repo_path = _check_repository(repo)
    art = _resolve_artifact(src, name, kind, accelerator)
    warnings: list[str] = []
    accelerator = _check_accelerator(accelerator, kind, art.meta, warnings)
    max_batch_size = _max_batch_size(art, max_batch, preferred, warnings)

    digest, problems = _evidence(art)
    if problems and not force:
        raise ShipRefused("refusing to ship: " + "; ".join(problems) + " (--force ships it anyway)")

    names = _label_names(art, labels, warnings)
    layout = _layout(repo_path, art.model_name, version, replace)
    text = render_config(
        name=art.model_name,
        platform=art.platform,
        io=art.io,
        max_batch_size=max_batch_size,
        kind=kind,
        instances=instances,
        preferred_batch=preferred,
        max_queue_delay_us=max_queue_delay_us,
        labels=names is not None,
        accelerator_precision=accelerator,
        header=_header(art, digest, problems, evidence),
    )
    validated = validate_config(text)
    if not validated:
        warnings.append("tritonclient is not installed: config.pbtxt was not parsed with Triton's schema")
    if layout.config.is_file():
        _check_same_model(layout.config, text, layout.model_dir, version, names)

    files = [art.filename] if dry_run else _assemble(art, layout, version, digest, text, names)
    io = art.io
    return ShipReport(
        repository=str(repo_path.resolve()),
        model_dir=str(layout.model_dir.resolve()),
        version_dir=str(layout.version_dir.resolve()),
        name=art.model_name,
        version=version,
        platform=art.platform,
        max_batch_size=max_batch_size,
        input={"name": io.input_name, "dtype": io.input_dtype, "dims": io.input_dims, "format": io.input_format},
        output={"name": io.output_name, "dtype": io.output_dtype, "dims": io.output_dims},
        files=[f"{version}/{f}" for f in files] + (["labels.txt"] if names is not None else []) + ["config.pbtxt"],
        config=text,
        artifact=str(src.resolve()),
        artifact_sha256=digest,
        labels=str((layout.model_dir / "labels.txt").resolve()) if names is not None else None,
        forced=problems,
        warnings=warnings,
        validated_with=validated,
    )
