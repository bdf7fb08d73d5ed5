"""Phasing head: for each heterozygous site, the probability that its ALT allele lies on the
same haplotype as the previous heterozygous site's ALT (:mod:`snpbag.retrieval.relphase`
says why this parameterisation: it is what a switch error scores, and what the copying
model reports).

The batch's ``phase_prior`` (B, L) carries the haplotype-copying model's P(same) at every
het of the sequence (NaN elsewhere; 0.5 at the first het), so it also says which sites are
hets and where each one's previous het is. The logit is a learned correction on top of the
copying model's log-odds, ``logit = MLP(features) + logit(prior)``, with the MLP's last
layer starting at zero: an untrained head phases exactly as the copying model does, and
training spends its steps on where copying is wrong (as ``retrieval_prior`` does for the
genotype head). Features of the pair (s, previous het p): the encoder's hidden states at
both, their product, the prior's log-odds and the log distance in base pairs (so the head
can also recalibrate the prior, whose confidence falls with distance).

Target: from the batch's true ``haplotypes``, 1 where the ALT at s is on the same copy as
the ALT at p, at sites that are hets with a previous het in both the prior and the truth;
loss: binary cross-entropy, mean over those sites. ``logits`` (B, L) are the log-odds of
P(same) (the prior's where nothing is scored).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.data.tokens import IGNORE_INDEX
from snpbag.errors import ConfigError
from snpbag.model.heads.base import Head
from snpbag.model.outputs import EncoderOutput, HeadOutput

PRIOR_CLIP = 1e-4  # a copying-model certainty stays within reach of the correction (logit ±9.2)


def previous_het(het: torch.Tensor) -> torch.Tensor:
    """(B, L) index of the previous het before each site (−1: none) for a (B, L) het mask
    (the torch twin of :func:`snpbag.retrieval.relphase.previous_het`)."""
    B, L = het.shape
    idx = torch.where(het, torch.arange(L, device=het.device).expand(B, L), torch.full_like(het, -1, dtype=torch.long))
    last = torch.cummax(idx, dim=1).values  # (B, L) last het at or before each site
    return torch.cat([torch.full((B, 1), -1, dtype=torch.long, device=het.device), last[:, :-1]], dim=1)


class PhaseHead(Head):
    name = "phase"
    level = "site"
    inputs = ("haplotypes", "phase_prior")  # batch fields beyond the encoder's that the head reads
    needs_panel = True  # its prior is the copying model over the haplotype panel

    def __init__(self, cfg: ModelConfig, *, hidden: int | None = None, prior: bool = True) -> None:
        if not isinstance(prior, bool):
            raise ConfigError(f"phase head option prior={prior!r} must be true or false")
        if cfg.retrieval != "haplotypes" or not cfg.uses_panel:
            raise ConfigError("the phase head needs the haplotype-copying model as its prior: set "
                              "model.retrieval=haplotypes and model.retrieval_k > 0")
        options = {} if hidden is None else {"hidden": hidden}
        if not prior:
            options["prior"] = False
        super().__init__(cfg, **options)
        self.use_prior = prior
        hidden = hidden or cfg.d_model
        d = cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(3 * d + 2, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[-1].weight)  # untrained: the copying model's answer
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, enc_out: EncoderOutput, batch: Batch) -> HeadOutput:
        if batch.phase_prior is None:
            raise ConfigError("the phase head needs batches with phase_prior (the copying model's relative phase); "
                              "train it with task=phase")
        h = enc_out.hidden  # (B, L, D)
        dtype = torch.promote_types(h.dtype, torch.float32)
        prior = batch.phase_prior.to(dtype)  # (B, L), NaN off hets
        het = ~torch.isnan(prior) & batch.valid
        prev = previous_het(het)  # (B, L)
        scored = het & (prev >= 0)
        p = prev.clamp_min(0)
        hp = h.gather(1, p[..., None].expand_as(h))  # (B, L, D) hidden state at the previous het
        prior_logit = torch.logit(prior.nan_to_num(0.5).clamp(PRIOR_CLIP, 1 - PRIOR_CLIP))  # (B, L)
        dist = (batch.position - batch.position.gather(1, p)).clamp_min(0).to(dtype)  # (B, L)
        feats = torch.cat([h, hp, h * hp, prior_logit[..., None].to(h.dtype),
                           torch.log1p(dist / 1000)[..., None].to(h.dtype)], dim=-1)  # (B, L, 3D + 2)
        logits = self.mlp(feats).squeeze(-1).to(dtype)  # (B, L)
        if self.use_prior:
            logits = logits + prior_logit
        if batch.haplotypes is None:
            return HeadOutput(loss=None, logits=logits, extras={"scored": scored})
        hap = batch.haplotypes  # (B, L, 2)
        true_het = (hap[..., 0] != hap[..., 1]) & (hap >= 0).all(-1)
        alt_on_1 = hap[..., 1]  # the copy that carries a het's ALT
        ok = scored & true_het & true_het.gather(1, p)
        same = (alt_on_1 == alt_on_1.gather(1, p)).long()
        target = torch.where(ok, same, torch.full_like(same, IGNORE_INDEX))  # (B, L)
        n = ok.sum()
        total = F.binary_cross_entropy_with_logits(logits.float()[ok], same[ok].float(), reduction="sum")
        return HeadOutput(loss=total / n.clamp_min(1), logits=logits,
                          extras={"target": target, "n_targets": n, "scored": scored})
