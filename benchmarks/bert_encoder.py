"""A BERT-like encoder in plain torch for the speed benchmarks: token and position embeddings, then
post-LayerNorm blocks of multi-head self-attention (explicit MatMuls, as BERT's ONNX exports have
them) and a GELU feed-forward. Random weights: the benchmarks measure speed, not accuracy.
``BertBase`` has BERT-base's shape (12 layers x 768, 12 heads, seq 128), where the MatMuls are the
cost as in every BERT MLPerf runs; ``BertEncoder`` is a small one (4 x 256) for quick runs, where
LayerNorm, Softmax and the per-op overheads weigh more."""

from __future__ import annotations

import math

import torch
from torch import nn

VOCAB, SEQ = 8192, 128


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
    def __init__(self, width: int = 256, layers: int = 4, heads: int = 4):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(VOCAB, width), nn.Embedding(SEQ, width)
        self.norm = nn.LayerNorm(width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.blocks(self.norm(self.tokens(input_ids) + self.positions(positions)))


class BertBase(BertEncoder):
    def __init__(self):
        super().__init__(width=768, layers=12, heads=12)
