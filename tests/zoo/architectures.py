"""Architectures the team did not write, built from small configs with seeded random weights.

Each factory returns an eval-mode ``nn.Module`` whose ``forward`` takes plain tensors and returns
tensors, so ``qx export --model tests/zoo/architectures.py:NAME`` can load it. Hugging Face models
come from ``transformers`` model classes (no download: built from a config); widths and image
sizes are small so the whole zoo runs in CI.
"""

from __future__ import annotations

import torch
from torch import nn

IMAGE = 32


def _seeded(build):
    """Build with a fixed seed; biases drawn too (Hugging Face initializes them to zero, which
    would hide every bias path from the tests: an Add of zeros folds away)."""
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.normal_(0.0, 0.05)
    return model


class _LogitsOnly(nn.Module):
    """Hugging Face models return a ModelOutput; qx exports plain tensors."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *inputs):
        return self.model(*inputs).logits


class _BertClassifier(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def hf_resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="bottleneck",
                          num_labels=10)
    return _seeded(lambda: _LogitsOnly(ResNetForImageClassification(config)))


def hf_mobilenet_v2():
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    config = MobileNetV2Config(image_size=IMAGE, depth_multiplier=0.35, num_labels=10)
    return _seeded(lambda: _LogitsOnly(MobileNetV2ForImageClassification(config)))


def hf_convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    config = ConvNextConfig(hidden_sizes=[16, 32], depths=[1, 1], num_stages=2, num_labels=10, image_size=IMAGE)
    return _seeded(lambda: _LogitsOnly(ConvNextForImageClassification(config)))


def hf_vit():
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(image_size=IMAGE, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=64, num_labels=10)
    return _seeded(lambda: _LogitsOnly(ViTForImageClassification(config)))


def hf_bert():
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, num_labels=3,
                        attn_implementation="eager")
    return _seeded(lambda: _BertClassifier(BertForSequenceClassification(config)))


class _BertEncoder(nn.Module):
    """A sentence encoder's token embeddings (the raw-output task's outputs)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _BertSpans(nn.Module):
    """Extractive question answering: start and end logits per token, as MLPerf's BERT answers."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        output = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return output.start_logits, output.end_logits


def _small_bert_config(**extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=64, max_position_embeddings=64, attn_implementation="eager", **extra)


def hf_bert_encoder():
    from transformers import BertModel

    return _seeded(lambda: _BertEncoder(BertModel(_small_bert_config(), add_pooling_layer=False)))


def hf_bert_qa():
    from transformers import BertForQuestionAnswering

    return _seeded(lambda: _BertSpans(BertForQuestionAnswering(_small_bert_config())))


class LstmClassifier(nn.Module):
    """An RNN-T-like encoder stub: embedding, a 2-layer LSTM, a Linear head."""

    def __init__(self, vocab: int = 50, hidden: int = 24, classes: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens):
        states, _ = self.lstm(self.embed(tokens))
        return self.head(states[:, -1])


def lstm_classifier():
    return _seeded(LstmClassifier)


class TiedWeights(nn.Module):
    """One weight used twice and two equal biases: exporters share or deduplicate them."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2.weight = self.conv1.weight
        self.fc = nn.Linear(4, 4)
        with torch.no_grad():
            self.conv2.bias.copy_(self.conv1.bias)

    def forward(self, x):
        y = torch.relu(self.conv1(x))
        y = torch.relu(self.conv2(y)) + y
        return self.fc(y.mean(dim=(2, 3)))


def tied_weights():
    return _seeded(TiedWeights)


# name -> (factory, [--input specs], extra quantize checks)
TORCH_ZOO = {
    "hf_resnet": (hf_resnet, ["pixel_values:1x3x32x32"]),
    "hf_mobilenet_v2": (hf_mobilenet_v2, ["pixel_values:1x3x32x32"]),
    "hf_convnext": (hf_convnext, ["pixel_values:1x3x32x32"]),
    "hf_vit": (hf_vit, ["pixel_values:1x3x32x32"]),
    "hf_bert": (hf_bert, ["input_ids:1x16:int64", "attention_mask:1x16:int64"]),
    "lstm_classifier": (lstm_classifier, ["tokens:1x12:int64"]),
    "tied_weights": (tied_weights, ["x:1x4x16x16"]),
}


class SqueezeExcite(nn.Module):
    """EfficientNet's squeeze-excitation: a pooled vector of a few values per sample scales the map."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.reduce = nn.Conv2d(channels, 4, 1)
        self.expand = nn.Conv2d(4, channels, 1)
        self.head = nn.Linear(channels, 4)

    def forward(self, x):
        y = nn.functional.silu(self.conv(x))
        gate = torch.sigmoid(self.expand(nn.functional.silu(self.reduce(y.mean(dim=(2, 3), keepdim=True)))))
        return self.head((y * gate).mean(dim=(2, 3)))


def squeeze_excite():
    return _seeded(SqueezeExcite)


class MobileBlock(nn.Module):
    """MobileNetV3's pieces: ReLU6 (Clip 0..6), HardSwish, HardSigmoid."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        y = nn.functional.hardswish(self.conv2(nn.functional.relu6(self.conv1(x))))
        y = self.conv3(y) * nn.functional.hardsigmoid(y)
        return self.head(y.mean(dim=(2, 3)))


def mobile_block():
    return _seeded(MobileBlock)


TORCH_ZOO["squeeze_excite"] = (squeeze_excite, ["x:1x3x16x16"])
TORCH_ZOO["mobile_block"] = (mobile_block, ["x:1x3x16x16"])
