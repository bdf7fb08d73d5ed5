"""Token embedding: genotype + site identity + base-pair position.

Site identity must scale to ~6 million sites, so it is factorised: a narrow learned table
(n_sites x site_dim) projected to d_model by one shared linear map. At 6,030,514 sites and
site_dim=16 the table is 96.5 M parameters instead of 3.1 G for a full-width d_model=512 table.

Base-pair position enters as sinusoidal features with integer wavelengths from 16 bp to
2**28 bp (longer than any human chromosome), projected to d_model. Phases are computed as
``(pos mod wavelength) / wavelength`` in int64, so they are exact at any chromosome position;
a float32 ``pos * freq`` would lose the short wavelengths above ~16 Mb.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.tokens import N_TOKENS

N_FREQUENCIES = 32
MIN_WAVELENGTH_BP = 16
MAX_WAVELENGTH_BP = 2**28


def _wavelengths(n: int = N_FREQUENCIES) -> torch.Tensor:
    ratio = MAX_WAVELENGTH_BP / MIN_WAVELENGTH_BP
    return torch.tensor(
        [round(MIN_WAVELENGTH_BP * ratio ** (k / (n - 1))) for k in range(n)], dtype=torch.long
    )


def position_features(position: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
    """(B, L) int64 bp positions -> (B, L, 2*F) float32 [sin | cos]."""
    phase = torch.remainder(position[..., None], wavelengths).float() / wavelengths.float()  # (B, L, F)
    angle = phase * (2 * math.pi)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class TokenEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D = cfg.d_model
        self.genotype = nn.Embedding(N_TOKENS, D)
        self.site = nn.Embedding(cfg.n_sites, cfg.site_dim)
        self.site_proj = nn.Linear(cfg.site_dim, D, bias=False)
        self.position = nn.Linear(2 * N_FREQUENCIES, D)
        self.dropout = nn.Dropout(cfg.dropout)
        # derived from constants, so not part of the checkpoint
        self.register_buffer("wavelengths", _wavelengths(), persistent=False)

    def forward(self, genotype: torch.Tensor, site_index: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        x = self.genotype(genotype)  # (B, L, D)
        x = x + self.site_proj(self.site(site_index))  # (B, L, site_dim) -> (B, L, D)
        pf = position_features(position, self.wavelengths).to(self.position.weight.dtype)  # (B, L, 2F)
        x = x + self.position(pf)  # (B, L, D)
        return self.dropout(x)
