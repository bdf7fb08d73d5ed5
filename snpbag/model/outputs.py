"""What the encoder and the heads return. Plain dataclasses so Lightning, the API and the
tests all read the same fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class EncoderOutput:
    hidden: torch.Tensor  # (B, L, D) contextual embedding of every site; padded rows are arbitrary
    # one (B, H, L, 2*half+1) tensor per layer, only when asked for: entry [b, h, i, d] is the
    # weight query i puts on key j = i - half + d (see snpbag.model.attention.band_to_dense)
    attentions: list[torch.Tensor] | None = None


@dataclass
class HeadOutput:
    loss: torch.Tensor | None  # scalar, or None when the batch carries no targets
    logits: torch.Tensor  # site heads: (B, L, C); sample heads: (B, C); pair heads: (P, C)
    extras: dict[str, Any] = field(default_factory=dict)
