"""A real trained model on real images, offline: scikit-learn's handwritten digits.

1,797 real 8x8 grayscale scans (10 classes) ship inside scikit-learn. They are written out as PNG
files in the ImageFolder layout, go through the toolkit's own preprocessing (upsampled to the
CIFAR ResNet's 32x32), and train a narrow ResNet-20 from the zoo with a fixed seed in ~15 s on
2 CPU cores. The accuracy gate (tests/test_accuracy.py) and benchmarks/accuracy.py both use it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from resnet_deploy import create_model, get_model_cfg
from resnet_deploy.data import Preprocess
from resnet_deploy.models.resnet import ResNet

WIDTHS = (8, 16, 32)  # a narrow ResNet-20: the paper's 16/32/64 halved
EPOCHS = 8
TEST_SIZE = 360


@dataclass
class Digits:
    model: ResNet
    train_dir: Path  # ImageFolder: <dir>/<digit>/<n>.png
    test_dir: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    torch_accuracy: float
    train_seconds: float


def _write_split(root: Path, images: np.ndarray, labels: np.ndarray, index: np.ndarray) -> None:
    from PIL import Image

    for i in index:
        folder = root / str(int(labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{int(i):04d}.png")


def train_digits(workdir: Path, *, seed: int = 0, epochs: int = EPOCHS, threads: int = 2) -> Digits:
    from sklearn.datasets import load_digits

    torch.set_num_threads(threads)
    digits = load_digits()
    images = np.rint(digits.images / 16.0 * 255.0).astype(np.uint8)  # 0-16 -> 0-255 grayscale
    labels = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(images))
    test_idx, train_idx = np.sort(order[:TEST_SIZE]), np.sort(order[TEST_SIZE:])
    train_dir, test_dir = workdir / "train", workdir / "test"
    _write_split(train_dir, images, labels, train_idx)
    _write_split(test_dir, images, labels, test_idx)

    # The toolkit's own preprocessing, from the model's config (resize 8 -> 32, CIFAR mean/std).
    pre = Preprocess.from_cfg(get_model_cfg("resnet20"))
    x = np.stack([pre(im) for im in images])
    x_train, y_train, x_test, y_test = x[train_idx], labels[train_idx], x[test_idx], labels[test_idx]

    t0 = time.perf_counter()
    net = create_model("resnet20", weights="random", widths=WIDTHS, seed=seed).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    batch = 64
    steps = epochs * ((len(x_train) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=steps, pct_start=0.25)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch):
            b = perm[i : i + batch]
            loss = torch.nn.functional.cross_entropy(net(xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    return Digits(net, train_dir, test_dir, x_train, y_train, x_test, y_test, acc, time.perf_counter() - t0)
