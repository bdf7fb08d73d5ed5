"""Masked-genotype head: the pre-training objective and the imputation decoder.

The logits are a learned correction on top of the Hardy-Weinberg log-prior of the site's
allele frequency: ``logits = MLP(h) + log P_HWE(g | AF)``. The MLP's last layer starts near
zero, so an untrained model already predicts what an allele-frequency-only predictor would
(the AF baseline of snpbag.train.metrics), and training spends its steps on what linkage
disequilibrium adds rather than on relearning 6 million frequencies. The AF is a persistent
buffer (saved with the weights), set from the training store's vocabulary by the trainer
(``SnpbagModel.set_site_prior``); where it is unknown the prior is flat.

With ``retrieval_prior`` the log-prior is instead that of the retrieval input (the batch's
``retrieval``, e.g. a haplotype-copying model's genotype probabilities): the untrained
model then predicts what the copying model does, and training learns where to correct it.

With ``site_rank`` r > 0 a per-site readout is added to the shared MLP: the hidden state is
projected to r numbers and each vocabulary site reads them with its own 3 x r matrix and 3
biases (:func:`site_readout`, the embed head's ``site`` decoder), 3 x (r + 1) numbers per
site. A shared MLP must map "this site's context" to genotypes with one function for every
site; the per-site rows let each site read the encoder's features its own way (which allele a
haplotype pattern tags differs from site to site). The rows start at zero, so the untrained
head predicts what it does without them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.data.tokens import IGNORE_INDEX
from snpbag.errors import ConfigError
from snpbag.model.embedding import UNKNOWN_AF, check_site_af, hwe_log_prior
from snpbag.model.heads.base import Head
from snpbag.model.outputs import EncoderOutput, HeadOutput

N_GENOTYPES = 3  # 0/1/2 copies of the alternate allele
# added to the retrieval probabilities before the log: a genotype the panel calls
# impossible stays within reach of the MLP's correction (log 1e-4 = -9.2)
RETRIEVAL_FLOOR = 1e-4


def site_readout(table: nn.Embedding, row: torch.Tensor, u: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Logits of a linear readout per row: ``table`` holds 3 x (r + 1) numbers per row (a 3 x r
    matrix and 3 biases, stored at 1 / ``scale``), ``row`` (B, L) picks each site's row and
    ``u`` (B, L, r) is what it reads. Returns (B, L, 3)."""
    r = u.shape[-1]
    w = table(row).view(*row.shape, N_GENOTYPES, r + 1) * scale  # (B, L, 3, r+1)
    return torch.einsum("blgr,blr->blg", w[..., :-1], u) + w[..., -1]  # (B, L, 3)


class MaskedGenotypeHead(Head):
    """MLP -> 3 logits per site, plus the site's HWE log-prior when ``prior`` is true.
    Loss is the mean cross-entropy over sites whose target is not IGNORE_INDEX (masked
    sites with a called true genotype). Padding never carries loss. A batch with no such
    site gives loss 0 (with a graph), not NaN. ``site_rank`` > 0 adds the per-site readout
    (module doc); its rows are stored at 1 / ``site_scale`` (Adam's step is scale-free, so a
    row visited once per pass over its site moves ``site_scale`` times faster, as
    snpbag.model.embedding's SITE_SCALE)."""

    name = "genotype"
    level = "site"

    def __init__(self, cfg: ModelConfig, *, hidden: int | None = None, prior: bool = True,
                 retrieval_prior: bool = False, site_rank: int = 0, site_scale: float = 1.0) -> None:
        for name, value in (("prior", prior), ("retrieval_prior", retrieval_prior)):
            if not isinstance(value, bool):
                raise ConfigError(f"genotype head option {name}={value!r} must be true or false")
        if retrieval_prior and not cfg.uses_panel:
            raise ConfigError("genotype head option retrieval_prior=true needs a retrieval input (model.retrieval_k > 0)")
        if isinstance(site_rank, bool) or not isinstance(site_rank, int) or site_rank < 0:
            raise ConfigError(f"genotype head option site_rank={site_rank!r} must be an integer >= 0 (0: no per-site readout)")
        if not site_scale > 0:
            raise ConfigError(f"genotype head option site_scale={site_scale!r} must be > 0")
        options = {} if hidden is None else {"hidden": hidden}
        if not prior:  # saved only when off, so model.json of the default head stays {}
            options["prior"] = False
        if retrieval_prior:
            options["retrieval_prior"] = True
        if site_rank:
            options |= {"site_rank": site_rank, "site_scale": site_scale}
        super().__init__(cfg, **options)
        hidden = hidden or cfg.d_model
        self.use_prior = prior
        self.retrieval_prior = retrieval_prior
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, hidden), nn.GELU(), nn.LayerNorm(hidden), nn.Linear(hidden, N_GENOTYPES)
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # ALT AF per vocabulary site (UNKNOWN_AF until set); in the checkpoint, so a model
        # directory predicts with the frequencies it was trained with
        self.register_buffer("site_af", torch.full((cfg.n_sites,), UNKNOWN_AF))
        self.site_rank, self.site_scale = site_rank, float(site_scale)
        if site_rank:
            self.site_in = nn.Linear(cfg.d_model, site_rank)
            self.site_out = nn.Embedding(cfg.n_sites, N_GENOTYPES * (site_rank + 1))
            nn.init.zeros_(self.site_out.weight)  # untrained: the shared MLP's prediction

    @torch.no_grad()
    def set_site_prior(self, af) -> None:
        af = check_site_af(af, self.site_af.numel())
        if not self.site_af.is_meta:  # a shape-only model (built on the meta device) holds no data
            self.site_af.copy_(af)

    def forward(self, enc_out: EncoderOutput, batch: Batch) -> HeadOutput:
        logits = self.mlp(enc_out.hidden)  # (B, L, 3)
        if self.site_rank:
            logits = logits + site_readout(self.site_out, batch.site_index, self.site_in(enc_out.hidden), self.site_scale)
        if self.retrieval_prior:
            dtype = torch.promote_types(logits.dtype, torch.float32)
            logits = logits.to(dtype) + torch.log(batch.retrieval.to(dtype) + RETRIEVAL_FLOOR)
        elif self.use_prior:
            # at least fp32: under bf16 autocast the prior would lose ~2 digits
            dtype = torch.promote_types(logits.dtype, torch.float32)
            logits = logits.to(dtype) + hwe_log_prior(self.site_af[batch.site_index]).to(dtype)  # (B, L, 3)
        if batch.target is None:
            return HeadOutput(loss=None, logits=logits)
        target = batch.target.masked_fill(~batch.valid, IGNORE_INDEX)  # (B, L)
        n = (target != IGNORE_INDEX).sum()
        total = F.cross_entropy(
            logits.float().reshape(-1, N_GENOTYPES), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        loss = total / n.clamp_min(1)  # mean without a host sync on n
        return HeadOutput(loss=loss, logits=logits, extras={"n_targets": n})
