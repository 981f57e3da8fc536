"""What an artifact's metadata may say, checked before anything trusts it.

An ONNX file's ``metadata_props`` (a plan's sidecar carries the same) drive the preprocessing, the
labels and the rebuilt PyTorch reference, and a corrupted or hostile file can write anything there.
``ArtifactMeta`` runs ``check_values`` on every value it holds (finite, in range, no larger than
what ``export`` could have written), and ``check_graph`` when it reads a graph: where the graph's
own input or output shapes disagree with the metadata, the artifact is refused, naming the key,
the metadata's value and the graph's. Each refusal is a one-line ``ConfigError``.

The bounds are the exporter's own, so nothing the toolkit wrote is refused:

* ``image_size``: ``HxW``, each side 1..4096 (``export.check_image_size``'s upper bound);
* ``resize_size``: from the crop's longer side to twice it (export writes 1x, 232/224x or 256/224x);
* ``mean``: three finite values in [0, 1] (a mean of pixels scaled to [0, 1]); ``std``: three
  finite values in [0.001, 1] (pixel spreads are at most 0.5; 1 is "no scaling"; a smaller one
  multiplies the input noise over a thousandfold, and 0 divides by zero);
* ``num_classes``: 1..100,000 (``create_model``'s limit); ``batch``: ``dynamic`` or 1..4096;
* ``widths``: 3 or 4 stage widths of 1..8192 (one 3x3 convolution 8192 wide is already over
  ``MAX_PARAMS``), and the parameters they imply at most ``MAX_PARAMS``, checked by
  ``create_model`` before it builds anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .choices import InputFormat
from .errors import ConfigError
from .metrics import MAX_BATCH_SIZE

if TYPE_CHECKING:
    import onnx

MAX_IMAGE_SIDE = 4096
MAX_RESIZE_RATIO = 2
MEAN_RANGE = (0.0, 1.0)
STD_RANGE = (1e-3, 1.0)
MAX_CLASSES = 100_000
MAX_FIXED_BATCH = MAX_BATCH_SIZE
MAX_WIDTH = 8192
STAGE_COUNTS = (3, 4)  # CIFAR and ImageNet ResNets
# A single-file ONNX export (protobuf's 2 GiB, no external data) holds at most 2**29 fp32 weights.
MAX_PARAMS = 1 << 29
SEED_RANGE = (-(1 << 63), (1 << 64) - 1)  # what torch.manual_seed takes (create_model's seed)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
INPUT_FORMATS = tuple(f.value for f in InputFormat)


def shown(value: str, limit: int = 60) -> str:
    """A metadata value as an error message may quote it: short, printable, on one line."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return text if text.isprintable() else repr(text)


def refuse(key: str, value: str, why: str) -> ConfigError:
    return ConfigError(f"the artifact's metadata {key}={shown(value)} is refused: {why}")


def _int(key: str, value: str, low: int, high: int) -> int:
    text = value.strip()
    digits = text[1:] if low < 0 and text.startswith("-") else text
    if not digits.isdecimal() or len(digits) > 20:
        raise refuse(key, value, f"not an integer in {low:,}..{high:,}")
    n = int(text)
    if not low <= n <= high:
        raise refuse(key, value, f"outside {low:,}..{high:,}")
    return n


def _ints(key: str, value: str, sep: str, counts: tuple[int, ...], low: int, high: int) -> tuple[int, ...]:
    parts = value.split(sep)
    if len(parts) not in counts:
        raise refuse(key, value, f"expected {' or '.join(map(str, counts))} values separated by {sep!r}")
    return tuple(_int(key, p, low, high) for p in parts)


def _floats(key: str, value: str, low: float, high: float) -> tuple[float, ...]:
    parts = value.split(",")
    if len(parts) != 3:
        raise refuse(key, value, "expected 3 comma-separated values (R,G,B)")
    try:
        out = tuple(float(p) for p in parts)
    except ValueError:
        raise refuse(key, value, "not 3 numbers") from None
    if not all(math.isfinite(x) and low <= x <= high for x in out):
        raise refuse(key, value, f"each value must be a finite number in [{low:g}, {high:g}]")
    return out


def image_size(value: str) -> tuple[int, int]:
    h, w = _ints("image_size", value, "x", (2,), 1, MAX_IMAGE_SIDE)
    return h, w


def widths(value: str) -> tuple[int, ...]:
    return _ints("widths", value, ",", STAGE_COUNTS, 1, MAX_WIDTH)


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str], object]:
    def check(key: str, value: str) -> object:
        if value not in choices:
            raise refuse(key, value, f"expected one of {', '.join(choices)}")
        return value

    return check


def _batch(key: str, value: str) -> object:
    return None if value == "dynamic" else _int(key, value, 1, MAX_FIXED_BATCH)


