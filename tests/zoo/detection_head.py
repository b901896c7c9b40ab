"""A YOLOv8-shaped detection head (seeded weights): a small SiLU backbone, a box branch decoded to
pixels (up to ~320) and a class branch through Sigmoid (0..1), concatenated into one output as
nudenet's YOLOv8n ONNX does. One int8 scale over that Concat keeps the boxes and loses the scores."""

from __future__ import annotations

import torch
from torch import nn

IMAGE, STRIDE, CLASSES = 64, 4, 8


class DetectionHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.SiLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.SiLU())
        self.box = nn.Conv2d(32, 4, 1)
        self.cls = nn.Conv2d(32, CLASSES, 1)
        side = IMAGE // STRIDE
        ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        grid = torch.stack([xs, ys, xs, ys]).reshape(1, 4, -1).float()
        self.register_buffer("grid", grid)

    def forward(self, images):
        features = self.stem(images)
        offsets = self.box(features).flatten(2).sigmoid() * 4.0 - 2.0
        boxes = (self.grid + offsets) * (5.0 * STRIDE)  # pixels on a 320-pixel canvas
        scores = self.cls(features).flatten(2).sigmoid()
        return torch.cat([boxes, scores], dim=1)


def detection_head():
    torch.manual_seed(0)
    return DetectionHead().eval()


INPUTS = [f"images:1x3x{IMAGE}x{IMAGE}"]
