"""The one batch type every model, head and task consumes.

Shapes: B sequences (one sample x a stretch of one tile each) of L sites, padded on the
right. Token values are defined in snpbag.data.tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from snpbag.data.tokens import IGNORE_INDEX, MISSING


@dataclass
class Batch:
    genotype: torch.Tensor  # (B, L) long: model input tokens 0/1/2/MISSING/MASK
    site_index: torch.Tensor  # (B, L) long: global vocabulary index of each site
    position: torch.Tensor  # (B, L) long: base-pair position of each site
    valid: torch.Tensor  # (B, L) bool: True for real tokens, False for padding
    target: torch.Tensor  # (B, L) long: true genotype where it carries loss, else IGNORE_INDEX
    tile: torch.Tensor  # (B,) long: index of the vocabulary tile (snpbag.store.vocab)
    sample: torch.Tensor  # (B,) long: sample index in the store
    offset: torch.Tensor  # (B,) long: index of the first site within its tile
    truth: torch.Tensor | None = None  # (B, L) long: true genotype (MISSING where uncalled)
    haplotypes: torch.Tensor | None = None  # (B, L, 2) long: alleles 0/1, -1 where missing
    retrieval: torch.Tensor | None = None  # (B, L, 3) float: the retrieval panel's genotype probabilities
    # (B, L) float: the copying model's P(ALT on the previous het's ALT haplotype) at hets, NaN
    # elsewhere (snpbag.retrieval.relphase; the phasing head's prior)
    phase_prior: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.genotype.shape)  # type: ignore[return-value]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {
            f.name: (v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }
        return Batch(**moved)

    def replace(self, **changes: Any) -> "Batch":
        return replace(self, **changes)

    def rows(self, sequences: slice) -> "Batch":
        """The sequences ``sequences`` of the batch (views, no copy)."""
        return Batch(**{f.name: (v[sequences] if isinstance(v, torch.Tensor) else v)
                        for f in fields(self) for v in [getattr(self, f.name)]})


# Lightning moves batches with `transfer_batch_to_device`, which knows dataclasses; `to`
# above keeps plain use (outside Lightning) just as easy.

_PAD = {"genotype": MISSING, "target": IGNORE_INDEX, "truth": MISSING, "haplotypes": -1, "phase_prior": np.nan}


def collate(items: list[dict[str, Any]]) -> Batch:
    """Stack per-sequence dicts of numpy arrays into a right-padded Batch.

    Each item holds 1-D arrays ``genotype, site_index, position, target`` (and optional
    ``truth``, ``haplotypes`` of shape (L, 2), ``retrieval`` of shape (L, 3), ``phase_prior`` (L,)) plus scalars
    ``tile, sample, offset``.
    """
    L = max(len(it["genotype"]) for it in items)
    B = len(items)

    def stack(key: str, dtype=np.int64) -> torch.Tensor | None:
        if items[0].get(key) is None:
            return None
        first = np.asarray(items[0][key])
        out = np.full((B, L) + first.shape[1:], _PAD.get(key, 0), dtype=dtype)
        for i, it in enumerate(items):
            a = np.asarray(it[key])
            out[i, : len(a)] = a
        return torch.from_numpy(out)

    valid = np.zeros((B, L), dtype=bool)
    for i, it in enumerate(items):
        valid[i, : len(it["genotype"])] = True
    return Batch(
        genotype=stack("genotype"),
        site_index=stack("site_index"),
        position=stack("position"),
        valid=torch.from_numpy(valid),
        target=stack("target"),
        tile=torch.tensor([int(it["tile"]) for it in items], dtype=torch.long),
        sample=torch.tensor([int(it["sample"]) for it in items], dtype=torch.long),
        offset=torch.tensor([int(it.get("offset", 0)) for it in items], dtype=torch.long),
        truth=stack("truth"),
        haplotypes=stack("haplotypes"),
        retrieval=stack("retrieval", dtype=np.float32),
        phase_prior=stack("phase_prior", dtype=np.float32),
    )
