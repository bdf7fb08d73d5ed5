"""The SNPBag encoder: token embedding, pre-norm bidirectional transformer blocks with
sliding-window attention, final norm. Heads are separate modules (snpbag.model.heads).

``model.norm`` picks LayerNorm or RMSNorm, ``model.ffn`` GELU or SwiGLU (the published
SNPBag's choices: RMSNorm, SwiGLU). The parameter names are the same for both, so a block
is ``ln1, attn, ln2, fc1, fc2`` whatever it holds; SwiGLU's gate and value projections are
one ``fc1`` of width 2 d_ff, without biases (as in LLaMA)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.errors import ConfigError
from snpbag.model.attention import AttentionPlan, plan_attention
from snpbag.model.embedding import TokenEmbedding
from snpbag.model.outputs import EncoderOutput


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(
        self, x: torch.Tensor, plan: AttentionPlan, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, self.head_dim).unbind(2)  # 3 x (B, L, H, Dh)
        out, weights = plan(q, k, v, need_weights=need_weights)  # (B, L, H, Dh)
        return self.proj(out.reshape(B, L, D)), weights


def make_norm(cfg: ModelConfig) -> nn.Module:
    return nn.RMSNorm(cfg.d_model) if cfg.norm == "rmsnorm" else nn.LayerNorm(cfg.d_model)


class SwiGLU(nn.Module):
    """silu(a) * b of the two halves [a | b] of the fc1 output: (B, L, 2 F) -> (B, L, F)."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a, b = h.chunk(2, dim=-1)
        return F.silu(a) * b


class Block(nn.Module):
    """Pre-norm: x + Attn(norm(x)), then x + FFN(norm(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = make_norm(cfg)
        self.attn = SelfAttention(cfg)
        self.ln2 = make_norm(cfg)
        if cfg.ffn == "swiglu":
            self.fc1 = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)
            self.act = SwiGLU()
            self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        else:
            self.fc1 = nn.Linear(cfg.d_model, cfg.d_ff)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, plan: AttentionPlan, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.ln1(x), plan, need_weights)
        x = x + self.dropout(a)  # (B, L, D)
        x = x + self.dropout(self.fc2(self.act(self.fc1(self.ln2(x)))))
        return x, weights


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg)
        # retrieval input: the nearest panel genomes' genotype votes (L, 3) per token
        # the retrieval input's projection; its name is a key of saved weights, so it stays
        self.neighbour_in = nn.Linear(3, cfg.d_model, bias=False) if cfg.uses_panel else None
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = make_norm(cfg)
        self.reset_parameters()
        if cfg.compile:
            # in place: parameter names (and so checkpoints) stay free of `_orig_mod.`
            for block in self.blocks:
                block.compile()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-2 style init; residual output projections shrunk by 1/sqrt(2 * n_layers)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for block in self.blocks:
            for lin in (block.attn.proj, block.fc2):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * self.cfg.n_layers))
        # the narrow tables feed projections: unit-variance codes (after the per-site tables'
        # SITE_SCALE multiplier) keep the projected terms comparable to the others
        self.embed.reset_tables()

    def plan(self, valid: torch.Tensor) -> AttentionPlan:
        return plan_attention(
            valid, window=self.cfg.window, backend=self.cfg.backend, block_size=self.cfg.block_size
        )

    def forward(self, batch: Batch, *, return_attn: bool = False) -> EncoderOutput:
        x = self.embed(batch.genotype, batch.site_index, batch.position)  # (B, L, D)
        if self.neighbour_in is not None:
            if batch.retrieval is None:
                raise ConfigError("this model reads a retrieval input (model.retrieval_k > 0) but the batch has "
                                  "none: build the data with the model's retrieval panel")
            x = x + self.neighbour_in(batch.retrieval.to(x.dtype))
        plan = self.plan(batch.valid)  # mask work shared by all layers
        ckpt = self.cfg.activation_checkpointing and self.training and torch.is_grad_enabled() and not return_attn
        attentions: list[torch.Tensor] | None = [] if return_attn else None
        for block in self.blocks:
            if ckpt:
                x, _ = checkpoint(block, x, plan, use_reentrant=False)
            else:
                x, weights = block(x, plan, return_attn)
                if attentions is not None:
                    attentions.append(weights)
        return EncoderOutput(hidden=self.ln_f(x), attentions=attentions)
