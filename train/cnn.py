"""``cnn``: our edge model, a compact ResNet for 48x48 gray faces.

Plain 3x3 convolutions, batch norm and ReLU only: the operators every backend (onnxruntime's int8 and
AMX kernels, TensorRT, a Jetson's DLA) runs fastest, and that fold into single fused convolutions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class CNNConfig:
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    stem: tuple[tuple[int, int], ...] = ((32, 1), (32, 2))  # (channels, stride) of each stem conv
    in_channels: int = 1
    num_classes: int = 7
    dropout: float = 0.2
    # Each residual block starts as the identity (its last BatchNorm's scale at zero). AdamW copes; SGD at the
    # published recipes' 0.01 barely moves those scales and stalls at the majority class (train/RESULTS.md, run 10).
    zero_init_residual: bool = True
    # Blur (a fixed 3x3 binomial filter) before every stride-2 convolution, as in Zhang 2019, "Making
    # convolutional networks shift-invariant again": a strided convolution aliases, so a face moved by one
    # pixel gives other features and, too often, another label (benchmarks/RESULTS.md, framing stability).
    # Adds no parameters and ~1 % of the MACs; the weights keep their names and shapes.
    antialias: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "CNNConfig":
        def frozen(v):
            return tuple(frozen(i) for i in v) if isinstance(v, (list, tuple)) else v
        return cls(**{k: frozen(v) for k, v in values.items() if k in cls.__dataclass_fields__})


class BlurredConv2d(nn.Conv2d):
    """A strided convolution that low-passes its input first (a depthwise 3x3 binomial filter, zero-padded), so
    that it samples what it can represent. Its parameters are a plain Conv2d's: a checkpoint loads either way."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        taps = torch.tensor([1.0, 2.0, 1.0])
        kernel = (taps[:, None] * taps[None, :] / 16).expand(self.in_channels, 1, 3, 3).contiguous()
        self.register_buffer("blur", kernel, persistent=False)  # its shape is fixed, as ONNX export needs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.conv2d(x, self.blur.to(x.dtype), padding=1, groups=self.in_channels)
        return super().forward(x)


def _conv_bn(cin: int, cout: int, stride: int = 1, kernel: int = 3, antialias: bool = False) -> list[nn.Module]:
    conv = BlurredConv2d if antialias and stride > 1 else nn.Conv2d
    return [conv(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, antialias: bool = False):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, cout, stride, antialias=antialias), nn.ReLU(inplace=True),
                                  *_conv_bn(cout, cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Sequential(*_conv_bn(cin, cout, stride, kernel=1, antialias=antialias)))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class FerCNN(nn.Module):
    def __init__(self, config: CNNConfig = CNNConfig()):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        cin = config.in_channels
        for channels, stride in config.stem:
            layers += [*_conv_bn(cin, channels, stride, antialias=config.antialias), nn.ReLU(inplace=True)]
            cin = channels
        for stage, (width, count) in enumerate(zip(config.widths, config.blocks)):
            for i in range(count):
                layers.append(BasicBlock(cin, width, stride=2 if stage > 0 and i == 0 else 1,
                                         antialias=config.antialias))
                cin = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(cin, config.num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if config.zero_init_residual:
            for block in self.modules():
                if isinstance(block, BasicBlock):
                    nn.init.zeros_(block.body[-1].weight)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(pixel_values)).flatten(1)
        return self.classifier(self.dropout(x))
