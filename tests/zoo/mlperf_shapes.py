"""Architectures shaped like MLPerf's benchmarks, tiny and seeded: a DLRM-like recommender
(EmbeddingBag tables, dot interaction), GPT-2 with an attention mask, DistilBERT, ALBERT, a T5
encoder and Swin. Hugging Face models are built from small configs (nothing downloaded), one or
two layers, hidden 32, so the whole set exports in seconds.

Each factory returns an eval-mode ``nn.Module`` whose ``forward`` takes plain tensors and returns
a tensor, so ``qx export --model tests/zoo/mlperf_shapes.py:NAME`` can load it.
"""

from __future__ import annotations

import torch
from torch import nn

from architectures import _seeded

TABLES, ROWS, BAG, DENSE = 3, 40, 4, 8


class DlrmLike(nn.Module):
    """DLRM's shape: a bottom MLP on dense features, one EmbeddingBag (sum) per sparse feature,
    pairwise dot products of the vectors, a top MLP on dense + interactions."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.bottom = nn.Sequential(nn.Linear(DENSE, 32), nn.ReLU(), nn.Linear(32, width), nn.ReLU())
        self.tables = nn.ModuleList(nn.EmbeddingBag(ROWS, width, mode="sum") for _ in range(TABLES))
        pairs = (TABLES + 1) * TABLES // 2
        self.top = nn.Sequential(nn.Linear(width + pairs, 32), nn.ReLU(), nn.Linear(32, 1))
        rows, cols = torch.triu_indices(TABLES + 1, TABLES + 1, offset=1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, dense, sparse):
        x = self.bottom(dense)
        vectors = [x] + [table(sparse[:, i]) for i, table in enumerate(self.tables)]
        stacked = torch.stack(vectors, dim=1)
        interactions = torch.bmm(stacked, stacked.transpose(1, 2))[:, self.rows, self.cols]
        return torch.sigmoid(self.top(torch.cat([x, interactions], dim=1)))


def dlrm_like():
    return _seeded(DlrmLike)


class _CausalLm(nn.Module):
    """GPT-2's next-token logits, given token ids and a padding mask."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class _Classifier(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Images(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                        eos_token_id=0)
    return _seeded(lambda: _CausalLm(GPT2LMHeadModel(config)))


def distilbert():
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=100, max_position_embeddings=32, dim=32, n_layers=2, n_heads=4,
                              hidden_dim=64, num_labels=3, attn_implementation="eager")
    return _seeded(lambda: _Classifier(DistilBertForSequenceClassification(config)))


def albert():
    from transformers import AlbertConfig, AlbertForSequenceClassification

    config = AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64, max_position_embeddings=32, num_labels=3,
                          attn_implementation="eager")
    return _seeded(lambda: _Classifier(AlbertForSequenceClassification(config)))


def t5_encoder():
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16)
    return _seeded(lambda: _Encoder(T5EncoderModel(config)))


def swin():
    from transformers import SwinConfig, SwinForImageClassification

    config = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
                        window_size=4, num_labels=10)
    return _seeded(lambda: _Images(SwinForImageClassification(config)))


TOKENS = ["input_ids:1x16:int64", "attention_mask:1x16:int64"]
# name -> (factory, [--input specs], [exporters that take it])
MLPERF_ZOO = {
    "dlrm_like": (dlrm_like, [f"dense:2x{DENSE}", f"sparse:2x{TABLES}x{BAG}:int64"], ["dynamo", "legacy"]),
    "gpt2": (gpt2, TOKENS, ["dynamo", "legacy"]),
    "distilbert": (distilbert, TOKENS, ["legacy"]),
    "albert": (albert, TOKENS, ["legacy"]),
    "t5_encoder": (t5_encoder, TOKENS, ["legacy"]),
    "swin": (swin, ["pixel_values:1x3x32x32"], ["legacy"]),
}
