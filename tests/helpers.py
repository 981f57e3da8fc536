"""Assertions shared by test modules (kept free of typer so GPU machines without it can import them)."""

from __future__ import annotations

from pathlib import Path


def assert_one_line_error(code: int, stderr: str, *needles: str, exit_code: int | None = None) -> None:
    """A failed command: non-zero exit, no traceback, exactly one 'error: ' line containing the needles."""
    assert code != 0
    if exit_code is not None:
        assert code == exit_code
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def write_blob_images(folder: Path, count: int, *, name: str = "{i}.png") -> Path:
    """``count`` smooth random-colour images (6x6 random colours, bicubic-upsampled to 40x40, seed 0)
    written into ``folder``: image-like inputs for calibration and parity without a dataset."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        blob = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(blob).resize((40, 40), Image.BICUBIC).save(folder / name.format(i=i))
    return folder
