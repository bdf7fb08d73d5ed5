"""The relatedness classifier (``snpbag relate``): degree classes of a pair from per-patch evidence.

Input per pair: a sequence of per-patch feature vectors (B, P, F) with a validity mask
(B, P), and a few genome-wide numbers (B, G). The patch features are either the pair's
KING counts per patch (:func:`snpbag.kinship.pairfeatures.patch_features`) or a symmetric
function of the two genomes' patch embeddings (:func:`embedding_pair_features`); the network
does not care which. Two readers of the same inputs, one for the degree and one for the
degree-2 type, each pass every patch through a small MLP (learning "this patch looks IBD"),
optionally a convolution along the patches (``degree_context`` / ``subtype_context``
patches each side: where a shared stretch starts and ends — the number and length of IBD
segments is what tells a grandparent, one meiosis and few long segments, from a half-sibling,
two, and an uncle, three, at the same expected kinship), masked mean and max pooling (the share
of the genome in IBD is what separates distant degrees) and a second MLP that reads the pooled
vector with the genome-wide numbers. Two readers, so that the few degree-2 pairs a type is
learned from do not pull on the degree classifier. Outputs: degree classes (parent–offspring,
full siblings, degrees 2..max_degree, unrelated) and the degree-2 type (:data:`SUBTYPES`),
each calibrated by its own temperature (Guo et al. 2017). No file I/O: snpbag.inference.relate
saves and loads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snpbag.errors import ConfigError

INPUTS = ("counts", "embeddings", "both")
#: Degree-2 types: half siblings, grandparent–grandchild, avuncular (P_HS, P_GP, P_AV given degree 2).
SUBTYPES = ("HS", "GP", "AV")


def class_names(max_degree: int) -> list[str]:
    """``PO``, ``FS``, ``2`` .. ``max_degree``, ``UN``: the classifier's outputs, in order."""
    return ["PO", "FS", *(str(d) for d in range(2, max_degree + 1)), "UN"]


def class_kinship(max_degree: int) -> torch.Tensor:
    """Expected kinship 2^-(d+1) of each class (unrelated: 0)."""
    k = [0.25, 0.25, *(2.0 ** -(d + 1) for d in range(2, max_degree + 1)), 0.0]
    return torch.tensor(k, dtype=torch.float32)


@dataclass
class RelateConfig:
    inputs: str = "counts"  # what the patch features are: "counts", "embeddings" or "both"
    n_features: int = 0  # per patch; set from the data
    n_summary: int = 0  # genome-wide numbers per pair; set from the data
    max_degree: int = 12
    hidden: int = 32
    dropout: float = 0.1
    degree_context: int = 0  # patches each side the degree reader's convolution along the genome sees (0: none)
    subtype_context: int = 2  # the same for the degree-2 type reader (segment ends tell the types apart)

    def __post_init__(self) -> None:
        if self.inputs not in INPUTS:
            raise ConfigError(f"relate inputs={self.inputs!r}: choose one of {', '.join(INPUTS)}")
        if self.max_degree < 2:
            raise ConfigError(f"--max-degree {self.max_degree}: must be >= 2")
        if self.hidden < 1 or not 0.0 <= self.dropout < 1.0 or min(self.degree_context, self.subtype_context) < 0:
            raise ConfigError(f"relate hidden={self.hidden}, dropout={self.dropout}, degree_context="
                              f"{self.degree_context}, subtype_context={self.subtype_context}: need hidden >= 1, "
                              "dropout in [0, 1), contexts >= 0")

    @property
    def n_classes(self) -> int:
        return self.max_degree + 2  # PO, FS, 2..max_degree, UN

    def to_dict(self) -> dict:
        return asdict(self)


