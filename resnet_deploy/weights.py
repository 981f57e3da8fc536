"""Kept for its import path: the weights code lives in ``models/weights.py``."""

from .models.weights import (
    OFFLINE_ENV,
    WeightsInfo,
    WeightsSpec,
    apply_state_dict,
    describe_model,
    fetch_checkpoint,
    hub_checkpoint_path,
    imagenet_fit_problem,
    load_weights,
    read_state_dict,
    sha256_file,
    state_dict_sha256,
)

__all__ = [
    "OFFLINE_ENV",
    "WeightsInfo",
    "WeightsSpec",
    "apply_state_dict",
    "describe_model",
    "fetch_checkpoint",
    "hub_checkpoint_path",
    "imagenet_fit_problem",
    "load_weights",
    "read_state_dict",
    "sha256_file",
    "state_dict_sha256",
]
