"""nn.Module -> ONNX, checked and verified before it is kept (after optimum's exporter).

``export_onnx`` folds BatchNorm into the convolutions, exports with a named ``input`` /
``logits`` signature and a dynamic ``batch`` axis, removes ``Identity`` nodes, records where the
model came from in ``metadata_props``, runs the full ONNX checker and strict shape inference, then
runs the file in ONNX Runtime against the PyTorch model on seeded inputs at two batch sizes. Only a
file that passes is renamed onto the output path; a parity failure is an error, not a warning.
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from ._version import __version__
from .data import Preprocess
from .errors import ConfigError, ExportError, MissingDependencyError
from .fold import fold_batchnorm
from .layer_names import name_nodes, reported_modules
from .metadata_rules import MAX_FIXED_BATCH, MAX_IMAGE_SIDE
from .metrics import FP32_TOLERANCE, ParityResult, Tolerance, judged_batch_sizes
from .models.cfg import ModelCfg
from .models.profile import count_macs, count_params
from .models.registry import create_model
from .models.resnet import ResNet
from .models.weights import WeightsInfo, WeightsSpec
from .onnx_io import ArtifactMeta, read_metadata  # noqa: F401  (read_metadata: re-exported)
from .reports import Progress, check_output_path, shown_path
from .runtime.pyt import TorchRunner
from .stage import Verification, write_verified
from .torch_export import (  # noqa: F401  (re-exported: the export API's names)
    BATCH_AXIS,
    DEFAULT_OPSET,
    DYNAMO_MIN_OPSET,
    EXPORTERS,
    INPUT_NAME,
    MAX_OPSET,
    OUTPUT_NAME,
    TORCHSCRIPT_OPSETS,
    Exporter,
    pick_exporter,
    remove_identity_nodes,
    run_torch_exporter,
    set_batch_dim,
)

VERIFY_BATCH_SIZES = (1, 8)  # 8: enough samples for retrieval to be judged


@dataclass
class ExportReport:
    """What ``export_onnx`` produced and how it was verified."""

    path: str
    model: str
    depth: int
    variant: str
    shortcut: str
    num_classes: int
    image_size: tuple[int, int]
    batch: str  # "dynamic" or the fixed size
    opset: int
    exporter: str
    weights: WeightsInfo
    params: int
    gmacs: float
    file_size_bytes: int = 0
    sha256: str = ""
    nodes_by_op: dict[str, int] = field(default_factory=dict)
    num_nodes: int = 0
    parity: list[ParityResult] = field(default_factory=list)
    parity_passed: bool = False
    tolerance: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    written: bool = True  # False when a failed check kept the file from being written

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "written": self.written,
            "model": self.model,
            "depth": self.depth,
            "variant": self.variant,
            "shortcut": self.shortcut,
            "num_classes": self.num_classes,
            "image_size": list(self.image_size),
            "batch": self.batch,
            "opset": self.opset,
            "exporter": self.exporter,
            "precision": "fp32",
            "weights": self.weights.to_dict(),
            "params": self.params,
            "gmacs": self.gmacs,
            "file_size_bytes": self.file_size_bytes,
            "sha256": self.sha256,
            "num_nodes": self.num_nodes,
            "nodes_by_op": self.nodes_by_op,
            "parity": {
                "reference": "torch (eager, fp32, BatchNorm unfolded)",
                "candidate": "onnxruntime CPUExecutionProvider",
                "passed": self.parity_passed,
                "tolerance": self.tolerance,
                "results": [p.to_dict() for p in self.parity],
            },
            "metadata": self.metadata,
            "seconds": self.seconds,
            "warnings": self.warnings,
        }


def parse_image_size(value: int | str | Sequence[int] | None, cfg: ModelCfg) -> tuple[int, int]:
    """``224``, ``"224"``, ``"256x192"`` (HxW) or ``(256, 192)``; None means the model's native size."""
    if value is None:
        return cfg.input_size[1], cfg.input_size[2]
    try:
        if isinstance(value, str):
            parts = value.lower().replace(",", "x").split("x")
            dims = [_parse_int(p.strip(), "image size") for p in parts]
        elif isinstance(value, int) and not isinstance(value, bool):
            dims = [value]
        elif isinstance(value, (list, tuple)):
            dims = [_parse_int(v, "image size") for v in value]
        else:
            raise ConfigError("bad type")
    except ConfigError:
        raise ConfigError(f"image size {value!r} is not a number or HxW (e.g. 224 or 256x192)") from None
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2:
        raise ConfigError(f"image size {value!r}: give one size or HxW")
    return dims[0], dims[1]