class _Reader(nn.Module):
    """Patch MLP, convolution along the patches, masked mean/max pooling, MLP with the summary -> (B, n_out)."""

    def __init__(self, cfg: RelateConfig, n_out: int, context: int) -> None:
        super().__init__()
        h, c = cfg.hidden, context
        self.embed = nn.Sequential(nn.Linear(cfg.n_features, h), nn.GELU())
        self.along = nn.Conv1d(h, h, 2 * c + 1, padding=c) if c else None
        self.patch = nn.Sequential(nn.Linear(h, h), nn.GELU())
        self.head = nn.Sequential(nn.Linear(2 * h + cfg.n_summary, h), nn.GELU(), nn.Dropout(cfg.dropout),
                                  nn.Linear(h, n_out))

    def forward(self, x: torch.Tensor, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        z = self.embed(x) * m  # (B, P, H), masked patches zero
        if self.along is not None:
            z = z + F.gelu(self.along(z.transpose(1, 2))).transpose(1, 2) * m  # (B, P, H)
        z = self.patch(z)  # (B, P, H)
        mean = (z * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, H)
        mx = z.masked_fill(m == 0, float("-inf")).amax(1)  # (B, H)
        mx = torch.where(torch.isfinite(mx), mx, torch.zeros_like(mx))
        return self.head(torch.cat([mean, mx, s], dim=-1))  # (B, n_out)


class RelateNet(nn.Module):
    """(B, P, F) patch features, (B, P) mask, (B, G) summary -> (B, n_classes) degree logits and
    (B, len(SUBTYPES)) degree-2 type logits (both before temperature)."""

    def __init__(self, cfg: RelateConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.degree = _Reader(cfg, cfg.n_classes, cfg.degree_context)
        self.subtype = _Reader(cfg, len(SUBTYPES), cfg.subtype_context)
        self.register_buffer("f_mean", torch.zeros(cfg.n_features))
        self.register_buffer("f_scale", torch.ones(cfg.n_features))
        self.register_buffer("s_mean", torch.zeros(cfg.n_summary))
        self.register_buffer("s_scale", torch.ones(cfg.n_summary))
        self.register_buffer("temperature", torch.ones(()))
        self.register_buffer("subtype_temperature", torch.ones(()))
        self.register_buffer("kinship", class_kinship(cfg.max_degree))

    def standardise_from(self, x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor) -> None:
        """Set the input standardisation from training data (valid patches only)."""
        v = x[mask]  # (N, F)
        self.f_mean.copy_(v.mean(0))
        self.f_scale.copy_(v.std(0).clamp_min(1e-6))
        self.s_mean.copy_(s.mean(0))
        self.s_scale.copy_(s.std(0).clamp_min(1e-6))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x - self.f_mean) / self.f_scale  # (B, P, F)
        s = (s - self.s_mean) / self.s_scale  # (B, G)
        m = mask.unsqueeze(-1).to(x.dtype)  # (B, P, 1)
        return self.degree(x, m, s), self.subtype(x, m, s)

    def probabilities(self, x: torch.Tensor, mask: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Calibrated degree-class probabilities (B, n_classes) and degree-2 type probabilities (B, S)."""
        deg, sub = self(x, mask, s)
        return F.softmax(deg / self.temperature, dim=-1), F.softmax(sub / self.subtype_temperature, dim=-1)


def embedding_pair_features(e1: torch.Tensor, e2: torch.Tensor) -> torch.Tensor:
    """Symmetric per-patch features of two genomes' patch embeddings (..., P, D) -> (..., P, 2D): |e1 − e2|, e1·e2."""
    return torch.cat([(e1 - e2).abs(), e1 * e2], dim=-1)


#: Names of :func:`embedding_pair_summary`'s columns.
EMBEDDING_SUMMARY = ("cosine_mean", "distance_mean")


def embedding_pair_summary(e1: torch.Tensor, e2: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Genome-wide numbers of two genomes' patch embeddings (B, P, D) over valid patches (B, P) -> (B, 2):
    the mean cosine similarity and the mean |e1 − e2| (symmetric in the pair)."""
    m = mask.to(e1.dtype)  # (B, P)
    n = m.sum(1).clamp_min(1.0)  # (B,)
    cos = F.cosine_similarity(e1, e2, dim=-1, eps=1e-6)  # (B, P)
    dist = (e1 - e2).abs().mean(-1)  # (B, P)
    return torch.stack([(cos * m).sum(1) / n, (dist * m).sum(1) / n], dim=-1)


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
