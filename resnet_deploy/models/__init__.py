"""The model zoo: the paper's ImageNet and CIFAR ResNets, built like torchvision's."""

from .cfg import ModelCfg, WeightSource
from .profile import count_macs, count_params
from .registry import create_model, get_model_cfg, list_models, model_stats, resolve_model_name
from .resnet import BasicBlock, Bottleneck, ResNet

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ModelCfg",
    "ResNet",
    "WeightSource",
    "count_macs",
    "count_params",
    "create_model",
    "get_model_cfg",
    "list_models",
    "model_stats",
    "resolve_model_name",
]
