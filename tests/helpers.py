"""Assertions shared by test modules (kept free of typer so GPU machines without it can import them)."""

from __future__ import annotations


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
