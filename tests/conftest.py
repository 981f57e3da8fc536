"""Shared fixtures. Every test runs with an empty torch.hub cache and downloads switched off, so
results never depend on what a machine has cached and no test touches the network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_hub(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("RESNET_DEPLOY_OFFLINE", "1")
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # honour TORCH_HOME even if set_dir ran
    return home


@pytest.fixture(scope="session")
def torchvision_layout() -> dict[str, Any]:
    """torchvision 0.29.1's resnet18..152 state_dict entries, in order (from shared/fixtures)."""
    data: dict[str, Any] = json.loads((FIXTURES / "torchvision_resnet_state_dicts.json").read_text())
    return data["models"]
