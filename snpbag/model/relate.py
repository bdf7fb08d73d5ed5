"""The relatedness classifier (``snpbag relate``): degree classes of a pair from per-patch evidence.

Input per pair: a sequence of per-patch feature vectors (B, P, F) with a validity mask
(B, P), and a few genome-wide numbers (B, G). The patch features are either the pair's
KING counts per patch (:func:`snpbag.kinship.pairfeatures.patch_features`) or a symmetric
function of the two genomes' patch embeddings (:func:`embedding_pair_features`); the network
does not care which. Each patch goes through a small MLP (learning "this patch looks IBD"),
masked mean and max pooling turn the patches into one vector (the share of the genome in
IBD is what separates distant degrees), and a second MLP reads that with the genome-wide
numbers. Classes: parent–offspring, full siblings, degrees 2..max_degree, unrelated; a
single temperature on the logits (Guo et al. 2017) calibrates the probabilities. No file
I/O: snpbag.inference.relate saves and loads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snpbag.errors import ConfigError

INPUTS = ("counts", "embeddings")


def class_names(max_degree: int) -> list[str]:
    """``PO``, ``FS``, ``2`` .. ``max_degree``, ``UN``: the classifier's outputs, in order."""
    return ["PO", "FS", *(str(d) for d in range(2, max_degree + 1)), "UN"]


def class_kinship(max_degree: int) -> torch.Tensor:
    """Expected kinship 2^-(d+1) of each class (unrelated: 0)."""
    k = [0.25, 0.25, *(2.0 ** -(d + 1) for d in range(2, max_degree + 1)), 0.0]
    return torch.tensor(k, dtype=torch.float32)


@dataclass
class RelateConfig:
    inputs: str = "counts"  # what the patch features are: "counts" or "embeddings"
    n_features: int = 0  # per patch; set from the data
    n_summary: int = 0  # genome-wide numbers per pair; set from the data
    max_degree: int = 12
    hidden: int = 32
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise ConfigError(f"relate inputs={self.inputs!r}: choose one of {', '.join(INPUTS)}")
        if self.max_degree < 2:
            raise ConfigError(f"--max-degree {self.max_degree}: must be >= 2")
        if self.hidden < 1 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"relate hidden={self.hidden}, dropout={self.dropout}: need hidden >= 1, dropout in [0, 1)")

    @property
    def n_classes(self) -> int:
        return self.max_degree + 2  # PO, FS, 2..max_degree, UN

    def to_dict(self) -> dict:
        return asdict(self)


class RelateNet(nn.Module):
    """(B, P, F) patch features, (B, P) mask, (B, G) summary -> (B, n_classes) logits (before temperature)."""

    def __init__(self, cfg: RelateConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.patch = nn.Sequential(nn.Linear(cfg.n_features, h), nn.GELU(), nn.Linear(h, h), nn.GELU())
        self.head = nn.Sequential(nn.Linear(2 * h + cfg.n_summary, h), nn.GELU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(h, cfg.n_classes))
        self.register_buffer("f_mean", torch.zeros(cfg.n_features))
        self.register_buffer("f_scale", torch.ones(cfg.n_features))
        self.register_buffer("s_mean", torch.zeros(cfg.n_summary))
        self.register_buffer("s_scale", torch.ones(cfg.n_summary))
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("kinship", class_kinship(cfg.max_degree))

    def standardise_from(self, x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor) -> None:
        """Set the input standardisation from training data (valid patches only)."""
        v = x[mask]  # (N, F)
        self.f_mean.copy_(v.mean(0))
        self.f_scale.copy_(v.std(0).clamp_min(1e-6))
        self.s_mean.copy_(s.mean(0))
        self.s_scale.copy_(s.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        z = self.patch((x - self.f_mean) / self.f_scale)  # (B, P, H)
        m = mask.unsqueeze(-1).to(z.dtype)  # (B, P, 1)
        mean = (z * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)
        mx = z.masked_fill(m == 0, float("-inf")).amax(1)  # (B, H)
        mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
        return self.head(torch.cat([mean, mx, (s - self.s_mean) / self.s_scale], dim=-1))  # (B, C)

    def probabilities(self, x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities (B, n_classes)."""
        return F.softmax(self(x, mask, s) / self.temperature, dim=-1)


def embedding_pair_features(e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """Symmetric per-patch features of two genomes' patch embeddings (..., P, D) -> (..., P, 2D): |e1 − e2|, e1·e2."""
    return torch.cat([(e1 - e2).abs(), e1 * e2], dim=-1)


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature minimising the negative log-likelihood of held-out ``logits`` (a grid, then refined)."""
    grid = torch.exp(torch.linspace(-2.5, 2.5, 101))
    with torch.no_grad():
        nll = torch.stack([F.cross_entropy(logits / t, y) for t in grid])
    best = int(nll.argmin())
    fine = torch.linspace(float(grid[max(best - 1, 0)]), float(grid[min(best + 1, len(grid) - 1)]), 41)
    with torch.no_grad():
        nll = torch.stack([F.cross_entropy(logits / t, y) for t in fine])
    return float(fine[int(nll.argmin())])
