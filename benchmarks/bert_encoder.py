"""A BERT-like encoder in plain torch for the speed benchmarks: token and position embeddings, then
post-LayerNorm blocks of multi-head self-attention (explicit MatMuls, as BERT's ONNX exports have
them) and a GELU feed-forward. Random weights: the benchmark measures speed, not accuracy.
BERT-base is 12 x 768; the default here is 4 x 256 (seq 128) so a run stays short on 2 cores."""

from __future__ import annotations

import math

import torch
from torch import nn

VOCAB, SEQ, WIDTH, LAYERS, HEADS = 8192, 128, 256, 4, 4


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.project = nn.Linear(width, width)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, width = x.shape
        return x.reshape(batch, seq, self.heads, width // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
        context = (attention @ v).transpose(1, 2).reshape(x.shape)
        x = self.norm1(x + self.project(context))
        return self.norm2(x + self.down(nn.functional.gelu(self.up(x))))


class BertEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, WIDTH), nn.Embedding(SEQ, WIDTH)
        self.norm = nn.LayerNorm(WIDTH)
        self.blocks = nn.Sequential(*(Block(WIDTH, HEADS) for _ in range(LAYERS)))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.blocks(self.norm(self.tokens(input_ids) + self.positions(positions)))
