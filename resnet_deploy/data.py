"""Images in, model inputs out: one preprocessing path for calibration, parity, eval and predict.

The transform is torchvision's ImageNet evaluation recipe, reproduced exactly on PIL images so the
numbers match what torchvision-trained weights expect: resize the shorter side (bilinear, with
PIL's antialiasing), center-crop, RGB, scale to [0, 1], normalise by mean/std, CHW float32.
Everything comes from the model's config or an artifact's metadata, never from constants here.

Images in any PIL mode are accepted and turned into 8-bit RGB the way ``torchvision``'s default
loader does (``convert("RGB")``), except 16-bit and float images, which ``convert`` would clip:
they are rescaled to 8 bits first.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, DataError, MissingDependencyError
from .onnx_io import FLOAT_NCHW, UINT8_NHWC, InputFormat
from .safeio import IMAGE_MAX_BYTES, IMAGE_MAX_PIXELS, LABELS_MAX_BYTES, check_readable, open_checked, read_text_capped

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .models.cfg import ModelCfg

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
INPUT_FORMATS = tuple(f.value for f in InputFormat)


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise MissingDependencyError("pillow", purpose="reading images") from None
    return Image


@dataclass(frozen=True)
class Preprocess:
    """torchvision's eval transform: Resize(resize_size) -> CenterCrop(crop) -> ToTensor -> Normalize."""

    resize_size: int
    crop: tuple[int, int]  # (height, width)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"
    input_format: str = FLOAT_NCHW

    def __post_init__(self) -> None:
        if self.input_format not in INPUT_FORMATS:
            raise ConfigError(f"unknown input format {self.input_format!r}: {' or '.join(INPUT_FORMATS)}")
        if self.resize_size <= 0 or min(self.crop) <= 0:
            raise ConfigError(f"bad preprocessing sizes: resize {self.resize_size}, crop {self.crop}")
        if self.interpolation not in ("bilinear", "bicubic", "nearest"):
            raise ConfigError(f"unknown interpolation {self.interpolation!r}: bilinear, bicubic or nearest")

    @classmethod
    def from_cfg(cls, cfg: ModelCfg, image_size: tuple[int, int] | None = None) -> Preprocess:
        h, w = image_size or (cfg.input_size[1], cfg.input_size[2])
        ratio = cfg.resize_size / cfg.crop_size
        return cls(round(max(h, w) * ratio), (h, w), cfg.mean, cfg.std, cfg.interpolation)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> Preprocess:
        """From the ``metadata_props`` that ``export_onnx`` writes (checked: finite, positive, bounded)."""
        from .metadata_rules import check_values

        check_values(meta)
        try:
            h, w = (int(v) for v in meta["image_size"].split("x"))
            mean = tuple(float(v) for v in meta["mean"].split(","))
            std = tuple(float(v) for v in meta["std"].split(","))
            resize = int(meta["resize_size"])
        except (KeyError, ValueError) as e:
            raise DataError(f"the artifact's metadata does not describe its preprocessing ({e})") from None
        if len(mean) != 3 or len(std) != 3:
            raise DataError("the artifact's metadata has no 3-channel mean/std")
        return cls(
            resize,
            (h, w),
            (mean[0], mean[1], mean[2]),
            (std[0], std[1], std[2]),
            meta.get("interpolation", "bilinear"),
            meta.get("input_format", FLOAT_NCHW),
        )

    @property
    def pixels(self) -> bool:
        """True when the model takes uint8 NHWC pixels and normalises inside its graph."""
        return self.input_format == UINT8_NHWC

    @property
    def dtype(self) -> type[np.generic]:
        return np.uint8 if self.pixels else np.float32

    def input_shape(self, n: int) -> tuple[int, int, int, int]:
        h, w = self.crop
        return (n, h, w, 3) if self.pixels else (n, 3, h, w)

    def zeros(self, n: int) -> NDArray[Any]:
        return np.zeros(self.input_shape(n), self.dtype)

    def random(self, n: int, rng: np.random.Generator) -> NDArray[Any]:
        """Seeded model inputs: standard-normal floats (the range normalised images span), or
        uniform random pixels."""
        if self.pixels:
            return rng.integers(0, 256, self.input_shape(n), dtype=np.uint8)
        return rng.standard_normal(self.input_shape(n)).astype(np.float32)

    def scale_bias(self) -> tuple[NDArray[Any], NDArray[Any]]:
        """Per-channel float32 ``scale, bias`` with ``(x / 255 - mean) / std == x * scale + bias``:
        the two constants the in-graph normalisation uses."""
        std = np.asarray(self.std, dtype=np.float64)
        mean = np.asarray(self.mean, dtype=np.float64)
        return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)

    def normalize(self, pixels: NDArray[Any]) -> NDArray[Any]:
        """uint8 ``[n, H, W, 3]`` pixels -> normalised float32 ``[n, 3, H, W]``, with the same
        float32 arithmetic as the in-graph normalisation of a ``uint8-nhwc`` model."""
        scale, bias = self.scale_bias()
        x = np.asarray(pixels).astype(np.float32).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x * scale[None, :, None, None] + bias[None, :, None, None], dtype=np.float32)

    def as_float(self) -> Preprocess:
        """The same preprocessing producing normalised float32 NCHW."""
        return Preprocess(self.resize_size, self.crop, self.mean, self.std, self.interpolation, FLOAT_NCHW)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """torchvision's Resize(int): the shorter side becomes resize_size, the longer keeps the ratio
        (truncated, as torchvision does). Returns (width, height)."""
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        if new_short * new_long > IMAGE_MAX_PIXELS:  # a 1:1000 strip would resize to gigabytes
            raise DataError(
                f"a {width}x{height} image resizes to {new_short}x{new_long} (shorter side {self.resize_size}): "
                f"over the {IMAGE_MAX_PIXELS:,} pixel limit; crop it first"
            )
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def transform(self, image: PILImage.Image) -> NDArray[Any]:
        """One RGB PIL image -> ``float32 [3, H, W]`` normalised tensor (or, for a ``uint8-nhwc``
        model, the resized and cropped ``uint8 [H, W, 3]`` pixels)."""
        pil = _pil()
        resample = {"bilinear": pil.BILINEAR, "bicubic": pil.BICUBIC, "nearest": pil.NEAREST}[self.interpolation]
        img = to_rgb(image)
        w, h = self.resized_size(*img.size)
        if (w, h) != img.size:
            img = img.resize((w, h), resample=resample)
        img = center_crop(img, self.crop)
        if self.pixels:
            return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
        hwc = np.asarray(img, dtype=np.float32) / np.float32(255.0)
        norm = (hwc - np.asarray(self.mean, dtype=np.float32)) / np.asarray(self.std, dtype=np.float32)
        return np.ascontiguousarray(norm.transpose(2, 0, 1), dtype=np.float32)

    def __call__(self, image: PILImage.Image | str | os.PathLike[str] | NDArray[Any]) -> NDArray[Any]:
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        elif isinstance(image, np.ndarray):
            image = from_array(image)
        return self.transform(image)

    def batch(self, images: Sequence[Any]) -> NDArray[Any]:
        return np.stack([self(im) for im in images]) if images else self.zeros(0)


