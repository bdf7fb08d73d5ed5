"""The Seq2KING network (torch; no file I/O): individuals in, their pairwise kinship out.

Encoder-decoder transformer as the original (post-LayerNorm blocks, configurable
activation): the encoder attends over the sentence's individuals, the decoder takes the
same tokens as queries with self- and cross-attention, and a read-out predicts the
normalised kinship of every pair: ``bilinear`` (symmetric, any sentence length; a sentence is
a set) or ``positions``, the original's linear map of each token onto ``max_len`` positions,
usually with the original's sinusoidal position encoding of the encoder input
(``positional``). Attention weights come back only when asked for (``return_attn=True``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from snpbag.kinship.seq2king.config import Seq2KingConfig

_ACT = {"tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU}


class Attention(nn.Module):
    """Multi-head attention that can hand back its (B, H, Lq, Lk) row-stochastic weights."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.h, self.dk = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mem, key_pad):  # x (B, Lq, C), mem (B, Lk, C), key_pad (B, Lk) True = padding
        B, Lq, C = x.shape
        Lk = mem.shape[1]
        q = self.q(x).view(B, Lq, self.h, self.dk).transpose(1, 2)  # (B, H, Lq, dk)
        k = self.k(mem).view(B, Lk, self.h, self.dk).transpose(1, 2)
        v = self.v(mem).view(B, Lk, self.h, self.dk).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(self.dk)  # (B, H, Lq, Lk)
        s = s.masked_fill(key_pad[:, None, None, :], float("-inf"))
        w = s.softmax(-1)
        y = (self.drop(w) @ v).transpose(1, 2).reshape(B, Lq, C)
        return self.o(y), w


class Block(nn.Module):
    """Post-LN block: self-attention, optional cross-attention (decoder), feed-forward."""

    def __init__(self, cfg: Seq2KingConfig, cross: bool):
        super().__init__()
        d = cfg.d_model
        self.self_attn = Attention(d, cfg.n_heads, cfg.dropout)
        self.cross_attn = Attention(d, cfg.n_heads, cfg.dropout) if cross else None
        self.ff = nn.Sequential(nn.Linear(d, cfg.d_ff), _ACT[cfg.activation](), nn.Linear(cfg.d_ff, d))
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(3 if cross else 2))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, pad, mem=None):
        a, w_self = self.self_attn(x, x, pad)
        x = self.norms[0](x + self.drop(a))
        w_cross = None
        if self.cross_attn is not None:
            a, w_cross = self.cross_attn(x, mem, pad)
            x = self.norms[1](x + self.drop(a))
        x = self.norms[-1](x + self.drop(self.ff(x)))
        return x, w_self, w_cross


def layer_names(cfg: Seq2KingConfig) -> list[str]:
    """Names of the attention maps, in forward order: enc1.., dec1.self, dec1.cross, .."""
    names = [f"enc{i + 1}" for i in range(cfg.n_encoder)]
    for i in range(cfg.n_decoder):
        names += [f"dec{i + 1}.self", f"dec{i + 1}.cross"]
    return names


def sinusoid(length: int, d: int) -> torch.Tensor:
    """(length, d) sinusoidal position encoding (Vaswani et al.), as the original adds to its encoder input."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return pe


class Seq2King(nn.Module):
    """Tokens: ``ids`` (B, L) individual numbers (-1 = padding) for ``tokens="id"``, or
    ``features`` (B, L, n_inputs) per-individual vectors (kinship to the anchors, or a genome
    embedding) for ``tokens="features"``."""

    def __init__(self, cfg: Seq2KingConfig, *, n_individuals: int, n_inputs: int):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        if cfg.tokens == "id":
            # small init: Adam moves each coordinate about lr per step, so from N(0, 1) the
            # vectors would stay near their random start for thousands of steps
            self.embed = nn.Embedding(n_individuals, d)
            nn.init.normal_(self.embed.weight, std=0.02)
        else:
            self.embed = nn.Sequential(nn.Linear(n_inputs, d), nn.LayerNorm(d))
        self.encoder = nn.ModuleList(Block(cfg, cross=False) for _ in range(cfg.n_encoder))
        self.decoder = nn.ModuleList(Block(cfg, cross=True) for _ in range(cfg.n_decoder))
        self.readout = nn.Linear(d, d if cfg.readout == "bilinear" else cfg.max_len)
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, tokens: torch.Tensor, pad: torch.Tensor, *, return_attn: bool = False):
        """(B, L, L) predicted normalised kinship; with ``return_attn`` also
        ({layer name: (B, H, L, L)}, {layer name: (B, L, C) token states after it})."""
        L = pad.shape[1]
        if self.cfg.readout == "positions" and L > self.cfg.max_len:
            raise ValueError(f"sentence of {L} tokens: the positions read-out has max_len={self.cfg.max_len}")
        src = self.embed(tokens.clamp(min=0) if self.cfg.tokens == "id" else tokens)  # (B, L, C)
        x = src + sinusoid(L, src.shape[-1]) if self.cfg.positional else src
        attn, states = {}, {}
        for i, blk in enumerate(self.encoder):
            x, w, _ = blk(x, pad)
            attn[f"enc{i + 1}"], states[f"enc{i + 1}"] = w, x
        mem, y = x, src  # the decoder's queries carry no position (as the original)
        for i, blk in enumerate(self.decoder):
            y, w_self, w_cross = blk(y, pad, mem)
            attn[f"dec{i + 1}.self"], attn[f"dec{i + 1}.cross"] = w_self, w_cross
            states[f"dec{i + 1}.self"] = states[f"dec{i + 1}.cross"] = y
        h = self.readout(y if self.decoder else x)  # (B, L, C) bilinear, (B, L, max_len) positions
        if self.cfg.readout == "positions":
            pred = h[:, :, :L] + self.bias  # entry (i, j): token i's kinship to position j
        else:
            pred = h @ h.transpose(-1, -2) / math.sqrt(h.shape[-1]) + self.bias  # (B, L, L), symmetric
        return (pred, attn, states) if return_attn else pred


def masked_mse(pred: torch.Tensor, target: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Mean squared error over pairs i != j of real (unpadded) tokens: self-kinship is 0.5 by
    definition and carries no information, and would otherwise dominate short sentences."""
    valid = ~pad
    eye = torch.eye(pad.shape[1], dtype=torch.bool, device=pad.device)
    m = (valid[:, :, None] & valid[:, None, :] & ~eye).to(pred.dtype)
    return ((pred - target) ** 2 * m).sum() / m.sum()
