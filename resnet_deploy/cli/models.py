"""``models``: the model zoo as a table or JSON."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from ._common import _emit_json, out


def models_cmd(
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List the model zoo: the paper's ImageNet ResNets (Table 1) and CIFAR ResNets (section 4.2)."""
    from ..models.registry import get_model_cfg, list_models, model_stats

    rows = []
    for name in list_models():
        cfg = get_model_cfg(name)
        params, macs = model_stats(name)
        row: dict[str, Any] = {
            "name": name,
            "depth": cfg.depth,
            "dataset": cfg.dataset,
            "block": cfg.block,
            "layers": list(cfg.layers),
            "variant": "v1.5",
            "shortcut": cfg.default_shortcut,
            "params": params,
            "gmacs": round(macs / 1e9, 3),
            "input_size": list(cfg.input_size),
            "num_classes": cfg.num_classes,
            "weights": [{"tag": w.tag, "top1": w.top1, "top5": w.top5} for w in cfg.weights],
        }
        if cfg.block == "bottleneck":
            row["gmacs_v1"] = round(model_stats(name, variant="v1")[1] / 1e9, 3)
        rows.append(row)
    if json_out:
        _emit_json(rows)
        return
    table = Table(title="resnet-deploy model zoo (MACs per image at the native input size)")
    for col, justify in (
        ("name", "left"),
        ("depth", "right"),
        ("dataset", "left"),
        ("block", "left"),
        ("layers", "left"),
        ("variant", "left"),
        ("shortcut", "center"),
        ("params", "right"),
        ("GMACs", "right"),
        ("input", "right"),
        ("ImageNet top-1", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        gmacs = f"{r['gmacs']:.2f}" if r["gmacs"] >= 0.995 else f"{r['gmacs']:.3f}"
        if "gmacs_v1" in r:
            gmacs += f" (v1 {r['gmacs_v1']:.2f})"
        variant = "v1.5 / v1" if r["block"] == "bottleneck" else "v1.5 (= v1)"
        top1 = ", ".join(f"{w['top1']:.2f}" for w in r["weights"]) or "-"
        table.add_row(
            r["name"],
            str(r["depth"]),
            r["dataset"],
            r["block"],
            "-".join(map(str, r["layers"])),
            variant,
            r["shortcut"],
            f"{r['params']:,}",
            gmacs,
            "x".join(map(str, r["input_size"][1:])),
            top1,
        )
    out.print(table)
