"""The digits reference model in PyTorch (eager, no JIT): a small residual CNN.

Conv-BN-ReLU stem, one residual block (Conv-BN-ReLU-Conv-BN + skip Add), max pooling,
a widening Conv-BN-ReLU, global average pooling and a Linear classifier.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))


class DigitsNet(nn.Module):
    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.stem = ConvBN(1, width)
        self.block_a = ConvBN(width, width)
        self.block_b = ConvBN(width, width)
        self.pool = nn.MaxPool2d(2)
        self.widen = ConvBN(width, 2 * width)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(2 * width, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(image))
        residual = self.block_b(torch.relu(self.block_a(x)))
        x = torch.relu(x + residual)
        x = self.pool(x)
        x = torch.relu(self.widen(x))
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(self.dropout(x))