def check_image_size(size: tuple[int, int], net: ResNet) -> None:
    """Each stage must see at least one real pixel: the sides must reach the network's total stride."""
    h, w = size
    if min(h, w) < net.total_stride:
        name = getattr(net, "model_name", "this model")
        raise ConfigError(
            f"image size {h}x{w} is too small for {name}: its strides reduce the input {net.total_stride}x, "
            f"so each side must be at least {net.total_stride}"
        )
    if max(h, w) > MAX_IMAGE_SIDE:
        raise ConfigError(f"image size {h}x{w} is too large (each side at most {MAX_IMAGE_SIDE})")


def parse_batch(value: int | str | None) -> int | None:
    """None / "dynamic" -> None (dynamic axis); a positive integer -> that fixed batch size."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "dynamic"):
        return None
    try:
        n = _parse_int(value, "batch")
    except ConfigError:
        raise ConfigError(f"batch {value!r}: use 'dynamic' or a positive integer") from None
    if n <= 0:
        raise ConfigError(f"batch {n}: a fixed batch size must be a positive integer")
    if n > MAX_FIXED_BATCH:
        raise ConfigError(
            f"batch {n}: a fixed batch size must be at most {MAX_FIXED_BATCH} (use 'dynamic' for any size)"
        )
    return n


def _parse_int(value: object, what: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{what} {value!r} must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ConfigError(f"{what} {value!r} must be an integer")


def _verify_sizes(sizes: Sequence[int], batch_n: int | None) -> tuple[int, ...]:
    if batch_n is not None:
        return judged_batch_sizes(batch_n)
    out = tuple(_parse_int(b, "verification batch size") for b in sizes)
    if not out or any(b < 1 or b > MAX_FIXED_BATCH for b in out):
        raise ConfigError(f"verify_batch_sizes {sizes!r}: give at least one batch size in 1-{MAX_FIXED_BATCH}")
    return out


def current_weights_info(net: ResNet) -> WeightsInfo:
    """The model's WeightsInfo, re-hashed: weights changed since loading are recorded as such."""
    from dataclasses import replace

    from .models.weights import state_dict_sha256

    info = net.weights_info
    if info is None:
        raise ConfigError("export_onnx takes a model built by create_model")
    digest = state_dict_sha256(net.state_dict())
    if digest == info.state_sha256:
        return info
    return replace(
        info,
        source="in-memory",
        trained=True,
        state_sha256=digest,
        note=f"weights changed in memory after loading {info.label} (e.g. fine-tuned); recorded by their hash",
    )


