"""A sentence-transformers encoder as sentence-transformers runs it: the backbone named by the
config's ``model_type`` (MPNet for all-mpnet-base-v2, BERT for all-MiniLM-L6-v2), mean pooling over
the attention mask, L2 normalisation. Built from the config.json beside the weights (no download);
the weights are the pretrained model.safetensors, loaded by ``qx export --weights`` under the
backbone's ``model_type`` prefix (``mpnet.``, ``bert.``)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


def backbone(folder: str) -> tuple[str, nn.Module]:
    """(model_type, the backbone without a pooling layer) from ``folder/config.json``."""
    from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

    settings = json.loads((Path(folder) / "config.json").read_text())
    kinds = {"mpnet": (MPNetConfig, MPNetModel), "bert": (BertConfig, BertModel)}
    config_type, model_type = kinds[settings["model_type"]]
    return settings["model_type"], model_type(config_type(**settings), add_pooling_layer=False)


class SentenceEncoder(nn.Module):
    def __init__(self, folder: str):
        super().__init__()
        self.kind, model = backbone(folder)
        self.add_module(self.kind, model)  # the weights' names: mpnet.* or bert.*

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states = getattr(self, self.kind)(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=1)
