"""The zoo against torchvision's layout, the paper's numbers and the architecture's invariants."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from resnet_deploy import ConfigError, create_model, list_models, model_stats
from resnet_deploy.models import count_params
from resnet_deploy.models.resnet import BasicBlock, Bottleneck, PadShortcut, ResNet

IMAGENET = ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
CIFAR = ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]

# torchvision's parameter counts and GFLOPS (= GMACs) column.
TORCHVISION_PARAMS = dict(zip(IMAGENET, [11_689_512, 21_797_672, 25_557_032, 44_549_160, 60_192_808], strict=True))
TORCHVISION_GMACS = dict(zip(IMAGENET, [1.81, 3.66, 4.09, 7.80, 11.51], strict=True))
# The paper's Table 1 FLOPs row (multiply-adds, x10^9), for the original (v1) design.
PAPER_GFLOPS = dict(zip(IMAGENET, [1.8, 3.6, 3.8, 7.6, 11.3], strict=True))


def test_list_models_is_the_zoo() -> None:
    assert list_models() == IMAGENET + CIFAR
    assert list_models("cifar10") == CIFAR


@pytest.mark.parametrize("name", IMAGENET)
def test_state_dict_matches_torchvision_exactly(name: str, torchvision_layout: dict[str, Any]) -> None:
    net = create_model(name, weights="random")
    ours = [[k, list(v.shape)] for k, v in net.state_dict().items()]
    assert ours == torchvision_layout[name]["state_dict"]  # same names, shapes and order
    assert count_params(net) == torchvision_layout[name]["params"] == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", IMAGENET)
def test_torchvision_layout_loads_strict(name: str, torchvision_layout: dict[str, Any]) -> None:
    # A state_dict built from torchvision's layout alone loads with strict=True.
    state = {k: torch.zeros(shape) for k, shape in torchvision_layout[name]["state_dict"]}
    state = {k: v.long() if k.endswith("num_batches_tracked") else v for k, v in state.items()}
    net = create_model(name, weights="random")
    result = net.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert float(net.conv1.weight.detach().abs().sum()) == 0.0


@pytest.mark.parametrize("name", IMAGENET)
def test_macs_match_torchvision_v15_and_paper_v1(name: str) -> None:
    params, macs = model_stats(name)
    assert params == TORCHVISION_PARAMS[name]
    assert round(macs / 1e9, 2) == pytest.approx(TORCHVISION_GMACS[name], abs=0.006)
    _, macs_v1 = model_stats(name, variant="v1")
    assert abs(macs_v1 / 1e9 - PAPER_GFLOPS[name]) / PAPER_GFLOPS[name] < 0.03
    if name in ("resnet18", "resnet34"):
        assert macs_v1 == macs  # basic blocks have no 1x1 to move the stride to
    else:
        assert macs_v1 < macs  # v1 strides the 1x1, so its 3x3 runs at a quarter of the pixels


def test_cifar_parameter_counts_match_paper_table6() -> None:
    # Paper, Table 6: ResNet-20 0.27M, 32 0.46M, 44 0.66M, 56 0.85M, 110 1.7M.
    expected = {"resnet20": 0.27e6, "resnet32": 0.46e6, "resnet44": 0.66e6, "resnet56": 0.85e6, "resnet110": 1.7e6}
    for name, want in expected.items():
        params, _ = model_stats(name)
        assert abs(params - want) / want < 0.02, (name, params)
        net = create_model(name, weights="random")
        assert len(net.stages()) == 3 and [s[0].conv1.out_channels for s in net.stages()] == [16, 32, 64]
        n = (net.cfg.depth - 2) // 6  # type: ignore[union-attr]
        assert all(len(s) == n for s in net.stages())
        assert net.fc.out_features == 10
        assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in net.modules())  # option A


def _stage_shapes(net: ResNet, size: int) -> list[tuple[int, ...]]:
    shapes = []
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        shapes.append(tuple(x.shape[1:]))
        for stage in net.stages():
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
    return shapes


@pytest.mark.parametrize("variant", ["v1.5", "v1"])
def test_table1_output_sizes(variant: str) -> None:
    # Table 1: conv2_x 56x56, conv3_x 28x28, conv4_x 14x14, conv5_x 7x7 at 224x224.
    r18 = create_model("resnet18", weights="random", variant=variant)
    assert _stage_shapes(r18, 224) == [(64, 56, 56), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
    r50 = create_model("resnet50", weights="random", variant=variant)
    assert _stage_shapes(r50, 224) == [(64, 56, 56), (256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)]
    cifar = create_model("resnet20", weights="random")
    assert _stage_shapes(cifar, 32) == [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_bottleneck_geometry_and_stride_placement() -> None:
    v15 = create_model("resnet50", weights="random", variant="v1.5")
    v1 = create_model("resnet50", weights="random", variant="v1")
    for net in (v15, v1):
        for m in net.modules():
            if isinstance(m, Bottleneck):
                # 1x1 convolutions never pad (padding would grow the feature map).
                assert m.conv1.padding == (0, 0) and m.conv3.padding == (0, 0) and m.conv2.padding == (1, 1)
    first = v15.layer2[0]
    assert (first.conv1.stride, first.conv2.stride) == ((1, 1), (2, 2))
    first = v1.layer2[0]
    assert (first.conv1.stride, first.conv2.stride) == ((2, 2), (1, 1))
    # Same parameters, different function.
    assert [p.shape for p in v15.parameters()] == [p.shape for p in v1.parameters()]
    v1.load_state_dict(v15.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(v15(x), v1(x))


def test_shortcut_options() -> None:
    a = create_model("resnet18", weights="random", shortcut="A")
    b = create_model("resnet18", weights="random", shortcut="B")
    c = create_model("resnet18", weights="random", shortcut="C")
    blocks = lambda net: [m for m in net.modules() if isinstance(m, BasicBlock)]  # noqa: E731
    # A: parameter-free; only the 3 dimension-changing blocks have a (padding) shortcut.
    assert sum(isinstance(blk.downsample, PadShortcut) for blk in blocks(a)) == 3
    assert not any(isinstance(blk.downsample, nn.Sequential) for blk in blocks(a))
    # B: projections exactly where dimensions change; C: on all 8 blocks.
    assert sum(blk.downsample is not None for blk in blocks(b)) == 3
    assert sum(isinstance(blk.downsample, nn.Sequential) for blk in blocks(c)) == 8
    assert count_params(a) < count_params(b) < count_params(c)
    # Projection params: 1x1 convs 64->128, 128->256, 256->512 plus their BN affine (2 per channel).
    proj = 64 * 128 + 128 * 256 + 256 * 512 + 2 * (128 + 256 + 512)
    assert count_params(b) - count_params(a) == proj
    for net in (a, b, c):
        with torch.no_grad():
            assert net(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def test_option_a_pads_zeros_and_subsamples() -> None:
    pad = PadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 9, 9)  # odd size: must match a stride-2 conv's output (5x5)
    y = pad(x)
    assert y.shape == (2, 32, 5, 5)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0
    conv = nn.Conv2d(16, 16, 3, stride=2, padding=1)
    assert conv(x).shape[-2:] == y.shape[-2:]
    assert not list(pad.parameters())


def test_he_initialisation_and_zero_init_residual() -> None:
    net = create_model("resnet50", weights="random", seed=1)
    conv = net.layer3[0].conv2  # 256 -> 256, 3x3: fan_out = 256 * 9
    expected_std = (2.0 / (256 * 9)) ** 0.5
    assert float(conv.weight.detach().std()) == pytest.approx(expected_std, rel=0.02)
    assert float(net.bn1.weight.detach().min()) == 1.0 and float(net.bn1.bias.detach().abs().max()) == 0.0

    zero = create_model("resnet20", weights="random", zero_init_residual=True)
    assert all(float(m.bn2.weight.detach().abs().max()) == 0.0 for m in zero.modules() if isinstance(m, BasicBlock))
    # Every block starts as the identity: a block without a shortcut maps relu(x) to itself.
    block = zero.layer1[1]
    x = torch.relu(torch.randn(1, 16, 8, 8))
    with torch.no_grad():
        assert torch.allclose(block(x), x)
    z50 = create_model("resnet50", weights="random", zero_init_residual=True)
    assert all(float(m.bn3.weight.detach().abs().max()) == 0.0 for m in z50.modules() if isinstance(m, Bottleneck))


def test_seeded_construction_is_deterministic_and_leaves_global_rng() -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = create_model("resnet20", weights="random", seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)  # the caller's RNG stream is untouched
    b = create_model("resnet20", weights="random", seed=7)
    c = create_model("resnet20", weights="random", seed=8)
    assert a.weights_info.state_sha256 == b.weights_info.state_sha256 != c.weights_info.state_sha256  # type: ignore[union-attr]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"model": 51},
            "unknown depth 51: choose one of 18, 34, 50, 101, 152 (ImageNet) or 20, 32, 44, 56, 110 (CIFAR)",
        ),
        ({"model": "resnet-9"}, "unknown depth"),
        ({"model": 50, "variant": "v2"}, "unknown variant 'v2': choose one of v1.5, v1"),
        ({"model": 50, "shortcut": "D"}, "unknown shortcut 'D': choose one of A, B, C"),
        ({"model": 50, "num_classes": 0}, "num_classes must be a positive integer, got 0"),
        ({"model": 20, "num_classes": -3}, "num_classes must be a positive integer"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], message: str) -> None:
    model = kwargs.pop("model")
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        create_model(model, weights="random", **kwargs)
    assert issubclass(ConfigError, ValueError)


def test_names_and_depths_resolve_alike() -> None:
    for spelling in (50, "50", "resnet50", "ResNet-50", "RESNET_50"):
        assert create_model(spelling, weights="random").model_name == "resnet50"


def test_custom_classes_and_width() -> None:
    net = create_model("resnet20", weights="random", num_classes=7, widths=(8, 16, 32))
    with torch.no_grad():
        assert net(torch.randn(3, 3, 32, 32)).shape == (3, 7)
    assert net.cfg is not None and net.cfg.num_classes == 7 and net.cfg.labels == "custom"
    with pytest.raises(ConfigError, match="widths"):
        create_model("resnet20", weights="random", widths=(8, 16))
