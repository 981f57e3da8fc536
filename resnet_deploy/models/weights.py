"""Weights: seeded random, torchvision's ImageNet checkpoints, or a state_dict file.

Every load goes through ``torch.load(..., weights_only=True)``: a checkpoint can only contain
tensors and plain containers, never code. Whatever goes in is recorded as a ``WeightsInfo`` (with
hashes) that ends up in the ONNX metadata.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union
from urllib.error import URLError

import torch
from torch import nn

from ..errors import ConfigError, MissingDependencyError, WeightsError
from ..reports import sha256_file as sha256_file  # re-exported: weights.sha256_file
from ..safeio import CHECKPOINT_MAX_BYTES, MiB, check_readable, human_size, open_checked
from .cfg import ModelCfg, WeightSource

WeightsSpec = Union[str, "os.PathLike[str]"]
OFFLINE_ENV = "RESNET_DEPLOY_OFFLINE"
_KEYWORDS = ("auto", "random", "imagenet")
_NESTED_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DistributedDataParallel, torch.compile


@dataclass(frozen=True)
class WeightsInfo:
    """What went into a model, precisely enough to reproduce or audit it."""

    requested: str
    source: str  # "random" | "imagenet" | "file"
    trained: bool
    state_sha256: str  # canonical hash of the loaded tensors (names, dtypes, shapes, values)
    tag: str | None = None
    path: str | None = None
    url: str | None = None
    file_sha256: str | None = None
    seed: int | None = None
    note: str | None = None

    @property
    def label(self) -> str:
        if self.source == "imagenet":
            return f"imagenet:{self.tag}"
        if self.source == "file":
            return f"file:{Path(self.path or '').name}"
        return f"random(seed={self.seed})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"label": self.label}


def state_dict_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Hash of a state_dict's content, independent of how (or whether) it was saved to a file."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def checkpoint_budget(net: nn.Module) -> int:
    """The most a checkpoint for ``net`` could hold: every tensor of its state_dict in fp64, twice
    more for optimizer moments (Adam's), and 64 MiB for the rest (ResNet-20: 70 MiB, ResNet-50:
    0.6 GiB, ResNet-152: 1.4 GiB)."""
    numel = int(sum(t.numel() for t in net.state_dict().values()))
    return numel * 8 * 3 + 64 * MiB


def read_state_dict(
    path: str | os.PathLike[str], *, max_bytes: int = CHECKPOINT_MAX_BYTES, arch: str = ""
) -> dict[str, torch.Tensor]:
    """Read a torchvision-format state_dict (or a checkpoint dict holding one), safely: a regular
    file, of at most ``max_bytes`` on disk and, for torch's zip format, once inflated (checked from
    the zip's directory before anything is inflated). ``arch`` names what ``max_bytes`` is for."""
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"weights file not found: {p} (use a .pth/.pt state_dict, 'imagenet' or 'random')")
    if p.is_dir():
        raise WeightsError(f"weights path is a directory, not a file: {p}")
    limit_for = f" ({arch} needs at most {human_size(max_bytes)})" if arch else ""
    check_readable(p, "checkpoint", max_bytes, error=WeightsError, why=limit_for)
    if p.suffix.lower() == ".safetensors":
        return _read_safetensors(p)  # bounded by its file size: safetensors checks offsets against it
    try:
        with open_checked(p, "checkpoint", max_bytes, error=WeightsError, why=limit_for) as f:
            _check_inflated_size(f, p, max_bytes, arch)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. torch's note on pickle protocols
                obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise WeightsError(
                f"refusing to load {p}: it holds pickled Python objects, not only tensors "
                "(loading it could run arbitrary code); re-save it with torch.save(model.state_dict(), PATH)"
            ) from None
        raise WeightsError(
            f"cannot read {p}: corrupt or not a PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as e:
        raise WeightsError(
            f"cannot read {p}: corrupt or not a PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})"
        ) from None
    return _extract_state_dict(obj, p)


def _check_inflated_size(f: Any, p: Path, max_bytes: int, arch: str) -> None:
    """torch's format is a zip: the sizes its directory declares for its members (what torch
    allocates to inflate them) must fit ``max_bytes``. The legacy pickle format is bounded by the
    file size, already checked."""
    if zipfile.is_zipfile(f):
        try:
            with zipfile.ZipFile(f) as zf:
                inflated = sum(i.file_size for i in zf.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise WeightsError(f"cannot read {p}: corrupt or not a PyTorch checkpoint ({_first_line(e)})") from None
        if inflated > max_bytes:
            limit = f"the {human_size(max_bytes)} " + (f"that {arch} could need" if arch else "limit for a checkpoint")
            raise WeightsError(
                f"checkpoint {p} inflates to {human_size(inflated)} ({human_size(p.stat().st_size)} on disk), "
                f"over {limit}: refusing to unpack it"
            )
    f.seek(0)


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    """A .safetensors file: a plain tensor container, safe by construction."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise MissingDependencyError("safetensors", purpose=f"reading {p.name}") from None
    try:
        state = load_file(str(p), device="cpu")
    except Exception as e:  # safetensors raises its own SafetensorError and OSError
        raise WeightsError(f"cannot read {p}: corrupt or not a safetensors file ({_first_line(e)})") from None
    return _extract_state_dict(state, p)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _extract_state_dict(obj: object, where: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for key in _NESTED_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{where} is not a state_dict: it holds a {type(obj).__name__}, expected a dict of tensors")
    if not obj:
        raise WeightsError(f"{where} is not a state_dict: it holds an empty dict")
    bad = [(k, v) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        k, v = bad[0]
        raise WeightsError(
            f"{where} is not a state_dict: entry {k!r} is a {type(v).__name__}, not a tensor "
            f"(a checkpoint dict should hold the weights under one of {', '.join(_NESTED_KEYS)})"
        )
    state: dict[str, torch.Tensor] = dict(obj)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def describe_model(net: nn.Module) -> str:
    name = getattr(net, "model_name", type(net).__name__)
    variant = getattr(net, "variant", "?")
    shortcut = getattr(net, "shortcut", "?")
    fc = getattr(net, "fc", None)
    classes = f", {fc.out_features} classes" if isinstance(fc, nn.Linear) else ""
    return f"{name} (variant {variant}, shortcut {shortcut}{classes})"


def apply_state_dict(net: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Load with strict semantics, but fail with a message that lists what does not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k}: file {list(state[k].shape)} vs model {list(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    wrong_dtype = [
        f"{k}: file {state[k].dtype} vs model {own[k].dtype}"
        for k in own
        if k in state and own[k].is_floating_point() and not state[k].is_floating_point()
    ]
    if missing or unexpected or wrong or wrong_dtype:
        parts = []
        for label, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
            ("wrong dtype", wrong_dtype),
        ):
            if items:
                more = f", ... +{len(items) - 3} more" if len(items) > 3 else ""
                parts.append(f"{len(items)} {label} ({'; '.join(items[:3])}{more})")
        raise WeightsError(f"weights in {where} do not fit {describe_model(net)}: {', '.join(parts)}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"weights in {where} contain NaN or Inf (in {', '.join(bad[:3])})")
    fill = {k: v for k, v in own.items() if k not in state}  # num_batches_tracked of old checkpoints
    with torch.no_grad():
        net.load_state_dict({**fill, **state}, strict=True)


def hub_checkpoint_path(source: WeightSource) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / source.filename


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def fetch_checkpoint(url: str, sha256_prefix: str, dest: Path, *, offline: bool | None = None) -> Path:
    """A hash-checked local copy of ``url`` in the torch.hub cache, downloading only when needed."""
    if dest.exists():
        check_readable(dest, "cached checkpoint", CHECKPOINT_MAX_BYTES, error=WeightsError)  # never hash a FIFO
        digest = sha256_file(dest)
        if not digest.startswith(sha256_prefix):
            raise WeightsError(
                f"cached checkpoint {dest} fails its hash check (sha256 {digest[:16]}... does not start "
                f"with {sha256_prefix}): delete it and download again"
            )
        return dest
    if offline if offline is not None else _offline():
        raise WeightsError(
            f"{dest.name} is not in the torch.hub cache ({dest.parent}) and downloads are off "
            f"({OFFLINE_ENV} is set): pass --weights PATH to a torchvision state_dict, or --weights random"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _socket_timeout(30.0):
            torch.hub.download_url_to_file(url, str(dest), hash_prefix=sha256_prefix, progress=False)
    except (URLError, OSError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsError(
            f"cannot download {url} ({reason}) and it is not in the torch.hub cache ({dest.parent}): "
            "offline? pass --weights PATH to a torchvision state_dict, or --weights random"
        ) from None
    except RuntimeError as e:  # torch.hub's hash mismatch
        raise WeightsError(f"downloaded {url} fails its hash check: {_first_line(e)}") from None
    return dest


def imagenet_fit_problem(net: nn.Module, cfg: ModelCfg) -> str | None:
    """Why torchvision's ImageNet checkpoints do not describe this network, or None if they do."""
    if cfg.dataset != "imagenet" or not cfg.weights:
        return f"{cfg.name} is a CIFAR model; there are no published ImageNet weights for it"
    if getattr(net, "variant", "v1.5") != "v1.5" and cfg.block == "bottleneck":
        return "torchvision's ImageNet checkpoints are trained for variant v1.5 (stride on the 3x3), not v1"
    if getattr(net, "shortcut", "B") != "B":
        return f"torchvision's ImageNet checkpoints use shortcut B, not {getattr(net, 'shortcut', '?')}"
    fc = getattr(net, "fc", None)
    if isinstance(fc, nn.Linear) and fc.out_features != 1000:
        return f"torchvision's ImageNet checkpoints have 1000 classes, not {fc.out_features}"
    return None


def load_weights(net: nn.Module, spec: WeightsSpec, *, seed: int = 0) -> WeightsInfo:
    """Put ``spec``'s weights into ``net`` (built by ``create_model``) and say what went in."""
    cfg: ModelCfg | None = getattr(net, "cfg", None)
    if cfg is None:
        raise ConfigError("load_weights needs a model built by create_model (it carries the model's cfg)")
    text = os.fspath(spec)
    key = text.strip().lower()
    if not key:
        raise WeightsError("empty weights: use auto, random, imagenet[:v1|:v2] or a path to a state_dict file")

    if key == "random":
        return WeightsInfo("random", "random", False, state_dict_sha256(net.state_dict()), seed=seed)

    if key == "auto":
        problem = imagenet_fit_problem(net, cfg)
        cached = None if problem else _first_cached(cfg)
        if cached is None:
            if cfg.dataset != "imagenet":
                note = f"random weights (untrained): there are no published weights for {cfg.name}; pass --weights PATH to a trained state_dict"
            elif problem:
                note = f"random weights (untrained): {problem}; pass --weights PATH to a trained state_dict"
            else:
                where = hub_checkpoint_path(cfg.weights[0]).parent
                note = (
                    f"random weights (untrained): no ImageNet checkpoint for {cfg.name} in the torch.hub cache ({where}); "
                    "pass --weights imagenet to download it, or --weights PATH"
                )
            return WeightsInfo("auto", "random", False, state_dict_sha256(net.state_dict()), seed=seed, note=note)
        return _load_imagenet(net, cfg, cached, requested="auto")

    if key == "imagenet" or key.startswith("imagenet:"):
        problem = imagenet_fit_problem(net, cfg)
        if problem:
            raise WeightsError(f"--weights imagenet does not fit: {problem}")
        tag = key.partition(":")[2]
        try:
            source = cfg.weight_source(tag) if tag else cfg.default_weights
        except KeyError as e:
            raise WeightsError(str(e.args[0])) from None
        if source is None:
            raise WeightsError(f"{cfg.name} has no published ImageNet weights")
        return _load_imagenet(net, cfg, source, requested=text)

    path = Path(text).expanduser()
    if not path.exists() and not any(sep in text for sep in ("/", os.sep)) and "." not in text:
        raise WeightsError(
            f"unknown weights {text!r}: use {', '.join(_KEYWORDS)}, imagenet:v1, or a path to a state_dict file"
        )
    state = read_state_dict(path, max_bytes=checkpoint_budget(net), arch=cfg.name)
    apply_state_dict(net, state, str(path))
    file_note: str | None = None
    if getattr(net, "variant", "v1.5") == "v1" and cfg.block == "bottleneck":
        # v1 and v1.5 share every parameter shape, so nothing can tell them apart from the file.
        file_note = (
            "variant v1 uses the same parameter shapes as v1.5: make sure this checkpoint was trained as v1 "
            "(torchvision's are v1.5)"
        )
    return WeightsInfo(
        requested=text,
        source="file",
        trained=True,
        state_sha256=state_dict_sha256(net.state_dict()),
        path=str(path.resolve()),
        file_sha256=sha256_file(path),
        note=file_note,
    )


def _first_cached(cfg: ModelCfg) -> WeightSource | None:
    for source in reversed(cfg.weights):  # newest recipe first
        if hub_checkpoint_path(source).exists():
            return source
    return None


def _load_imagenet(net: nn.Module, cfg: ModelCfg, source: WeightSource, *, requested: str) -> WeightsInfo:
    try:
        path = fetch_checkpoint(source.url, source.sha256_prefix, hub_checkpoint_path(source))
    except WeightsError as e:
        others = [w for w in cfg.weights if w != source and hub_checkpoint_path(w).exists()]
        if not others or "hash check" in str(e):
            raise
        tag = others[-1].tag.rsplit("_", 1)[-1].lower()
        raise WeightsError(f"{e}; the {others[-1].tag} checkpoint is cached: --weights imagenet:{tag}") from None
    state = read_state_dict(path, max_bytes=checkpoint_budget(net), arch=cfg.name)
    apply_state_dict(net, state, str(path))
    return WeightsInfo(
        requested=requested,
        source="imagenet",
        trained=True,
        state_sha256=state_dict_sha256(net.state_dict()),
        tag=source.tag,
        path=str(path),
        url=source.url,
        file_sha256=sha256_file(path),
        note=f"torchvision {cfg.name}.{source.tag}: top-1 {source.top1}%, top-5 {source.top5}% (ImageNet-1k val)",
    )
