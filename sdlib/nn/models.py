"""The networks of Section 5: torchvision's ResNets as the paper used them, a CIFAR-stem variant and
a small fast CNN.

* ``resnet18``/``resnet34``/``resnet50``: ``torchvision.models.resnetXX(weights=None,
  num_classes=p)``, exactly the paper's (and the authors' code's) model: the ImageNet stem (7x7
  stride-2 convolution and 3x3 stride-2 max-pool) applied to 32x32 inputs, randomly initialised,
  a ``p``-way last linear layer. For grayscale inputs (Fashion-MNIST, digits) the first convolution
  takes 1 channel instead of 3 (same shape otherwise, torchvision's initialisation).
* ``resnetXX_cifar``: the same network with the usual CIFAR stem: a 3x3 stride-1 first convolution
  and no max-pool (the network then sees 32x32 feature maps in its first stage).
* ``small_cnn``: three 3x3 convolutions (32, 64, 128 channels) with GroupNorm (8 groups) and ReLU,
  2x2 max-pools after the first two, global average pooling and a linear layer. No BatchNorm, so
  it has no running statistics and several copies can be trained together with ``torch.func.vmap``.
* ``small_cnn_spatial``: the same convolutions with a head that keeps spatial information: 3x3
  adaptive average pooling, flattened (128 x 9 features) into the linear layer. On 28x28 inputs the
  global-average-pooling head of ``small_cnn`` underfits (it discards where a feature is); this one
  is the CPU stand-in of the chapter (step-1 validation accuracy above 0.8 on Fashion-MNIST).
"""

from __future__ import annotations

import torch
from torch import nn

from sdlib.nn.config import ARCHS

__all__ = ["build_model", "SmallCNN", "has_batchnorm"]


class SmallCNN(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int = 32, pool: int = 1) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.GroupNorm(8, w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GroupNorm(8, 2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GroupNorm(8, 4 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(pool), nn.Flatten(),
        )
        self.fc = nn.Linear(4 * w * pool * pool, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build_model(arch: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """A freshly (randomly) initialised network; seed the global RNG first for a reproducible draw."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch={arch!r}; valid architectures: {', '.join(ARCHS)}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels must be 1 or 3, got in_channels={in_channels!r}")
    if arch == "small_cnn":
        return SmallCNN(in_channels, num_classes)
    if arch == "small_cnn_spatial":
        return SmallCNN(in_channels, num_classes, pool=3)
    import torchvision

    base = arch.removesuffix("_cifar")
    model = getattr(torchvision.models, base)(weights=None, num_classes=num_classes)
    if arch.endswith("_cifar"):
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if in_channels != 3 or arch.endswith("_cifar"):
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
    return model


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
