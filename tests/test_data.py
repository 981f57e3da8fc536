"""Preprocessing: torchvision's eval transform reproduced exactly, and every odd image handled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnet_deploy import DataError, get_model_cfg
from resnet_deploy.data import Preprocess, image_folder, iter_batches, list_images, load_image

IMAGENET = Preprocess(256, (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def gradient(w: int, h: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def test_from_cfg_matches_the_published_recipes() -> None:
    assert Preprocess.from_cfg(get_model_cfg(50)) == IMAGENET
    cifar = Preprocess.from_cfg(get_model_cfg(20))
    assert cifar.resize_size == 32 and cifar.crop == (32, 32) and cifar.mean == (0.4914, 0.4822, 0.4465)
    assert Preprocess.from_cfg(get_model_cfg(50), (64, 64)).resize_size == 73  # 256/224 ratio kept


def test_resize_and_crop_geometry_like_torchvision() -> None:
    # torchvision Resize(256) on 500x375 (WxH): short side 256, long int(256*500/375) = 341.
    assert IMAGENET.resized_size(500, 375) == (341, 256)
    assert IMAGENET.resized_size(375, 500) == (256, 341)
    assert IMAGENET.resized_size(256, 256) == (256, 256)


def test_transform_values_equal_the_reference_pipeline() -> None:
    img = gradient(500, 375)
    out = IMAGENET(img)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    # The same steps by hand: PIL bilinear resize, crop at round((341-224)/2) = 58 (banker's rounding).
    ref = img.resize((341, 256), Image.BILINEAR).crop((58, 16, 58 + 224, 16 + 224))
    arr = (np.asarray(ref, np.float32) / 255.0 - np.array(IMAGENET.mean, np.float32)) / np.array(
        IMAGENET.std, np.float32
    )
    np.testing.assert_allclose(out, arr.transpose(2, 0, 1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "CMYK", "P", "1", "I;16", "I", "F", "YCbCr"])
def test_every_image_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    base = gradient(80, 60)
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16)
        img = Image.fromarray(arr)
    elif mode == "I":
        img = Image.fromarray((np.asarray(base.convert("L"), np.int32) * 257).astype(np.int32))
    elif mode == "F":
        img = Image.fromarray(np.asarray(base.convert("L"), np.float32) / 255.0)
    elif mode == "P":
        img = base.convert("P", palette=Image.ADAPTIVE)
    else:
        img = base.convert(mode)
    out = IMAGENET(img)
    assert out.shape == (3, 224, 224) and np.isfinite(out).all()
    if mode in ("I;16", "I", "F"):
        # 16-bit / float images are rescaled, not clipped: they match the 8-bit grayscale image.
        gray = IMAGENET(base.convert("L"))
        assert np.abs(out - gray).max() < 0.05
    suffix = {"CMYK": ".jpg", "YCbCr": ".jpg", "F": None, "I": None}.get(mode, ".png")
    if suffix:
        img.save(tmp_path / f"x{suffix}")
        assert load_image(tmp_path / f"x{suffix}").mode == "RGB"


def test_tiny_and_odd_images(tmp_path: Path) -> None:
    for w, h in ((1, 1), (7, 300), (300, 7), (3000, 20)):
        assert IMAGENET(gradient(w, h)).shape == (3, 224, 224)
    assert IMAGENET(np.zeros((10, 12, 3), np.uint8)).shape == (3, 224, 224)
    assert IMAGENET(np.ones((10, 12), np.float32)).shape == (3, 224, 224)
    with pytest.raises(DataError, match="HxW or HxWx3"):
        IMAGENET(np.zeros((2, 3, 4, 5), np.uint8))


def test_unreadable_files_are_data_errors(tmp_path: Path) -> None:
    (tmp_path / "text.jpg").write_text("not an image")
    gradient(64, 64).save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("text.jpg", "truncated.jpg", "empty.png", "missing.png"):
        with pytest.raises(DataError, match="cannot read image|image not found"):
            load_image(tmp_path / name)
    skipped: list[tuple[Path, str]] = []
    batches = list(iter_batches(list_images(tmp_path), IMAGENET, 2, skipped))
    assert [b.paths for b in batches] == [[tmp_path / "ok.jpg"]]
    assert sorted(p.name for p, _ in skipped) == ["empty.png", "text.jpg", "truncated.jpg"]


def test_list_images_and_image_folder(tmp_path: Path) -> None:
    for cls, n in (("cat", 2), ("dog", 3)):
        (tmp_path / cls / "sub").mkdir(parents=True)
        for i in range(n):
            gradient(40, 30).save(tmp_path / cls / ("sub" if i else "") / f"{i}.PNG")
    (tmp_path / "cat" / "notes.txt").write_text("ignored")
    assert len(list_images(tmp_path)) == 5 and list_images(tmp_path, recursive=False) == []
    ds = image_folder(tmp_path)
    assert ds.classes == ["cat", "dog"] and [label for _, label in ds.samples] == [0, 0, 1, 1, 1]
    (tmp_path / "labels.txt").write_text("dog\ncat\n")
    ds = image_folder(tmp_path, tmp_path / "labels.txt")
    assert ds.classes == ["dog", "cat"] and [label for _, label in ds.samples] == [1, 1, 0, 0, 0]
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(DataError, match="no class folders"):
        image_folder(tmp_path / "cat" / "sub")