def center_crop(img: PILImage.Image, crop: tuple[int, int]) -> PILImage.Image:
    """torchvision's CenterCrop: offsets rounded as torchvision does; pads with zeros if too small."""
    th, tw = crop
    w, h = img.size
    if tw > w or th > h:  # torchvision pads symmetrically with zeros, then crops
        pil = _pil()
        padded = pil.new("RGB", (max(w, tw), max(h, th)))
        padded.paste(img, ((max(w, tw) - w) // 2, (max(h, th) - h) // 2))
        img, (w, h) = padded, padded.size
    top = round((h - th) / 2.0)  # Python's round, as torchvision's int(round(...))
    left = round((w - tw) / 2.0)
    return img.crop((left, top, left + tw, top + th))


def to_rgb(img: PILImage.Image) -> PILImage.Image:
    """Any PIL mode -> 8-bit RGB. 16-bit and float images are rescaled instead of clipped."""
    pil = _pil()
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # float images in [0, 1] (or already 0-255); integer ones are 16-bit samples (PNG/TIFF)
        float_scale = 255.0 if arr.size and float(arr.max()) <= 1.0 else 1.0
        scale = float_scale if mode == "F" else 255.0 / 65535.0
        gray = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        rgb: PILImage.Image = pil.fromarray(gray).convert("RGB")
        return rgb
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def from_array(arr: NDArray[Any]) -> PILImage.Image:
    """A numpy image, HxW or HxWxC (C = 1, 3 or 4), uint8 (0-255) or float (0-1) -> RGB PIL image."""
    pil = _pil()
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise DataError(f"expected an HxW or HxWx3 image array, got shape {a.shape}")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise DataError(f"image arrays must be uint8 (0-255) or float (0-1), got {a.dtype}")
        a = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return to_rgb(pil.fromarray(a))


def load_image(path: str | os.PathLike[str]) -> PILImage.Image:
    """Open and fully decode an image file as RGB; a clear DataError for anything unreadable."""
    pil = _pil()
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p} is a folder, not an image file")
    check_readable(p, "image", IMAGE_MAX_BYTES, error=DataError, missing=f"image not found: {p}")
    try:
        with open_checked(p, "image", IMAGE_MAX_BYTES, error=DataError) as f, warnings.catch_warnings():
            # Pillow's own bomb check warns (two raw lines on stderr) or raises: ours comes first.
            warnings.simplefilter("ignore", pil.DecompressionBombWarning)
            with pil.open(f) as im:
                w, h = im.size
                if w * h > IMAGE_MAX_PIXELS:
                    raise DataError(_too_many_pixels(p, w, h))
                im.load()  # decode now: a truncated file fails here, not later
                return to_rgb(im)
    except pil.DecompressionBombError:  # over twice Pillow's limit: refused inside open
        raise DataError(_too_many_pixels(p, None, None)) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def _too_many_pixels(p: Path, w: int | None, h: int | None) -> str:
    size = f"{w}x{h} = {w * h / 1e6:.0f} Mpx" if w is not None and h is not None else "over twice that"
    return (
        f"image {p} is {size}, over the {IMAGE_MAX_PIXELS / 1e6:.0f} Mpx ({IMAGE_MAX_PIXELS:,}) pixel limit "
        "(a decompression bomb, or a photo to shrink first)"
    )


def list_images(root: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (by extension, case-insensitive), in a stable sorted order."""
    r = Path(root)
    if not r.exists():
        raise DataError(f"image folder does not exist: {r}")
    if not r.is_dir():
        raise DataError(f"not a folder: {r}")
    walker = r.rglob("*") if recursive else r.glob("*")
    return sorted(p for p in walker if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


@dataclass(frozen=True)
class LabelledImages:
    """An ImageFolder layout: ``root/<class>/<image>``, classes in sorted folder order (or a labels file)."""

    samples: list[tuple[Path, int]]
    classes: list[str]


def image_folder(root: str | os.PathLike[str], labels_file: str | os.PathLike[str] | None = None) -> LabelledImages:
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"dataset folder does not exist: {r}")
    folders = sorted(d.name for d in r.iterdir() if d.is_dir())
    if labels_file is not None:
        lf = Path(labels_file)
        text = read_text_capped(
            lf, "labels file", LABELS_MAX_BYTES, error=DataError, missing=f"labels file not found: {lf}"
        )
        classes = [line.strip() for line in text.splitlines() if line.strip()]
        unknown = sorted(set(folders) - set(classes))
        if unknown:
            raise DataError(f"folders not in the labels file {lf.name}: {', '.join(unknown[:5])}")
    else:
        classes = folders
    if not folders:
        raise DataError(f"no class folders in {r} (expected {r}/<class>/<image>)")
    index = {c: i for i, c in enumerate(classes)}
    samples = [(p, index[d]) for d in folders for p in list_images(r / d)]
    if not samples:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {r}")
    return LabelledImages(samples, classes)


@dataclass
class Batch:
    inputs: NDArray[Any]  # float32 [n, 3, H, W] (uint8 [n, H, W, 3] for pixel-input models)
    paths: list[Path]
    indices: list[int]  # positions in the original list


def iter_batches(
    paths: Sequence[Path], preprocess: Preprocess, batch_size: int, skipped: list[tuple[Path, str]] | None = None
) -> Iterator[Batch]:
    """Preprocessed batches; unreadable files are skipped and recorded in ``skipped`` (path, reason)."""
    if batch_size <= 0:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size}")
    buf: list[NDArray[Any]] = []
    bpaths: list[Path] = []
    bidx: list[int] = []
    for i, p in enumerate(paths):
        try:
            x = preprocess(load_image(p))
        except DataError as e:
            if skipped is None:
                raise
            skipped.append((p, str(e)))
            continue
        buf.append(x)
        bpaths.append(p)
        bidx.append(i)
        if len(buf) == batch_size:
            yield Batch(np.stack(buf), bpaths, bidx)
            buf, bpaths, bidx = [], [], []
    if buf:
        yield Batch(np.stack(buf), bpaths, bidx)