def _check_finite(net: nn.Module, size: tuple[int, int], seed: int) -> None:
    bad = [name for name, t in net.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ExportError(f"the weights contain NaN or Inf (in {', '.join(bad[:3])}): check the checkpoint")
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        y = net(x)
    if not torch.isfinite(y).all():
        raise ExportError("the PyTorch model itself outputs NaN or Inf on a standard-normal input: check the weights")


def build_metadata(
    net: ResNet,
    cfg: ModelCfg,
    info: WeightsInfo,
    image_size: tuple[int, int],
    batch: int | None,
    opset: int,
    exporter: str,
) -> dict[str, str]:
    """Everything needed to know what this ONNX is and how to feed it, as ``metadata_props``."""

    def floats(v: Sequence[float]) -> str:
        return ",".join(f"{x:g}" for x in v)

    meta = {
        "model": getattr(net, "model_name", cfg.name),
        "depth": str(cfg.depth),
        "dataset": cfg.dataset,
        "block": cfg.block,
        "variant": net.variant,
        "shortcut": net.shortcut,
        "num_classes": str(net.fc.out_features),
        "labels": cfg.labels,
        "precision": "fp32",
        "batchnorm": "folded",
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_layout": "NCHW",
        "input_dtype": "float32",
        "color": "RGB",
        "image_size": f"{image_size[0]}x{image_size[1]}",
        "resize_size": str(round(max(image_size) * cfg.resize_size / cfg.crop_size)),
        "crop_size": f"{image_size[0]}x{image_size[1]}",
        "interpolation": cfg.interpolation,
        "scale": "1/255",
        "mean": floats(cfg.mean),
        "std": floats(cfg.std),
        "batch": "dynamic" if batch is None else str(batch),
        "weights": info.label,
        "weights_source": info.source,
        "weights_trained": "true" if info.trained else "false",
        "weights_sha256": info.state_sha256,
        "opset": str(opset),
        "exporter": f"torch.onnx ({exporter})",
        "toolkit": "resnet-deploy",
        "toolkit_version": __version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
    }
    default_widths = [64, 128, 256, 512] if cfg.dataset == "imagenet" else [16, 32, 64]
    widths = [_stage_width(stage) for stage in net.stages()]
    if widths != default_widths:
        meta["widths"] = ",".join(map(str, widths))
    if info.seed is not None and info.source == "random":
        meta["weights_seed"] = str(info.seed)
        meta["weights_note"] = "random initialisation: untrained, the outputs are meaningless"
    for key, value in (("weights_tag", info.tag), ("weights_url", info.url), ("weights_file_sha256", info.file_sha256)):
        if value:
            meta[key] = value
    if info.source == "file" and info.path:
        meta["weights_file"] = Path(info.path).name
    return meta


def _stage_width(stage: nn.Sequential) -> int:
    """A stage's width: the output channels of its first block's first convolution."""
    conv = getattr(stage[0], "conv1", None)
    if not isinstance(conv, nn.Conv2d):
        raise ExportError("unexpected block layout: no conv1 in the first block of a stage")
    return int(conv.out_channels)


def export_onnx(
    model: ResNet | str | int,
    output: str | os.PathLike[str] | None = None,
    *,
    weights: WeightsSpec | None = None,
    variant: str | None = None,
    shortcut: str | None = None,
    num_classes: int | None = None,
    image_size: int | str | Sequence[int] | None = None,
    batch: int | str | None = "dynamic",
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    seed: int = 0,
    verify_batch_sizes: Sequence[int] = VERIFY_BATCH_SIZES,
    tolerance: Tolerance = FP32_TOLERANCE,
    allow_mismatch: bool = False,
    progress: Progress | None = None,
) -> ExportReport:
    """Export a zoo ResNet to a verified FP32 ONNX file and return the report.

    ``model``: a model id / depth, built with ``weights`` (default ``"auto"``), ``variant``,
    ``shortcut`` and ``num_classes``; or a model from ``create_model`` (those four then come from
    the model, and passing them is an error). A model whose weights changed after
    ``create_model`` (fine-tuned in memory) is recorded as such, with the hash of what is exported.
    ``output``: a file path or an existing folder (default: ``<model>.onnx`` in the current folder).
    Raises ``ParityError`` (with the report) if ONNX Runtime disagrees with PyTorch, unless
    ``allow_mismatch``; nothing is left at the output path on any error.
    """
    say = progress or (lambda _stage: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = round(now - clock, 3)
        clock = now

    if isinstance(model, bool) or not isinstance(model, (str, int, ResNet)):
        raise ConfigError("export_onnx takes a model id, a depth, or a model built by create_model")
    if isinstance(model, ResNet):
        given = [
            k
            for k, v in (
                ("weights", weights),
                ("variant", variant),
                ("shortcut", shortcut),
                ("num_classes", num_classes),
            )
            if v is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)}: pass these to create_model, not with a model object")
        default_name = f"{model.model_name}.onnx"
    else:
        from .models.registry import get_model_cfg

        default_name = f"{get_model_cfg(model).name}.onnx"
    out_path = check_output_path(output if output is not None else default_name, default_name)
    batch_n = parse_batch(batch)
    opset = _parse_int(opset, "opset")
    exporter = pick_exporter(exporter, opset)
    verify_sizes = _verify_sizes(verify_batch_sizes, batch_n)

    if isinstance(model, ResNet):
        net = model
    else:
        say("building model and loading weights")
        net = create_model(
            model,
            weights="auto" if weights is None else weights,
            variant="v1.5" if variant is None else variant,
            shortcut=shortcut,
            num_classes=num_classes,
            seed=seed,
        )
        lap("build")
    if net.cfg is None or net.weights_info is None:
        raise ConfigError("export_onnx takes a model id, a depth, or a model built by create_model")
    cfg, info = net.cfg, current_weights_info(net)
    size = parse_image_size(image_size, cfg)
    check_image_size(size, net)

    was_training = net.training
    reference = net.eval()
    try:
        return _export(
            net,
            reference,
            cfg,
            info,
            out_path,
            size,
            batch_n,
            opset,
            exporter,
            seed,
            verify_sizes,
            tolerance,
            allow_mismatch,
            say,
            lap,
            seconds,
        )
    finally:
        net.train(was_training)


def _export(
    net: ResNet,
    reference: nn.Module,
    cfg: ModelCfg,
    info: WeightsInfo,
    out_path: Path,
    size: tuple[int, int],
    batch_n: int | None,
    opset: int,
    exporter: str,
    seed: int,
    verify_sizes: tuple[int, ...],
    tolerance: Tolerance,
    allow_mismatch: bool,
    say: Progress,
    lap: Callable[[str], None],
    seconds: dict[str, float],
) -> ExportReport:
    say("checking the PyTorch model")
    _check_finite(net, size, seed)
    say("folding BatchNorm into convolutions")
    folded = fold_batchnorm(reference)
    lap("fold")

    say(f"exporting to ONNX (opset {opset}, {exporter})")
    sample = torch.randn(2 if batch_n is None else batch_n, 3, *size, generator=torch.Generator().manual_seed(seed))
    try:
        proto = run_torch_exporter(folded, sample, opset, exporter, dynamic=batch_n is None)
    except MissingDependencyError:
        raise
    except Exception as e:  # torch's exporters raise many types
        if _interrupted(e):  # Ctrl-C / SIGTERM inside torch.export comes back wrapped in its own error
            raise KeyboardInterrupt from e
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {str(e).strip().splitlines()[0][:300]}") from e
    del folded
    lap("export")

    say("checking the ONNX graph")
    remove_identity_nodes(proto.graph)
    set_batch_dim(proto, dynamic=batch_n is None)
    meta = build_metadata(net, cfg, info, size, batch_n, opset, exporter)
    ArtifactMeta(meta).write_to(proto)
    name_nodes(proto, reported_modules(net))  # after the metadata: it adds the ``layers`` entry
    proto.producer_name = "resnet-deploy"
    proto.producer_version = __version__
    proto.doc_string = (
        f"{meta['model']} ({meta['variant']}, shortcut {meta['shortcut']}) exported by resnet-deploy {__version__}"
    )
    _check_graph(proto, net.fc.out_features, size, batch_n)
    nodes = Counter(n.op_type for n in proto.graph.node)

    report = ExportReport(
        path=shown_path(out_path),
        model=meta["model"],
        depth=cfg.depth,
        variant=net.variant,
        shortcut=net.shortcut,
        num_classes=net.fc.out_features,
        image_size=size,
        batch=meta["batch"],
        opset=opset,
        exporter=exporter,
        weights=info,
        params=count_params(net),
        gmacs=round(count_macs(net, size) / 1e9, 4),
        nodes_by_op=dict(sorted(nodes.items(), key=lambda kv: (-kv[1], kv[0]))),
        num_nodes=sum(nodes.values()),
        metadata=meta,
        tolerance=tolerance.describe(),
    )
    if not info.trained:
        hint = "--weights imagenet or --weights PATH" if cfg.dataset == "imagenet" else "--weights PATH"
        report.warnings.append(info.note or f"random weights (untrained): outputs are meaningless; pass {hint}")
    elif info.note and info.source in ("in-memory", "file"):
        report.warnings.append(info.note)

    def write(tmp: Path) -> None:
        onnx.save_model(proto, str(tmp))
        proto.Clear()
        gc.collect()
        # Check and infer shapes on the file, in C++: no extra Python copies of the weights
        # (keeps ResNet-152 well under 2.5 GB peak).
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
            onnx.shape_inference.infer_shapes_path(
                str(tmp), str(tmp), check_type=True, strict_mode=True, data_prop=True
            )
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise ExportError(
                f"the exported ONNX fails onnx.checker / shape inference: {str(e).splitlines()[0]}"
            ) from e
        lap("check")
        say(f"verifying with ONNX Runtime at batch {', '.join(map(str, verify_sizes))}")

    def failure(parity: list[ParityResult]) -> str:
        worst = max(parity, key=lambda r: r.diff_to_scale)
        return (
            f"ONNX Runtime output differs from PyTorch at batch {worst.batch_size}: max|diff| "
            f"{worst.max_abs_diff:.3g} = {worst.diff_to_scale:.3g} x max|logit| "
            f"(tolerance {tolerance.describe()}, cosine {worst.cosine_min:.6f})"
        )

    verification = Verification(
        reference=TorchRunner(net, preprocess=Preprocess.from_cfg(cfg, size)),
        tolerance=tolerance,
        step="export",
        described_as="the PyTorch model (BatchNorm unfolded) vs onnxruntime CPU",
        weights_trained=info.trained,
        failure=failure,
        keep="--allow-mismatch" if allow_mismatch else None,
        seed=seed,
        batch_sizes=verify_sizes,
    )
    write_verified(out_path, report, write, verification)
    lap("verify")
    seconds["total"] = round(sum(seconds.values()), 3)
    report.seconds = seconds
    return report


def _interrupted(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in ``error``'s cause/context chain."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _check_graph(proto: onnx.ModelProto, num_classes: int, size: tuple[int, int], batch: int | None) -> None:
    """The contract every later stage relies on: names, shapes, and a fully folded graph."""
    ops = Counter(n.op_type for n in proto.graph.node)
    for banned in ("BatchNormalization", "Identity"):
        if ops.get(banned):
            raise ExportError(f"the exported graph still has {ops[banned]} {banned} node(s)")
    inputs = [i for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in proto.graph.output] != [OUTPUT_NAME]:
        raise ExportError(
            f"unexpected graph signature: inputs {[i.name for i in inputs]}, outputs {[o.name for o in proto.graph.output]}"
        )

    def dims(v: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    b: int | str = BATCH_AXIS if batch is None else batch
    want_in, want_out = [b, 3, size[0], size[1]], [b, num_classes]
    if dims(inputs[0]) != want_in or dims(proto.graph.output[0]) != want_out:
        raise ExportError(
            f"unexpected shapes: input {dims(inputs[0])} (want {want_in}), output {dims(proto.graph.output[0])} (want {want_out})"
        )
