"""Masked-genotype head: the pre-training objective and the imputation decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.data.tokens import IGNORE_INDEX
from snpbag.model.heads.base import Head
from snpbag.model.outputs import EncoderOutput, HeadOutput

N_GENOTYPES = 3  # 0/1/2 copies of the alternate allele


class MaskedGenotypeHead(Head):
    """MLP -> 3 logits per site; loss is the mean cross-entropy over sites whose target is
    not IGNORE_INDEX (masked sites with a called true genotype). Padding never carries loss.
    A batch with no such site gives loss 0 (with a graph), not NaN."""

    name = "genotype"
    level = "site"

    def __init__(self, cfg: ModelConfig, *, hidden: int | None = None) -> None:
        super().__init__(cfg, **({} if hidden is None else {"hidden": hidden}))
        hidden = hidden or cfg.d_model
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, N_GENOTYPES)
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, enc_out: EncoderOutput, batch: Batch) -> HeadOutput:
        logits = self.mlp(enc_out.hidden)  # (B, L, 3)
        if batch.target is None:
            return HeadOutput(loss=None, logits=logits)
        target = batch.target.masked_fill(~batch.valid, IGNORE_INDEX)  # (B, L)
        n = (target != IGNORE_INDEX).sum()
        total = F.cross_entropy(
            logits.float().reshape(-1, N_GENOTYPES), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        loss = total / n.clamp_min(1)  # mean without a host sync on n
        return HeadOutput(loss=loss, logits=logits, extras={"n_targets": n})
