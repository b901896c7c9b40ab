"""Test architectures for ``qx export --framework torch`` (loaded as FILE.py:NAME)."""

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, features: int = 16, hidden: int = 32, classes: int = 5):
        super().__init__()
        self.fc1 = nn.Linear(features, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.norm(self.fc1(x))))


class EncoderBlock(nn.Module):
    """One BERT-style block written out: MatMul attention, LayerNorm, Softmax, GELU."""

    def __init__(self, dim: int = 32, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, 4 * dim)
        self.ff2 = nn.Linear(4 * dim, dim)

    def forward(self, tokens):
        batch, length, dim = tokens.shape
        q, k, v = self.qkv(tokens).split(dim, dim=-1)
        split = lambda t: t.reshape(batch, length, self.heads, dim // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        weights = torch.softmax(q @ k.transpose(-1, -2) / (dim // self.heads) ** 0.5, dim=-1)
        attended = (weights @ v).transpose(1, 2).reshape(batch, length, dim)
        x = self.norm1(tokens + self.proj(attended))
        return self.norm2(x + self.ff2(nn.functional.gelu(self.ff1(x))))


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(6, 4)

    def forward(self, image, features):
        pooled = torch.relu(self.bn(self.conv(image))).mean(dim=(2, 3))
        return pooled + self.fc(features), torch.sigmoid(pooled)


def make_mlp(width: int = 32):
    """A factory function rather than a class."""
    return MLP(hidden=width)


def scripted_mlp():
    return torch.jit.script(MLP())


class Stateful(nn.Module):
    """Trained-looking BatchNorm statistics matter for folding: random running stats."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x))


class DigitsEncoder(nn.Module):
    """A BERT-style classifier over the 8 rows of a digits image (tokens of 8 pixels)."""

    def __init__(self, dim: int = 32):
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.position = nn.Parameter(torch.zeros(1, 8, dim))
        self.block = EncoderBlock(dim, heads=4)
        self.classifier = nn.Linear(dim, 10)

    def forward(self, image):
        tokens = self.embed(image.reshape(image.shape[0], 8, 8)) + self.position
        return self.classifier(self.block(tokens).mean(dim=1))


class OutlierEncoder(nn.Module):
    """Two post-LN blocks over token embeddings, mean-pooled: a stand-in for a trained transformer's
    activation outliers once ``outlier_state_dict`` has scaled a few LayerNorm channels 50x (random
    weights alone have none, and hide the failure)."""

    OUTLIER_CHANNELS = (3, 17, 30)

    def __init__(self, vocab: int = 64, dim: int = 48, blocks: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList([EncoderBlock(dim, heads=4) for _ in range(blocks)])

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=1)


def outlier_state_dict(module: OutlierEncoder, scale: float = 50.0) -> dict:
    """LayerNorm channels scaled ``scale``x, as trained BERTs have; like them, the query and key
    projections read those channels with weights as much smaller, so attention stays as peaked
    as before (a trained model does not let one channel decide every score)."""
    state = {k: v.clone() for k, v in module.state_dict().items()}
    channels = list(OutlierEncoder.OUTLIER_CHANNELS)
    for name in state:
        if name.endswith(("norm1.weight", "norm2.weight")):
            state[name][channels] *= scale
        if name.endswith("qkv.weight"):
            dim = state[name].shape[1]
            state[name][: 2 * dim, channels] /= scale
    return state


class OutlierHead(nn.Module):
    """A pooled feature vector through LayerNorm -> Linear -> GELU -> Linear, 2-D all the way, so
    torch's TorchScript-based exporter writes each Linear as Gemm (transB=1). ``outlier_head_state``
    scales a few LayerNorm channels 50x, the activation outliers smoothquant is for."""

    OUTLIER_CHANNELS = (2, 9)

    def __init__(self, features: int = 24, hidden: int = 32, classes: int = 6):
        super().__init__()
        self.norm = nn.LayerNorm(features)
        self.fc1 = nn.Linear(features, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


def outlier_head_state(module: OutlierHead, scale: float = 50.0) -> dict:
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state["norm.weight"][list(OutlierHead.OUTLIER_CHANNELS)] *= scale
    return state
