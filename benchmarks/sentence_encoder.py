"""all-mpnet-base-v2 as sentence-transformers runs it: MPNet, mean pooling over the attention mask,
L2 normalisation. Built from the config.json beside the weights (no download); the weights are the
pretrained model.safetensors, loaded by ``qx export --weights``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


class SentenceEncoder(nn.Module):
    def __init__(self, folder: str):
        super().__init__()
        from transformers import MPNetConfig, MPNetModel

        config = MPNetConfig(**json.loads((Path(folder) / "config.json").read_text()))
        self.mpnet = MPNetModel(config, add_pooling_layer=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = self.mpnet(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=1)
