"""The policy network: a ResNet for depth + validity input, written here (no torchvision).

``build_model("resnet18")`` is the standard ResNet18 (BasicBlock, [2, 2, 2, 2], 64-128-256-512,
7x7 stride-2 stem, max-pool, global average pool, linear head) over the preprocessing contract's
channels: depth and validity (``in_channels=2``). Any input height and width work (the pool is
global), so the input can keep the camera's aspect.
``resnet10`` is the same with one block per stage. Initialisation is Kaiming and seeded, so a
model built twice with the same seed has identical weights whatever the global RNG state.
"""

from __future__ import annotations

import torch
from torch import nn

from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.preprocessing import CHANNELS


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (projection when the shape changes)."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with BasicBlocks for (N, in_channels, H, W) input and ``num_classes`` logits."""

    def __init__(self, layers: tuple[int, ...], num_classes: int = len(ACTIONS), in_channels: int = 1,
                 widths: tuple[int, ...] = (64, 128, 256, 512), seed: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages, in_planes = [], widths[0]
        for index, (blocks, planes) in enumerate(zip(layers, widths)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(in_planes, planes, stride)]
            stage += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        self._init_weights(seed)

    def _init_weights(self, seed: int) -> None:
        """Kaiming-normal convolutions, unit BN (zero for each block's last BN), small linear head."""
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                            generator=generator)
                elif isinstance(module, nn.BatchNorm2d):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
                elif isinstance(module, nn.Linear):
                    nn.init.kaiming_uniform_(module.weight, a=5 ** 0.5, generator=generator)
                    module.bias.zero_()
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    module.bn2.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_ARCHS: dict[str, tuple[int, ...]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet10": (1, 1, 1, 1),
}


def arch_names() -> list[str]:
    return sorted(_ARCHS)


def build_model(arch: str, num_classes: int = len(ACTIONS), seed: int = 0, in_channels: int = len(CHANNELS)) -> ResNet:
    """A freshly initialised network by name (see ``arch_names()``), by default over the contract's channels."""
    if arch not in _ARCHS:
        raise ValueError(f"unknown architecture '{arch}' (known: {', '.join(arch_names())})")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, got {in_channels}")
    return ResNet(_ARCHS[arch], num_classes=num_classes, in_channels=in_channels, seed=seed)


def parts(model: ResNet, names: tuple[str, ...] | list[str]) -> list[nn.Module]:
    """The modules behind part names: ``stem`` (first convolution and its BatchNorm), ``layer1``..``layer4``."""
    table = {"stem": [model.conv1, model.bn1], "layer1": [model.layer1], "layer2": [model.layer2],
             "layer3": [model.layer3], "layer4": [model.layer4]}
    return [module for name in names for module in table[name]]