CHECKS: dict[str, Callable[[str, str], object]] = {
    "image_size": lambda _k, v: image_size(v),
    "crop_size": lambda _k, v: _ints("crop_size", v, "x", (2,), 1, MAX_IMAGE_SIDE),
    "resize_size": lambda k, v: _int(k, v, 1, MAX_IMAGE_SIDE * MAX_RESIZE_RATIO),
    "mean": lambda k, v: _floats(k, v, *MEAN_RANGE),
    "std": lambda k, v: _floats(k, v, *STD_RANGE),
    "num_classes": lambda k, v: _int(k, v, 1, MAX_CLASSES),
    "widths": lambda _k, v: widths(v),
    "batch": _batch,
    "weights_seed": lambda k, v: _int(k, v, *SEED_RANGE),
    "interpolation": _one_of(INTERPOLATIONS),
    "input_format": _one_of(INPUT_FORMATS),
}


def check_values(props: Mapping[str, str]) -> None:
    """Each value ``CHECKS`` knows is well-formed and in range, and the sizes agree with each other
    (keys that are absent are not required here: whoever needs one says so)."""
    for key, check in CHECKS.items():
        if key in props:
            check(key, props[key])
    if "image_size" in props:
        h, w = image_size(props["image_size"])
        crop = props.get("crop_size")
        if crop is not None and crop != props["image_size"]:
            raise refuse("crop_size", crop, f"it is not the image_size {h}x{w}")
        resize = props.get("resize_size")
        if resize is not None and not max(h, w) <= int(resize) <= MAX_RESIZE_RATIO * max(h, w):
            raise refuse(
                "resize_size",
                resize,
                f"for image_size {h}x{w} it must be {max(h, w)}..{MAX_RESIZE_RATIO * max(h, w)} "
                "(from the crop's longer side to twice it)",
            )


# -- the graph's word against the metadata's ----------------------------------------------------

_UINT8, _FLOAT, _FLOAT16 = 2, 1, 10  # onnx.TensorProto's UINT8, FLOAT and FLOAT16


def _shape(value: onnx.ValueInfoProto) -> list[int | None]:
    """Static sizes, None for a symbolic or unknown axis."""
    return [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim
    ]


def _disagree(key: str, value: str, graph: str) -> ConfigError:
    return ConfigError(
        f"the artifact's metadata says {key}={shown(value)} but its graph {graph}: refusing the artifact"
    )


def _conv_widths(model: onnx.ModelProto) -> set[int]:
    """The output channels of every 4-D weight tensor (the convolutions), initializer or Constant."""
    tensors = list(model.graph.initializer)
    tensors += [a.t for n in model.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    return {int(t.dims[0]) for t in tensors if len(t.dims) == 4}


def check_graph(props: Mapping[str, str], model: onnx.ModelProto) -> None:
    """The metadata agrees with the graph's own input (format, H x W, batch) and output (classes)
    and with its convolutions' widths, wherever the graph states them."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if inputs:
        _check_input(props, inputs[0])
    if model.graph.output and "num_classes" in props:
        out = _shape(model.graph.output[0])
        if len(out) >= 1 and out[-1] is not None and out[-1] != int(props["num_classes"]):
            raise _disagree("num_classes", props["num_classes"], f"outputs {out[-1]} classes")
    if "widths" in props:
        have = _conv_widths(model)
        missing = [w for w in widths(props["widths"]) if w not in have]
        if have and missing:
            listed = ", ".join(map(str, sorted(have)))
            raise _disagree("widths", props["widths"], f"has no {missing[0]}-wide convolution (it has {listed})")


def _check_input(props: Mapping[str, str], x: onnx.ValueInfoProto) -> None:
    shape = _shape(x)
    if len(shape) != 4:
        return
    elem = x.type.tensor_type.elem_type
    fmt = props.get("input_format", InputFormat.float32_nchw.value)
    pixels = fmt == InputFormat.uint8_nhwc.value
    if "input_format" in props and (pixels != (elem == _UINT8) or (not pixels and elem not in (_FLOAT, _FLOAT16))):
        kind = {_UINT8: "uint8", _FLOAT: "float32", _FLOAT16: "float16"}.get(elem, f"type {elem}")
        raise _disagree("input_format", fmt, f"takes {kind} {['?' if d is None else d for d in shape]}")
    if "image_size" in props:
        hw = shape[1:3] if pixels else shape[2:4]
        want = list(image_size(props["image_size"]))
        if None not in hw and hw != want:
            raise _disagree("image_size", props["image_size"], f"takes {hw[0]}x{hw[1]} images")
    if "batch" in props:
        fixed = None if props["batch"] == "dynamic" else int(props["batch"])
        if fixed != shape[0]:
            graph = "has a dynamic batch axis" if shape[0] is None else f"has a fixed batch of {shape[0]}"
            raise _disagree("batch", props["batch"], graph)
