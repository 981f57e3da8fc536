#!/usr/bin/env python3
"""Adversarial bad-input sweep of the ``resnet-deploy`` command line.

The toolkit promises that bad input gets a clear one-line error (``error: ...`` on stderr, no
traceback, no "unexpected <Exception>", no raw control characters), a non-zero exit (2 for usage
errors), no partial artifact (no new file left in the output folder, hidden ``.*.tmp`` included),
and neither unbounded memory nor a hang. This script checks those promises case by case: it makes a
scratch folder, exports a ResNet-20 once, builds bad inputs (missing, directory, empty, random,
truncated, FIFO, /dev/zero and dangling-symlink paths; out-of-range numbers; hostile names;
tampered ONNX metadata; closed stdout ...) and runs each case as a subprocess of the installed
``resnet-deploy`` entry point, in a folder of its own, under a timeout and an address-space cap.

    python scripts/bad_input_sweep.py [--out benchmarks/results/bad_inputs.md] [--json FILE] [--quick]

Exit status: 0 if every case held, 1 if any broke, 2 if the sweep itself could not run.
Standard library only (the fixtures use the package's own dependencies: onnx, torch, Pillow).
``serve`` appears only with arguments that must be refused before Triton starts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

GIB = 1 << 30
AS_LIMIT = 6 * GIB  # address-space cap of every case
HUGE = str(10**30)
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "bad_inputs.md"
SERVE_PORTS = ["--http-port", "38123", "--grpc-port", "38124", "--metrics-port", "38125"]
PATH_KINDS = ("missing", "dir", "empty", "random", "truncated", "fifo", "devzero", "dangling")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 (but \t, \n), DEL, C1
UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Step = Callable[[Path], None]
Extra = Callable[[Path, str, str], "str | None"]


# ---------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    category: str
    args: list[str]
    expect: str  # usage (exit 2) | error (exit != 0) | ok (exit 0) | any (either, but clean)
    note: str = ""
    steps: list[Step] = field(default_factory=list)
    closed_stdout: bool = False
    timeout: float = 60.0
    extra: Extra | None = None
    skip: str = ""
    may_rewrite: str = ""  # a file the command may legitimately rewrite (a failing check's parity record)


@dataclass
class Result:
    id: int
    category: str
    command: str
    expect: str
    note: str
    exit: int | None
    seconds: float
    peak_rss_mib: float
    verdict: str  # held | broken | skipped
    why: str
    stderr_last: str
    stderr_tail: str
    stdout_head: str


class Fixtures:
    """Inputs made once (the exported ResNet-20, images, checkpoints) and copied into each case."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def cp(self, name: str, as_name: str | None = None) -> Step:
        def step(d: Path) -> None:
            src, dst = self.root / name, d / (as_name or name)
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, symlinks=True)
            else:
                shutil.copy2(src, dst)
                for side in (".parity.json", ".json"):
                    if (self.root / (name + side)).is_file():
                        shutil.copy2(self.root / (name + side), d / ((as_name or name) + side))

        return step

    def bad(self, kind: str, name: str, like: str | None = None) -> Step:
        def step(d: Path) -> None:
            p = d / name
            p.parent.mkdir(parents=True, exist_ok=True)
            if kind == "missing":
                return
            if kind == "dir":
                p.mkdir()
            elif kind == "empty":
                p.write_bytes(b"")
            elif kind == "random":
                p.write_bytes(random.Random(7).randbytes(4096))
            elif kind == "truncated":
                data = (self.root / (like or "r20.onnx")).read_bytes()
                p.write_bytes(data[: len(data) // 2])
            elif kind == "fifo":
                os.mkfifo(p)
            elif kind == "devzero":
                p.symlink_to("/dev/zero")
            elif kind == "dangling":
                p.symlink_to("no-such-dir/" + p.name)
            else:
                raise ValueError(kind)

        return step


def write(name: str, data: bytes | str) -> Step:
    def step(d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_bytes(data.encode() if isinstance(data, str) else data)

    return step


def mkdir(name: str, mode: int | None = None) -> Step:
    def step(d: Path) -> None:
        (d / name).mkdir(parents=True, exist_ok=True)
        if mode is not None:
            (d / name).chmod(mode)

    return step


def symlink(name: str, target: str) -> Step:
    def step(d: Path) -> None:
        (d / name).symlink_to(target)

    return step


def no_marker(name: str) -> Extra:
    def check(d: Path, _out: str, _err: str) -> str | None:
        return f"{name} exists: the pickle's code ran" if (d / name).exists() else None

    return check


def is_json(d: Path, out: str, _err: str) -> str | None:
    try:
        json.loads(out)
    except ValueError as e:
        return f"stdout is not JSON ({e})"
    return None


def build_cases(fx: Fixtures, as_root: bool) -> list[Case]:
    cases: list[Case] = []
    cp, bad = fx.cp, fx.bad
    onnx = [cp("r20.onnx")]
    img = [cp("img.png")]

    def add(category: str, args: Sequence[str], expect: str, *steps: Step, **kw: object) -> None:
        cases.append(Case(category, list(args), expect, steps=list(steps), **kw))  # type: ignore[arg-type]

    # --- positional artifact paths (ONNX / plan / checkpoint given where an artifact is expected)
    for kind in PATH_KINDS:
        ex = "usage" if kind in ("missing", "dangling") else "error"
        a = bad(kind, "x.onnx")
        add("artifact-path", ["info", "x.onnx"], ex, a, note=kind)
        add("artifact-path", ["check", "x.onnx"], ex, a, note=kind)
        add("artifact-path", ["predict", "x.onnx", "img.png"], ex, a, *img, note=kind)
        if kind in ("missing", "truncated", "fifo", "devzero"):
            add("artifact-path", ["convert", "x.onnx", "--precision", "fp16"], ex, a, note=kind)
            add("artifact-path", ["eval", "x.onnx", "--data", "data"], ex, a, cp("data"), note=kind)
            add("artifact-path", ["ship", "x.onnx", "--repo", "repo", "--force", "--kind", "cpu"], ex, a, note=kind)
    for kind in ("missing", "random", "fifo"):
        ex = "usage" if kind == "missing" else "error"
        add(
            "artifact-path",
            ["bench", "x.onnx", "--iters", "2", "--batch-sizes", "1"],
            ex,
            bad(kind, "x.onnx"),
            note=kind,
        )
        add("artifact-path", ["build", "x.onnx"], ex, bad(kind, "x.onnx"), note=kind)
        add("artifact-path", ["serve", "x.onnx", *SERVE_PORTS], ex, bad(kind, "x.onnx"), note=kind, timeout=45.0)
        add("artifact-path", ["predict", "x.plan", "img.png"], ex, bad(kind, "x.plan"), *img, note="plan " + kind)
        add(
            "artifact-path",
            ["ship", "x.plan", "--repo", "repo", "--force"],
            ex,
            bad(kind, "x.plan"),
            note="plan " + kind,
        )
    add("artifact-path", ["info", "/dev/zero"], "error", note="/dev/zero itself")
    add("artifact-path", ["predict", "/dev/zero", "img.png"], "error", *img, note="/dev/zero itself")
    add(
        "artifact-path",
        ["check", "r20.onnx", "--reference", "x.onnx"],
        "error",
        *onnx,
        bad("fifo", "x.onnx"),
        note="fifo reference",
    )
    add(
        "artifact-path",
        ["check", "r20.onnx", "--reference", "x.onnx"],
        "error",
        *onnx,
        bad("random", "x.onnx"),
        note="random reference",
    )
    add(
        "artifact-path",
        ["predict", "x.plan", "img.png"],
        "error",
        bad("random", "x.plan"),
        write("x.plan.json", json.dumps({"profile": {"min": 1, "opt": 8, "max": 10**12}, "input_shape": [10**9] * 4})),
        *img,
        note="plan with a hostile sidecar",
    )
    add("artifact-path", ["info", "ident.onnx"], "any", cp("ident.onnx"), note="foreign ONNX (Identity, no metadata)")
    add(
        "artifact-path", ["check", "ident.onnx"], "error", cp("ident.onnx"), note="foreign ONNX (Identity, no metadata)"
    )
    add("artifact-path", ["predict", "ident.onnx", "img.png"], "error", cp("ident.onnx"), *img, note="foreign ONNX")

    # --- image files given to predict
    for kind in PATH_KINDS:
        ex = "error"
        add("image-path", ["predict", "r20.onnx", "x.png"], ex, *onnx, bad(kind, "x.png", like="img.png"), note=kind)
    add(
        "image-path",
        ["predict", "r20.onnx", "img.png", "x.png"],
        "error",
        *onnx,
        *img,
        bad("fifo", "x.png"),
        note="good then fifo",
    )
    add("image-path", ["predict", "r20.onnx", "/dev/zero"], "error", *onnx, note="/dev/zero itself")

    # --- odd but valid image contents, and bombs
    for name, ex, note in [
        ("tiny.png", "ok", "1x1 RGB"),
        ("gray.png", "ok", "grayscale L"),
        ("rgba.png", "ok", "RGBA"),
        ("pal.png", "ok", "palette P"),
        ("cmyk.jpg", "ok", "CMYK JPEG"),
        ("wide.png", "ok", "1x5000"),
        ("i16.png", "any", "16-bit grayscale"),
        ("anim.gif", "ok", "animated GIF (2 frames)"),
        ("jpeg_as.png", "ok", "JPEG bytes named .png"),
        ("big.png", "any", "8000x8000 zeros (64 Mpx, 180 KB)"),
        ("bomb.png", "error", "PNG header claiming 100000x100000"),
        ("text.png", "error", "text named .png"),
    ]:
        add("image-content", ["predict", "r20.onnx", name], ex, *onnx, cp(name), note=note)
    add(
        "image-content",
        ["eval", "r20.onnx", "--data", "bombdata"],
        "error",
        *onnx,
        cp("bombdata"),
        note="bomb in eval data",
    )
    add(
        "image-content",
        ["check", "r20.onnx", "--images", "bombdata"],
        "error",
        *onnx,
        cp("bombdata"),
        note="bomb in check images",
    )

    # --- checkpoints (--weights PATH and .pth artifacts)
    for kind in PATH_KINDS:
        ex = "error"
        add(
            "weights-path",
            ["export", "--depth", "20", "--weights", "w.pth", "-o", "out.onnx"],
            ex,
            bad(kind, "w.pth", like="r20.pth"),
            note=kind,
        )
    for kind in ("missing", "random", "fifo", "devzero"):
        add(
            "weights-path",
            ["predict", "w.pth", "img.png", "--depth", "20"],
            "error",
            bad(kind, "w.pth", like="r20.pth"),
            *img,
            note=kind,
        )
        add("weights-path", ["check", "r20.onnx", "--weights", "w.pth"], "error", *onnx, bad(kind, "w.pth"), note=kind)
    for kind in ("truncated", "empty"):
        add(
            "weights-path",
            ["eval", "w.pth", "--depth", "20", "--data", "data"],
            "error",
            bad(kind, "w.pth", like="r20.pth"),
            cp("data"),
            note=kind,
        )
    for name in ("evil_zip.pth", "evil_pickle.pth"):
        mark = no_marker("PWNED")
        add(
            "weights-path",
            ["export", "--depth", "20", "--weights", name, "-o", "out.onnx"],
            "error",
            cp(name),
            note="code-running pickle",
            extra=mark,
        )
        add(
            "weights-path",
            ["predict", name, "img.png", "--depth", "20"],
            "error",
            cp(name),
            *img,
            note="code-running pickle",
            extra=mark,
        )
    add(
        "weights-path",
        ["predict", "r20.pth", "img.png", "--depth", "56"],
        "error",
        cp("r20.pth"),
        *img,
        note="checkpoint of another depth",
    )
    add(
        "weights-path",
        ["export", "--depth", "20", "--weights", "r20.pth", "-o", "out.onnx"],
        "ok",
        cp("r20.pth"),
        note="valid checkpoint (control)",
    )

    # --- image folders: check --images, eval --data
    folders: list[tuple[str, list[Step]]] = [
        ("missing", []),
        ("a file", [cp("img.png", "x")]),
        ("empty folder", [mkdir("x")]),
        ("fifo", [bad("fifo", "x")]),
        ("devzero symlink", [bad("devzero", "x")]),
        ("only random-bytes images", [bad("random", "x/c/a.png")]),
        ("only fifo images", [bad("fifo", "x/c/a.png")]),
        ("only /dev/zero-symlink images", [bad("devzero", "x/c/a.png")]),
        ("only 0-byte images", [bad("empty", "x/c/a.jpg")]),
        ("no class subfolders (eval)", [cp("img.png", "x/a.png")]),
    ]
    for note, steps in folders:
        ex = "any" if note.startswith("no class") else "error"
        if note in ("missing", "a file", "empty folder", "fifo", "only random-bytes images", "only fifo images"):
            add("images-folder", ["check", "r20.onnx", "--images", "x"], ex, *onnx, *steps, note=note)
        add("images-folder", ["eval", "r20.onnx", "--data", "x"], ex, *onnx, *steps, note=note)
    add(
        "images-folder",
        ["eval", "r20.onnx", "--data", "mixed"],
        "any",
        *onnx,
        cp("data", "mixed"),
        bad("fifo", "mixed/a/z.png"),
        note="good images plus a fifo",
    )

    # --- label files
    labels: list[tuple[str, str, list[Step]]] = [
        ("missing", "error", []),
        ("dir", "error", [mkdir("l.txt")]),
        ("empty", "error", [write("l.txt", "")]),
        ("random bytes", "error", [bad("random", "l.txt")]),
        ("fifo", "error", [bad("fifo", "l.txt")]),
        ("devzero symlink", "error", [bad("devzero", "l.txt")]),
        ("5 names for 10 classes", "error", [write("l.txt", "".join(f"c{i}\n" for i in range(5)))]),
        ("100000 names for 10 classes", "error", [write("l.txt", "".join(f"c{i}\n" for i in range(100000)))]),
        ("one 20 MB line", "error", [write("l.txt", "A" * 20_000_000)]),
        (
            "escape sequences in names",
            "ok",
            [write("l.txt", "".join(f"\x1b[31mc{i}\x1b]0;t\x07\n" for i in range(10)))],
        ),
        ("CRLF line ends", "ok", [write("l.txt", "".join(f"c{i}\r\n" for i in range(10)))]),
    ]
    for note, ex, steps in labels:
        add("labels", ["predict", "r20.onnx", "img.png", "--labels", "l.txt"], ex, *onnx, *img, *steps, note=note)
        if note in ("fifo", "random bytes", "5 names for 10 classes"):
            ship = ["ship", "r20.onnx", "--repo", "repo", "--force", "--kind", "cpu", "--labels", "l.txt"]
            add("labels", ship, "error", *onnx, *steps, note=note)
            add(
                "labels",
                ["eval", "r20.onnx", "--data", "data", "--labels", "l.txt"],
                "error",
                *onnx,
                cp("data"),
                *steps,
                note=note,
            )

    # --- int8 calibration folders
    conv = ["convert", "r20.onnx", "--precision", "int8", "--calib-count", "4", "--calib"]
    for note, steps in [
        ("missing", []),
        ("a file", [cp("img.png", "x")]),
        ("empty folder", [mkdir("x")]),
        ("fifo", [bad("fifo", "x")]),
        ("only random-bytes images", [bad("random", "x/a.png")]),
        ("only fifo images", [bad("fifo", "x/a.png")]),
        ("only /dev/zero-symlink images", [bad("devzero", "x/a.png")]),
    ]:
        add("calib", [*conv, "x"], "error", *onnx, *steps, note=note)

    # --- Triton repositories
    ship = ["ship", "r20.onnx", "--force", "--kind", "cpu", "--repo"]
    for note, steps in [
        ("a file", [cp("img.png", "repo")]),
        ("fifo", [bad("fifo", "repo")]),
        ("devzero symlink", [bad("devzero", "repo")]),
        ("dangling symlink", [bad("dangling", "repo")]),
        ("under a file", [cp("img.png", "f")]),
    ]:
        add("repo", [*ship, "f/repo" if note == "under a file" else "repo"], "error", *onnx, *steps, note=note)
    add(
        "repo",
        [*ship, "repo"],
        "error",
        *onnx,
        mkdir("repo/resnet20/1"),
        write("repo/resnet20/1/model.onnx", "x"),
        note="existing version, no --replace",
    )
    add("repo", [*ship, "/proc/repo"], "error", *onnx, note="unwritable (/proc)")
    add(
        "repo",
        [*ship, "repo"],
        "error",
        *onnx,
        mkdir("repo/resnet20"),
        write("repo/resnet20/config.pbtxt", "\x00garbage{{{"),
        note="garbage config.pbtxt present",
    )

    # --- output paths
    cv = ["convert", "r20.onnx", "--precision", "fp16", "-o"]
    for note, target, ex, steps in [
        ("fifo", "o.onnx", "any", [bad("fifo", "o.onnx")]),
        ("devzero symlink", "o.onnx", "any", [bad("devzero", "o.onnx")]),
        ("dangling symlink", "o.onnx", "any", [bad("dangling", "o.onnx")]),
        ("missing parent", "nope/o.onnx", "error", []),
        ("parent is a file", "f/o.onnx", "error", [cp("img.png", "f")]),
        ("an existing directory", "sub", "ok", [mkdir("sub")]),
        ("symlinked folder", "link", "ok", [mkdir("real"), symlink("link", "real")]),
        ("symlink to a file", "o.onnx", "any", [write("real.onnx", "keep"), symlink("o.onnx", "real.onnx")]),
        ("243-character name", "a" * 238 + ".onnx", "ok", []),
        ("256-character name", "b" * 251 + ".onnx", "error", []),
        ("the source itself", "r20.onnx", "error", []),
        ("unwritable (/proc)", "/proc/o.onnx", "error", []),
        ("newline and escape in name", "o\n\x1b[2J.onnx", "any", []),
    ]:
        add("output-path", [*cv, target], ex, *onnx, *steps, note=note)
    for note, target, steps in [
        ("missing parent", "nope/o.onnx", []),
        ("256-character name", "b" * 251 + ".onnx", []),
    ]:
        add("output-path", ["export", "--depth", "20", "--weights", "random", "-o", target], "error", *steps, note=note)
    b1 = ["bench", "r20.onnx", "--iters", "2", "--batch-sizes", "1", "--warmup-s", "0"]
    add("output-path", [*b1, "--json", "nope/o.json"], "error", *onnx, note="--json missing parent")
    # by design, as for a symlink: an output path that is a FIFO is replaced by the file, never opened
    add("output-path", [*b1, "--csv", "o.csv"], "any", *onnx, bad("fifo", "o.csv"), note="--csv fifo")
    # by design, as export's -o: an existing folder gets the default name (d/bench.json) inside it
    add("output-path", [*b1, "--json", "d"], "ok", *onnx, mkdir("d"), note="--json a directory")
    add(
        "output-path",
        ["build", "r20.onnx", "--timing-cache", "tc"],
        "error",
        *onnx,
        bad("fifo", "tc"),
        note="--timing-cache fifo",
    )
    add(
        "output-path",
        ["build", "r20.onnx", "--timing-cache", "tc"],
        "error",
        *onnx,
        bad("devzero", "tc"),
        note="--timing-cache devzero",
    )
    add("output-path", ["build", "r20.onnx", "-o", "o.plan"], "error", *onnx, bad("fifo", "o.plan"), note="-o fifo")

    # --- unwritable output folders
    ro = "skipped: running as root, which ignores permission bits" if as_root else ""
    add("unwritable", [*cv, "ro/o.onnx"], "error", *onnx, mkdir("ro", 0o555), note="chmod 555 folder", skip=ro)
    add("unwritable", [*ship, "ro/repo"], "error", *onnx, mkdir("ro", 0o555), note="chmod 555 folder", skip=ro)
    add(
        "unwritable",
        ["export", "--depth", "20", "--weights", "random", "-o", "ro/o.onnx"],
        "error",
        mkdir("ro", 0o555),
        note="chmod 555",
        skip=ro,
    )
    add("unwritable", [*cv, "/sys/o.onnx"], "error", *onnx, note="/sys (refused even to root)")

    # --- numbers out of range
    def nums(
        cat: str, base: list[str], opt: str, values: Sequence[str], steps: Sequence[Step], ex: str = "usage"
    ) -> None:
        for v in values:
            add(cat, [*base, opt, v], ex, *steps, note=f"{opt} {v!r}"[:60])

    chk = ["check", "r20.onnx"]
    nums("num-batch", chk, "--batch-sizes", ["0", "-1", HUGE, "nan", "abc", "", "100000"], onnx)
    nums("num-batch", chk, "--batch-sizes", ["1,,8"], onnx, ex="any")  # by design: empty items are skipped
    bq = ["bench", "r20.onnx", "--iters", "2", "--warmup-s", "0"]
    nums("num-batch", bq, "--batch-sizes", ["0", HUGE, "100000"], onnx)
    ex20 = ["export", "--depth", "20", "--weights", "random", "-o", "o.onnx"]
    nums("num-batch", ex20, "--batch", ["0", "-1", HUGE, "abc"], [])
    nums("num-batch", ["predict", "r20.onnx", "img.png"], "--batch-size", ["0", "-1", HUGE], [*onnx, *img])
    nums("num-batch", ["eval", "r20.onnx", "--data", "data"], "--batch-size", ["0", HUGE], [*onnx, cp("data")])
    nums("num-batch", ["eval", "r20.onnx", "--data", "data"], "--limit", ["-1"], [*onnx, cp("data")])
    nums("num-seed", ex20, "--seed", ["-1", str(2**32), HUGE, "abc"], [])
    nums("num-seed", chk, "--seed", ["-1", "1.5"], onnx)
    nums("num-seed", ["convert", "r20.onnx", "--precision", "fp16"], "--seed", [HUGE], onnx)
    nums("num-tolerance", chk, "--max-images", ["0", "abc"], onnx)
    nums("num-tolerance", [*chk, "--images", "data"], "--max-images", [HUGE], [*onnx, cp("data")], ex="any")
    nums("num-tolerance", chk, "--rtol", ["-1", "nan", "inf", "1e30"], onnx)
    # a valid but failing check is evidence: it replaces the record (a nonsensical tolerance never runs)
    add("num-tolerance", [*chk, "--rtol", "0"], "any", *onnx, note="--rtol '0'", may_rewrite="r20.onnx.parity.json")
    nums("num-tolerance", chk, "--min-cosine", ["-2", "2", "nan"], onnx)
    nums("num-tolerance", chk, "--min-top1", ["1.5", "nan"], onnx)
    nums("num-tolerance", ex20, "--rtol", ["nan", "inf"], [])
    bt = ["bench", "r20.onnx", "--batch-sizes", "1", "--warmup-s", "0"]
    nums("num-time", bt, "--duration-s", ["0", "-1", "nan", "inf", "1e30"], onnx)
    nums(
        "num-time",
        ["bench", "r20.onnx", "--batch-sizes", "1", "--iters", "2"],
        "--warmup-s",
        ["-1", "inf", "1e30"],
        onnx,
    )
    nums("num-time", bt, "--iters", ["0", HUGE], onnx)
    nums("num-time", [*bt, "--iters", "2"], "--rounds", ["0", HUGE], onnx)
    nums("num-threads", [*bt, "--iters", "2"], "--threads", ["0", "-1", HUGE, "100000"], onnx)
    nums("num-threads", ["predict", "r20.onnx", "img.png"], "--threads", ["0", HUGE, "100000"], [*onnx, *img])
    nums("num-threads", ["eval", "r20.onnx", "--data", "data"], "--threads", ["-1", HUGE], [*onnx, cp("data")])
    sh = ["ship", "r20.onnx", "--repo", "repo", "--force", "--kind", "cpu"]
    nums("num-ship", sh, "--instances", ["0", HUGE, "100000"], onnx)
    nums("num-ship", sh, "--version", ["0", "-1", HUGE], onnx)
    nums("num-ship", sh, "--max-queue-delay-us", ["-1", HUGE], onnx)
    nums("num-ship", sh, "--max-batch", ["0", HUGE], onnx)
    nums("num-ship", sh, "--preferred-batch", ["0", "abc", "100000"], onnx)
    nums("num-ship", sh, "--preferred-batch", [""], onnx, ex="any")  # by design: empty = no preferred sizes
    sv = ["serve", "r20.onnx"]
    for opt, vals in [
        ("--http-port", ["-1", "70000", HUGE]),
        ("--grpc-port", ["70000", "38123"]),
        ("--metrics-port", ["-1"]),
        ("--instances", ["0", HUGE]),
        ("--max-queue-delay-us", ["-1", HUGE]),
        ("--max-batch", ["0", HUGE]),
        ("--threads", ["0"]),
        ("--preferred-batch", ["abc"]),
    ]:
        ports = [p for i, p in enumerate(SERVE_PORTS) if SERVE_PORTS[i - i % 2] != opt]
        for v in vals:
            add("num-serve", [*sv, *ports, opt, v], "usage", *onnx, note=f"{opt} {v!r}", timeout=45.0)
    add("num-serve", [*sv, *SERVE_PORTS, "--name", "a/b"], "usage", *onnx, note="--name 'a/b'", timeout=45.0)
    add("num-serve", [*sv, *SERVE_PORTS, "--name", "a\nb"], "usage", *onnx, note="--name with newline", timeout=45.0)
    exm = ["export", "--depth", "20", "--weights", "random", "-o", "o.onnx"]
    nums("num-model", exm, "--image-size", ["0", "100000", "32x0", "abc", "32x32x32"], [])
    nums("num-model", exm, "--image-size", ["1x1"], [], ex="any")
    nums("num-model", exm, "--num-classes", ["0", str(10**9), HUGE], [])
    nums("num-model", exm, "--opset", ["1", "99"], [])
    nums("num-model", ["export", "--weights", "random", "-o", "o.onnx"], "--depth", ["7", HUGE], [])
    nums(
        "num-model",
        ["export", "--weights", "random", "-o", "o.onnx"],
        "--model",
        ["../../etc/passwd", ""],
        [],
    )
    ex_model = ["export", "--weights", "random", "-o", "o.onnx", "--model", "resnet20\n"]
    add("num-model", ex_model, "any", note="--model 'resnet20\\n' (normalised to resnet20)")
    fifo_out = ["export", "--depth", "20", "--weights", "random", "-o", "o.onnx"]
    add("output-path", fifo_out, "any", bad("fifo", "o.onnx"), note="fifo (replaced, never opened)")
    cq = ["convert", "r20.onnx", "--precision", "int8", "--calib", "random"]
    nums("num-calib", cq, "--calib-count", ["0", HUGE], onnx)
    nums(
        "num-calib",
        [*cq, "--calib-count", "4", "--calib-method", "percentile"],
        "--percentile",
        ["0", "101", "nan"],
        onnx,
    )
    nums("num-topk", ["predict", "r20.onnx", "img.png"], "--topk", ["0", "-1"], [*onnx, *img])
    nums("num-topk", ["predict", "r20.onnx", "img.png"], "--topk", [HUGE], [*onnx, *img], ex="any")  # clamped
    nums("num-topk", ["predict", "r20.onnx", "img.png"], "--topk", ["11"], [*onnx, *img], ex="any")
    bd = ["build", "r20.onnx"]
    for opt, v in [
        ("--min-batch", "0"),
        ("--max-batch", "-1"),
        ("--workspace", "nan"),
        ("--opt-level", "9"),
        ("--opt-batch", HUGE),
    ]:
        add("num-build", [*bd, opt, v], "error", *onnx, note=f"{opt} {v} (no TensorRT here)")

    # --- names and hostile paths
    for note, name in [
        ("newline", "a\nb"),
        ("slash", "a/b"),
        ("leading dot", ".hidden"),
        ("dot-dot", ".."),
        ("300 characters", "n" * 300),
        ("empty", ""),
        ("escape sequence", "\x1b[31mred"),
    ]:
        add(
            "names",
            ["ship", "r20.onnx", "--repo", "repo", "--force", "--kind", "cpu", "--name", name],
            "usage",
            *onnx,
            note=f"--name {note}",
        )
    for note, path, ex in [
        ("missing, newline in name", "a\nb.onnx", "usage"),
        ("missing, escape in name", "\x1b[2J\x1b]0;pwn\x07.onnx", "usage"),
        ("missing, 5000-char name", "x" * 5000 + ".onnx", "usage"),
    ]:
        add("hostile-paths", ["info", path], ex, note=note)
        add("hostile-paths", ["predict", path, "img.png"], ex, *img, note=note)
    add(
        "hostile-paths",
        ["predict", "r20.onnx", "i\n\x1b[2Jm.png"],
        "ok",
        *onnx,
        cp("img.png", "i\n\x1b[2Jm.png"),
        note="valid image, newline+ESC in name",
    )
    add(
        "hostile-paths",
        ["info", "e\x1b[31m.onnx"],
        "ok",
        cp("r20.onnx", "e\x1b[31m.onnx"),
        note="valid ONNX, ESC in name",
    )

    # --- ONNX files with tampered metadata
    for tag, info_ex, use_ex in TAMPERS_EXPECT:
        name = f"t_{tag}.onnx"
        add("tampered-meta", ["info", name], info_ex, cp(name), note=tag)
        add("tampered-meta", ["check", name], use_ex, cp(name), note=tag)
        add("tampered-meta", ["predict", name, "img.png"], use_ex, cp(name), *img, note=tag)
        if tag in ("std_zero", "mean_nan", "image_huge", "classes_1000", "escape_free_text"):
            add("tampered-meta", ["eval", name, "--data", "data"], use_ex, cp(name), cp("data"), note=tag)

    # --- closed stdout ('>&-')
    for args, ex, steps in [
        (["models"], "ok", []),
        (["models", "--json"], "usage", []),
        (["info", "r20.onnx"], "ok", onnx),
        (["info", "r20.onnx", "--json"], "usage", onnx),
        (["predict", "r20.onnx", "img.png", "--json"], "usage", [*onnx, *img]),
        (["check", "r20.onnx", "--json"], "usage", onnx),
    ]:
        add("closed-stdout", args, ex, *steps, closed_stdout=True, note=">&-")

    # --- plain usage mistakes
    for args, ex, steps in [
        (["nosuchcommand"], "usage", []),
        (["info", "r20.onnx", "--bogus"], "usage", onnx),
        (["predict", "r20.onnx"], "usage", onnx),
        (["convert", "r20.onnx"], "usage", onnx),
        (["eval", "r20.onnx", "--data", "data", "--provider", "bogus"], "usage", [*onnx, cp("data")]),
        (["predict", "r20.onnx", "img.png", "--backend", "bogus"], "usage", [*onnx, *img]),
        (["predict", "resnet9999", "img.png"], "usage", img),
        (["export", "--depth", "20", "--weights", "imagenet", "-o", "o.onnx"], "error", []),
        (["convert", "c16.onnx", "--precision", "fp16"], "error", [cp("c16.onnx")]),
        (["check", "r20.onnx", "--reference", "r20.onnx"], "any", onnx),
        (["models", "--json"], "ok", []),
    ]:
        add("usage-misc", args, ex, *steps, extra=is_json if args == ["models", "--json"] else None)

    # --- issue 13: the parity gate, check --layers, int8 exclusions and repair
    data = [cp("data")]
    int8 = ["convert", "r20.onnx", "--precision", "int8", "-o", "o.onnx"]
    for args, ex, steps, note in [
        ([*int8, "--calib", "data", "--exclude", "layer9.conv1"], "usage", [*onnx, *data], "unknown module"),
        ([*int8, "--calib", "data", "--exclude", ""], "usage", [*onnx, *data], "empty module"),
        ([*int8, "--calib", "data", "--exclude", "[layer"], "usage", [*onnx, *data], "broken glob"),
        ([*int8, "--calib", "random", "--auto-exclude"], "usage", onnx, "auto-exclude without images"),
        ([*int8, "--calib", "data", "--auto-exclude"], "usage", [*onnx, *data], "no held-out images"),
        ([*int8, "--calib", "data", "--auto-exclude", "--max-excluded", "0"], "usage", [*onnx, *data], "bound 0"),
        ([*int8, "--calib", "data", "--int8-recipe", "cpu", "--high-precision", "fp16"], "usage", [*onnx, *data], ""),
        ([*int8, "--calib", "data", "--high-precision", "fp64"], "usage", [*onnx, *data], "unknown type"),
        ([*int8, "--calib", "data", "--high-precision", "fp32", "--fp16-io"], "usage", [*onnx, *data], ""),
        (["convert", "r20.onnx", "--precision", "fp16", "--exclude", "fc", "-o", "o.onnx"], "usage", onnx, ""),
        (["check", "r20.onnx", "--min-sqnr-db", "nan"], "usage", onnx, ""),
        (["check", "r20.onnx", "--min-retrieval", "2"], "usage", onnx, ""),
        (
            ["check", "c16.onnx", "--reference", "r20.onnx", "--batch-sizes", "1,3"],
            "usage",
            [*onnx, cp("c16.onnx")],
            "",
        ),
        (
            ["check", "c16.onnx", "--reference", "r20.onnx", "--layers", "--batch-sizes", "1"],
            "usage",
            [*onnx, cp("c16.onnx")],
            "",
        ),
        (["check", "r20.onnx", "--plot", "p.png"], "usage", onnx, "--plot without --layers"),
        (["check", "ident.onnx", "--layers"], "error", [cp("ident.onnx")], "foreign ONNX, no module names"),
        (["check", "x.plan", "--layers"], "error", [bad("random", "x.plan")], "an engine"),
        (
            ["check", "c16.onnx", "--reference", "x.onnx", "--layers"],
            "error",
            [cp("c16.onnx"), bad("random", "x.onnx")],
            "",
        ),
    ]:
        add("issue13", args, ex, *steps, note=note)

    # --- issue 14: stable windows, the budget search, OpenVINO, the live-server sweep, ship --tune
    down = "127.0.0.1:1"  # nothing listens on port 1
    fast = ["--iters", "3", "--warmup-s", "0", "--threads", "1"]
    for args, ex, steps, note in [
        (["bench", "r20.onnx", *fast, "--latency-budget", "0.001"], "error", onnx, "a budget nothing meets"),
        (["bench", "r20.onnx", "--latency-budget", "-3"], "usage", onnx, ""),
        (["bench", "r20.onnx", "--latency-budget", "nan"], "usage", onnx, ""),
        (["bench", "r20.onnx", "--latency-budget", "10", "--batch-sizes", "1,2"], "usage", onnx, ""),
        (["bench", "r20.onnx", "--stable", "--windows", "1"], "usage", onnx, ""),
        (["bench", "r20.onnx", "--stable", "--stability-pct", "0"], "usage", onnx, ""),
        (["bench", "r20.onnx", "--windows", "4"], "usage", onnx, "a --stable option without --stable"),
        (["bench", "r20.onnx", "--hint", "latency"], "usage", onnx, "--hint with no OpenVINO target"),
        (["bench", "r20.onnx", "--streams", "2"], "usage", onnx, "--streams with no TensorRT target"),
        (["bench", "r20.onnx", "--cuda-graphs"], "usage", onnx, "--cuda-graphs with no torch/TensorRT target"),
        (["bench", "--server", down, "--model", "m"], "usage", [], "a server that is down"),
        (["bench", "--server", down], "usage", [], "no --model"),
        (["bench", "--server", down, "--model", "m", "--concurrency", "0"], "usage", [], ""),
        (["bench", "--server", down, "--model", "m", "--concurrency", "a,b"], "usage", [], ""),
        (["bench", "--server", "host:port:x", "--model", "m"], "usage", [], "a malformed address"),
        (["bench", "--server", down, "--model", "m", "--iters", "3"], "usage", [], "a local option"),
        (["bench", "x.onnx", "--backend", "openvino"], "usage", [bad("random", "x.onnx")], "OpenVINO, garbage"),
        (["check", "r20.onnx", "--backend", "openvino", "--layers"], "usage", onnx, ""),
        (["ship", "r20.onnx", "--repo", "repo", "--tune"], "usage", onnx, "--tune without a budget"),
        (["ship", "r20.onnx", "--repo", "repo", "--latency-budget", "5"], "usage", onnx, "a budget without --tune"),
        (["ship", "r20.onnx", "--repo", "repo", "--tune", "--latency-budget", "0"], "usage", onnx, ""),
        (
            ["ship", "r20.onnx", "--repo", "repo", "--tune", "--latency-budget", "5", "--instances", "2"],
            "usage",
            onnx,
            "--tune with a fixed --instances",
        ),
    ]:
        add("issue14", args, ex, *steps, note=note)
    return cases


# tag, edits (None deletes a key; "__all__" clears every key), info's expectation, others' expectation
TAMPERS: list[tuple[str, dict[str, str | None]]] = [
    ("std_zero", {"std": "0,0,0"}),
    ("mean_nan", {"mean": "nan,0.5,0.5"}),
    ("std_inf", {"std": "inf,1,1"}),
    ("image_huge", {"image_size": "100000x100000", "crop_size": "100000x100000", "resize_size": "100000"}),
    ("image_zero", {"image_size": "0x0", "crop_size": "0x0", "resize_size": "0"}),
    ("classes_1000", {"num_classes": "1000", "labels": "imagenet"}),
    ("classes_huge", {"num_classes": HUGE}),
    ("widths_4000", {"widths": "4000,4000,4000"}),
    ("depth_bogus", {"depth": "-5", "model": "resnet9999"}),
    ("batch_zero", {"batch": "0"}),
    ("interp_bad", {"interpolation": "lanczos'; rm -rf /"}),
    ("uint8_claim", {"input_format": "uint8-nhwc"}),
    ("escape_free_text", {"weights_note": "\x1b[31mRED\x1b[0m\x07\r\nsecond line\x1b]0;title\x07"}),
    ("escape_key", {"\x1b]0;pwned\x07key\n": "x"}),
    ("escape_model", {"model": "\x1b[2Jresnet20"}),
    ("value_5mb", {"weights_note": "A" * 5_000_000}),
    ("no_metadata", {"__all__": None}),
]
_UNUSED_BY_PREDICT = ("depth_bogus", "escape_model", "value_5mb")
TAMPERS_EXPECT: list[tuple[str, str, str]] = [
    (
        t,
        "ok" if t in ("escape_free_text", "escape_key", "no_metadata") else "any",
        # keys predict does not use (depth, model, a note) are shown escaped, not refused
        "ok" if t in ("escape_free_text", "escape_key") else "any" if t in _UNUSED_BY_PREDICT else "error",
    )
    for t, _ in TAMPERS
]


# ------------------------------------------------------------------------------------- fixtures


def run_quiet(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> None:
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise SystemExit(f"fixture step failed: {shlex.join(argv)}\n{p.stderr[-2000:]}")


def png_bytes(width: int, height: int, rows: int | None = None) -> bytes:
    """A grayscale PNG; ``rows`` limits the IDAT to that many rows (a header-only bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    idat = b"".join(comp.compress(row) for _ in range(height if rows is None else rows)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


FIXTURE_PY = r"""
import os, pickle, sys, torch
from PIL import Image
from resnet_deploy.models.resnet import resnet20
torch.save(resnet20().state_dict(), "r20.pth")
class Evil:
    def __reduce__(self):
        return (os.mkdir, ("PWNED",))
torch.save({"conv1.weight": Evil()}, "evil_zip.pth")
with open("evil_pickle.pth", "wb") as f:
    pickle.dump({"conv1.weight": Evil()}, f, protocol=2)
Image.new("RGB", (32, 32), (200, 30, 30)).save("img.png")
Image.new("RGB", (1, 1), (1, 2, 3)).save("tiny.png")
Image.new("L", (40, 30), 128).save("gray.png")
Image.new("RGBA", (32, 32), (0, 0, 255, 0)).save("rgba.png")
Image.new("P", (32, 32), 3).save("pal.png")
Image.new("CMYK", (32, 32), (0, 50, 100, 0)).save("cmyk.jpg")
Image.new("RGB", (5000, 1), (9, 9, 9)).save("wide.png")
Image.new("I;16", (32, 32), 40000).save("i16.png")
frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0))]
frames[0].save("anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
Image.new("RGB", (32, 32), (0, 90, 0)).save("jpeg_as.png", format="JPEG")
for c in ("a", "b"):
    os.makedirs(f"data/{c}", exist_ok=True)
    for i in range(2):
        Image.new("RGB", (32 + 8 * i, 32), (100 * i, 60, 30 if c == "a" else 220)).save(f"data/{c}/{i}.png")
"""


def make_fixtures(fx: Path, exe: str, env: dict[str, str]) -> None:
    import onnx
    from onnx import TensorProto, helper

    fx.mkdir(parents=True)
    run_quiet([exe, "export", "--depth", "20", "--weights", "random", "--seed", "0", "-o", "r20.onnx"], fx, env)
    run_quiet([exe, "convert", "r20.onnx", "--precision", "fp16", "-o", "c16.onnx"], fx, env)
    run_quiet([sys.executable, "-c", FIXTURE_PY], fx, env)
    (fx / "text.png").write_text("not an image\n")
    (fx / "big.png").write_bytes(png_bytes(8000, 8000))
    (fx / "bomb.png").write_bytes(png_bytes(100000, 100000, rows=2))
    (fx / "bombdata" / "c").mkdir(parents=True)
    shutil.copy2(fx / "bomb.png", fx / "bombdata" / "c" / "bomb.png")
    base = onnx.load(str(fx / "r20.onnx"))
    for tag, edits in TAMPERS:
        m = onnx.ModelProto()
        m.CopyFrom(base)
        props = {p.key: p.value for p in m.metadata_props}
        if "__all__" in edits:
            props = {}
        for k, v in edits.items():
            if k == "__all__":
                continue
            if v is None:
                props.pop(k, None)
            else:
                props[k] = v
        del m.metadata_props[:]
        for k, v in props.items():
            m.metadata_props.add(key=k, value=v)
        onnx.save(m, str(fx / f"t_{tag}.onnx"))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 32, 32])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 32, 32])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "ident", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(fx / "ident.onnx"))


# ------------------------------------------------------------------------------------ running


def _limits() -> None:  # runs in the child between fork and exec
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def snapshot(d: Path) -> dict[str, tuple[str, int, int]]:
    seen: dict[str, tuple[str, int, int]] = {}
    for top, dirs, files in os.walk(d, followlinks=False):
        for name in dirs + files:
            p = os.path.join(top, name)
            with contextlib.suppress(OSError):
                st = os.lstat(p)
                kind = "d" if os.path.isdir(p) and not os.path.islink(p) else "f"
                seen[os.path.relpath(p, d)] = (kind, st.st_size, 0 if kind == "d" else st.st_mtime_ns)
    return seen


def show(arg: str, limit: int = 48) -> str:
    text = arg.encode("unicode_escape").decode("ascii") if UNSHOWN.search(arg) else arg
    if len(text) > limit:
        text = text[: limit - 12] + f"…[{len(arg)} chars]"
    return shlex.quote(text) if text else "''"


def command_line(case: Case) -> str:
    line = "resnet-deploy " + " ".join(show(a) for a in case.args)
    return line + " >&-" if case.closed_stdout else line


@dataclass
class Running:
    idx: int
    case: Case
    proc: subprocess.Popen[bytes]
    cwd: Path
    out: Path
    err: Path
    tmp: Path
    before: dict[str, tuple[str, int, int]]
    t0: float
    killed_at: float | None = None


def start(idx: int, case: Case, exe: str, work: Path, env: dict[str, str]) -> Running:
    cwd, tmp = work / f"{idx:03d}", work / f"{idx:03d}.tmpdir"
    cwd.mkdir()
    tmp.mkdir()
    for step in case.steps:
        step(cwd)
    out, err = work / f"{idx:03d}.out", work / f"{idx:03d}.err"
    before = snapshot(cwd)
    argv = [exe, *case.args]
    if case.closed_stdout:
        argv = ["bash", "-c", 'exec "$@" >&-', "resnet-deploy", *argv]
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=fo,
            stderr=fe,
            env={**env, "TMPDIR": str(tmp)},
            preexec_fn=_limits,
            start_new_session=True,
        )
    return Running(idx, case, proc, cwd, out, err, tmp, before, time.monotonic())


def judge(r: Running, rc: int, seconds: float, rss_kib: int, timed_out: bool, lingering: bool) -> Result:
    case = r.case
    out = r.out.read_bytes().decode("utf-8", "replace")
    err = r.err.read_bytes().decode("utf-8", "replace")
    after = snapshot(r.cwd)
    new = sorted(p for p in after if p not in r.before)
    changed = sorted(p for p in r.before if p in after and after[p] != r.before[p] and after[p][0] == "f")
    changed = [p for p in changed if not case.may_rewrite or Path(p).name != case.may_rewrite]
    gone = sorted(p for p in r.before if p not in after)
    temps = [p for p in new if os.path.basename(p).endswith(".tmp") or ".tmp." in os.path.basename(p)]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    failed = rc != 0
    why: list[str] = []
    if timed_out:
        why.append(f"hang: still running after {case.timeout:.0f} s, killed")
    elif rc < 0:
        why.append(f"killed by signal {-rc}")
    if lingering:
        why.append("left processes running after it exited")
    if "Traceback (most recent call last)" in err:
        why.append("Python traceback on stderr")
    for stream, text in (("stderr", err), ("stdout", out)):
        m = CONTROL.search(text)
        if m:
            why.append(f"raw control character U+{ord(m.group()):04X} on {stream}")
    if temps:
        why.append("left temp files: " + ", ".join(show(t, 60) for t in temps[:3]))
    if case.expect == "ok" and failed:
        why.append(f"exit {rc}, expected 0")
    if case.expect in ("usage", "error") and not failed:
        why.append("exit 0, expected an error")
    if failed and not timed_out:
        if case.expect == "usage" and rc != 2:
            why.append(f"exit {rc}, expected 2 (usage error)")
        if len(errors) != 1:
            why.append(f"{len(errors)} 'error:' lines on stderr, expected 1")
        elif lines[-1] != errors[0]:
            why.append("the error is not one last line (wrapped, or followed by more output)")
        if any(re.match(r"error: unexpected \w+", e) for e in errors):
            why.append("'unexpected <Exception>' error")
        leftovers = [p for p in new if p not in temps]
        if leftovers:
            why.append("left new files: " + ", ".join(show(p, 60) for p in leftovers[:3]))
        if changed or gone:
            why.append("changed/removed existing files: " + ", ".join(show(p, 60) for p in (changed + gone)[:3]))
    if not failed and case.expect in ("ok", "any"):
        if errors:
            why.append("exit 0 with an 'error:' line")
        if not case.closed_stdout and not out.strip():
            why.append("exit 0 with nothing on stdout")
    if rss_kib > 4 * 1024 * 1024:
        why.append(f"peak RSS {rss_kib / 1024:.0f} MiB")
    if case.extra is not None:
        extra = case.extra(r.cwd, out, err)
        if extra:
            why.append(extra)
    last = lines[-1] if lines else ""
    return Result(
        id=r.idx,
        category=case.category,
        command=command_line(case),
        expect=case.expect,
        note=case.note,
        exit=rc,
        seconds=round(seconds, 2),
        peak_rss_mib=round(rss_kib / 1024, 1),
        verdict="broken" if why else "held",
        why="; ".join(why),
        stderr_last=last[:400],
        stderr_tail=err[-1500:],
        stdout_head=out[:300],
    )


def run_all(cases: list[Case], exe: str, work: Path, env: dict[str, str], jobs: int, keep: bool) -> list[Result]:
    results: list[Result] = []
    pending = list(enumerate(cases, 1))
    running: list[Running] = []
    while pending or running:
        while pending and len(running) < jobs:
            idx, case = pending.pop(0)
            why = case.skip
            if not why:
                try:
                    running.append(start(idx, case, exe, work, env))
                    continue
                except OSError as e:  # the sweep's own fixture step failed: say so, don't judge the tool
                    why = f"skipped: setting the case up failed ({e})"
            skipped = Result(
                idx,
                case.category,
                command_line(case),
                case.expect,
                case.note,
                None,
                0.0,
                0.0,
                "skipped",
                why,
                "",
                "",
                "",
            )
            results.append(skipped)
        time.sleep(0.05)
        for r in list(running):
            now = time.monotonic()
            pid, status, usage = os.wait4(r.proc.pid, os.WNOHANG)
            if pid == 0:
                if r.killed_at is None and now - r.t0 > r.case.timeout:
                    r.killed_at = now
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(r.proc.pid, signal.SIGTERM)
                elif r.killed_at is not None and now - r.killed_at > 5:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(r.proc.pid, signal.SIGKILL)
                continue
            rc = os.waitstatus_to_exitcode(status)
            r.proc.returncode = rc
            lingering = False
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(r.proc.pid, 0)
                lingering = r.killed_at is None
                os.killpg(r.proc.pid, signal.SIGKILL)
            res = judge(r, rc, now - r.t0, usage.ru_maxrss, r.killed_at is not None, lingering)
            results.append(res)
            running.remove(r)
            mark = "ok " if res.verdict == "held" else "BAD"
            print(
                f"[{len(results):3d}/{len(cases)}] {mark} {res.seconds:5.1f}s exit={rc:<4} {res.command[:90]}",
                flush=True,
            )
            if res.verdict == "broken":
                print(f"          -> {res.why}", flush=True)
            if not keep:
                for p in (r.cwd, r.tmp):
                    with contextlib.suppress(OSError):
                        _make_writable(p)
                    shutil.rmtree(p, ignore_errors=True)
                r.out.unlink(missing_ok=True)
                r.err.unlink(missing_ok=True)
    return sorted(results, key=lambda x: x.id)


def _make_writable(p: Path) -> None:
    for top, dirs, _ in os.walk(p):
        for d in dirs:
            q = Path(top) / d
            if not q.is_symlink():
                q.chmod(0o755)


# ------------------------------------------------------------------------------------ reporting


def environment(exe: str, env: dict[str, str]) -> dict[str, str]:
    def sh(argv: list[str]) -> str:
        try:
            return subprocess.run(
                argv, capture_output=True, text=True, timeout=120, env=env, cwd=REPO_ROOT
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    commit = sh(["git", "rev-parse", "--short=12", "HEAD"])
    if dirty:
        commit += f" (plus uncommitted changes in {len(dirty.splitlines())} tracked files)"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} logical cores, load average {os.getloadavg()[0]:.1f} at start",
        "os": platform.platform(),
        "python": platform.python_version(),
        "package": sh([exe, "--version"]),
        "git": commit,
        "user": "root (permission-bit cases skipped)" if os.geteuid() == 0 else "non-root",
    }


def md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace("\n", " ")


def write_markdown(
    path: Path, env_info: dict[str, str], command: str, results: list[Result], wall: float, jobs: int
) -> None:
    cats: dict[str, list[Result]] = {}
    for r in results:
        cats.setdefault(r.category, []).append(r)
    tried = [r for r in results if r.verdict != "skipped"]
    broken = [r for r in results if r.verdict == "broken"]
    lines = [
        "# Bad-input sweep",
        "",
        "Every case runs the installed `resnet-deploy` in a fresh folder of its own (its output folder),",
        f"under a {AS_LIMIT // GIB} GiB address-space cap (RLIMIT_AS) and a timeout (60 s; 45 s for `serve`, which must",
        "refuse its arguments before Triton starts). A case **held** when the promise kept: a failing",
        "command exits non-zero (exactly 2 where the README says usage error: out-of-range numbers, unknown",
        "values, missing artifacts) with exactly one `error: ...` line, last on stderr, no traceback, no",
        "`unexpected <Exception>`, no raw control characters on stdout/stderr, no new or changed file in its",
        "folder (hidden `.*.tmp` included), no process left behind; an expected success exits 0 with output;",
        "'any' cases may do either but must stay clean. Peak RSS is the child's own (`wait4`).",
        "",
        "## Environment",
        "",
        *[f"- {k}: {v}" for k, v in env_info.items()],
        f"- parallel cases: {jobs}, OMP_NUM_THREADS=1, RESNET_DEPLOY_OFFLINE=1",
        f"- sweep wall time: {wall / 60:.1f} min",
        "",
        "```",
        command,
        "```",
        "",
        f"**{len(tried)} cases tried, {len(tried) - len(broken)} held, {len(broken)} broken**"
        + (f", {len(results) - len(tried)} skipped." if len(results) != len(tried) else "."),
        "",
        "## Summary by category",
        "",
        "| category | tried | held | broken | skipped | slowest s | max RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for cat, rs in cats.items():
        t = [r for r in rs if r.verdict != "skipped"]
        b = sum(r.verdict == "broken" for r in rs)
        slow = max((r.seconds for r in t), default=0.0)
        rss = max((r.peak_rss_mib for r in t), default=0.0)
        lines.append(f"| {cat} | {len(t)} | {len(t) - b} | {b} | {len(rs) - len(t)} | {slow:.1f} | {rss:.0f} |")
    lines += ["", "## Broken cases", ""]
    if not broken:
        lines.append("None.")
    for r in broken:
        lines += [
            f"### #{r.id} {r.category}: {md_cell(r.note)}",
            "",
            f"- command: `{md_cell(r.command)}`",
            f"- expected {r.expect}; exit {r.exit}, {r.seconds:.1f} s, peak RSS {r.peak_rss_mib:.0f} MiB",
            f"- why: {md_cell(r.why)}",
            f"- stderr's last line: `{md_cell(r.stderr_last.encode('unicode_escape').decode('ascii')[:300]) or '(empty)'}`",
            "",
        ]
    skipped = [r for r in results if r.verdict == "skipped"]
    if skipped:
        lines += ["## Skipped", ""] + [f"- #{r.id} `{md_cell(r.command)}`: {r.why}" for r in skipped] + [""]
    lines += [
        "## Every case",
        "",
        "<details><summary>all cases</summary>",
        "",
        "| # | category | command | expect | exit | s | RSS MiB | verdict |",
        "|---:|---|---|---|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.id} | {r.category} | `{md_cell(r.command)}` | {r.expect} | {r.exit if r.exit is not None else '-'} "
            f"| {r.seconds:.1f} | {r.peak_rss_mib:.0f} | {r.verdict} |"
        )
    lines += ["", "</details>", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


# ------------------------------------------------------------------------------------------ main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report (default: %(default)s)")
    ap.add_argument("--json", type=Path, default=None, help="Also write every case as JSON here.")
    ap.add_argument("--quick", action="store_true", help="Only the first 2 cases of each category.")
    ap.add_argument("--jobs", type=int, default=2, help="Cases run at once (default: %(default)s).")
    ap.add_argument("--only", default="", help="Only categories containing this text.")
    ap.add_argument("--keep", action="store_true", help="Keep the scratch folder and each case's folder.")
    args = ap.parse_args(argv)

    exe = shutil.which("resnet-deploy", path=str(Path(sys.executable).parent)) or shutil.which("resnet-deploy")
    if exe is None:
        print("bad_input_sweep: no resnet-deploy entry point (pip install -e .)", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "RESNET_DEPLOY_DEBUG")}
    env.update(OMP_NUM_THREADS="1", RESNET_DEPLOY_OFFLINE="1", PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="bad_inputs_"))
    try:
        print(f"scratch folder {scratch}; exporting the ResNet-20 and making fixtures ...", flush=True)
        make_fixtures(scratch / "fixtures", exe, env)
        cases = build_cases(Fixtures(scratch / "fixtures"), os.geteuid() == 0)
        if args.only:
            cases = [c for c in cases if args.only in c.category]
        if args.quick:
            seen: dict[str, int] = {}
            quick = []
            for c in cases:
                seen[c.category] = seen.get(c.category, 0) + 1
                if seen[c.category] <= 2:
                    quick.append(c)
            cases = quick
        print(f"{len(cases)} cases, {args.jobs} at a time", flush=True)
        env_info = environment(exe, env)
        (scratch / "cases").mkdir()
        results = run_all(cases, exe, scratch / "cases", env, max(1, args.jobs), args.keep)
    finally:
        if not args.keep:
            _make_writable(scratch)
            shutil.rmtree(scratch, ignore_errors=True)
    wall = time.monotonic() - t0
    shown = [a for a in (argv if argv is not None else sys.argv[1:])]
    command = "OMP_NUM_THREADS=1 python scripts/bad_input_sweep.py" + ("".join(" " + shlex.quote(a) for a in shown))
    write_markdown(args.out, env_info, command, results, wall, args.jobs)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "environment": env_info,
            "command": command,
            "wall_seconds": round(wall, 1),
            "cases": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    broken = sum(r.verdict == "broken" for r in results)
    tried = sum(r.verdict != "skipped" for r in results)
    print(f"{tried} tried, {tried - broken} held, {broken} broken in {wall / 60:.1f} min; report: {args.out}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
