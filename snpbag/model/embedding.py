"""Token embedding: genotype + site identity + base-pair position.

Site identity comes in two kinds (``model.site_code``). ``table`` (the default, below): a
learned factorised table. ``binary`` (the published SNPBag's): the site's vocabulary index
written as a fixed SITE_CODE_BITS-bit binary code (bits as +-1), concatenated with a small
learned genotype embedding (``model.genotype_dim``) and projected to d_model by one linear
map. It has no per-site parameters, so the model's size does not grow with the vocabulary
(6 million sites cost nothing), and the code of a site depends only on its index: the same
vocabulary gives the same codes wherever it is loaded. The position and allele-frequency
features below are added in both kinds; the allele embedding (a per-site table) is
``table`` only.

Site identity must scale to ~6 million sites, so it is factorised: a narrow learned table
(n_sites x site_dim) projected to d_model by one shared linear map. At 6,030,514 sites and
site_dim=16 the table is 96.5 M parameters instead of 3.1 G for a full-width d_model=512 table.

Base-pair position enters as sinusoidal features with integer wavelengths from 16 bp to
2**28 bp (longer than any human chromosome), projected to d_model. Phases are computed as
``(pos mod wavelength) / wavelength`` in int64, so they are exact at any chromosome position;
a float32 ``pos * freq`` would lose the short wavelengths above ~16 Mb.

Site allele frequency (the training cohort's ALT AF, a persistent buffer set from the store's
vocabulary with ``set_site_prior``) enters as a few fixed features (known, AF, MAF, logit AF)
projected to d_model, so the encoder knows every site's frequency from step 0 instead of
having to learn it into the site table, and can weigh what a visible genotype means (a het
at a 1 % site says far more about the haplotype than one at a 50 % site). An AF that is not
known (UNKNOWN_AF, the value in a freshly built model; NaN AFs are stored as it) gives
all-zero features.

Allele embedding: a visible genotype also adds ``(g - 2·AF) · P·a_s``, a direction of its
own for every site (``a_s``, a second narrow per-site table) scaled by the centred ALT
dosage. With only additive genotype and site embeddings, "ALT at site s" has to be
composed by the feed-forward layers before attention can use it, and linkage
disequilibrium is learnt slowly; with a per-site allele direction, a masked site reads
its neighbours' alleles through attention from the first step, like a regression on
nearby genotypes. Measured on a simulated 2,602-sample cohort (tiny preset, 512-site
sequences, lr 3e-3, 1 CPU thread, 2026-11-21): masked-accuracy gain over the AF baseline
+0.026 after 600 steps with it (+0.029 with a matching per-site readout in the head, not
kept); without it, a run with 1024-site sequences on the same cohort gained +0.001 after
500 and +0.011 after 750 steps.

Both per-site tables are stored divided by SITE_SCALE (= 100) and multiplied back in
``forward``; ``reset_site_tables`` draws the stored rows at std 1 / SITE_SCALE, so the
codes the model sees start at unit variance, as before. Adam's step does not depend on a
parameter's scale, so this gives the tables a SITE_SCALE-fold learning rate relative to
their size (muP's embedding multiplier): at lr 3e-3 a row can move by ~0.3 of its
initial spread per step instead of ~0.003, and what a site has learnt overtakes its
random initial code within tens of visits rather than thousands. Measured on a simulated
cohort (2,000 samples, 2,698 MAF >= 1 % sites, tiny preset, 512-site sequences, batch 8,
lr 3e-3, 1,800 steps, 1 CPU thread; validation at 90 % masking): validation loss 0.354
with the scale at 100 vs 0.431 without (the AF baseline is 0.476); 0.442 at 10, 0.373
at 300, 0.383 at 1000.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from snpbag.config import ModelConfig
from snpbag.errors import ConfigError
from snpbag.data.tokens import N_TOKENS

N_FREQUENCIES = 32
#: per-site tables are stored at 1 / SITE_SCALE of the scale the model sees (module doc)
SITE_SCALE = 100.0
N_AF_FEATURES = 4
#: AF is clamped to [AF_EPS, 1 - AF_EPS] wherever its log is taken (features, HWE prior)
AF_EPS = 1e-3
#: stored for sites without a known AF (a NaN would break equality checks of state dicts)
UNKNOWN_AF = -1.0
#: bits of the binary site code: indices up to 2**32 - 1, far above any SNP vocabulary
SITE_CODE_BITS = 32
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


def site_code(site_index: torch.Tensor) -> torch.Tensor:
    """(...,) int64 site indices -> (..., SITE_CODE_BITS) float32 bits as -1/+1, least
    significant bit first: the fixed site identity of ``model.site_code=binary``."""
    bits = torch.arange(SITE_CODE_BITS, device=site_index.device)
    return ((site_index[..., None] >> bits) & 1).float() * 2 - 1


def clamp_af(af: torch.Tensor) -> torch.Tensor:
    return af.float().clamp(AF_EPS, 1 - AF_EPS)


def af_features(af: torch.Tensor) -> torch.Tensor:
    """(...,) ALT AF (< 0: unknown) -> (..., 4) [known, AF, MAF, logit(AF) / 4]; zeros where unknown."""
    known = af >= 0
    p = clamp_af(torch.where(known, af, 0.5))
    logit = torch.log(p) - torch.log1p(-p)
    f = torch.stack([torch.ones_like(p), p, torch.minimum(p, 1 - p), logit / 4], dim=-1)  # (..., 4)
    return f * known[..., None]


def allele_dose(genotype: torch.Tensor, af: torch.Tensor) -> torch.Tensor:
    """(B, L) tokens, ALT AF (< 0: unknown) -> (B, L) centred ALT dosage g - 2·AF of called,
    visible genotypes; 0 for MASK and MISSING (and AF 0.5 where it is unknown)."""
    p = torch.where(af >= 0, af, torch.full_like(af, 0.5))
    visible = genotype <= 2
    return torch.where(visible, genotype.to(p.dtype) - 2 * p, torch.zeros_like(p))


def hwe_log_prior(af: torch.Tensor) -> torch.Tensor:
    """(...,) ALT AF (< 0: unknown) -> (..., 3) log P(g = 0/1/2) under Hardy-Weinberg
    equilibrium (AF clamped to [AF_EPS, 1 - AF_EPS]); zeros (a flat prior) where unknown."""
    known = af >= 0
    p = clamp_af(torch.where(known, af, 0.5))
    lp, lq = torch.log(p), torch.log1p(-p)
    prior = torch.stack([2 * lq, math.log(2.0) + lp + lq, 2 * lp], dim=-1)  # (..., 3)
    return prior * known[..., None]


def check_site_af(af, n_sites: int) -> torch.Tensor:
    """``af`` as a float32 (n_sites,) tensor: values in [0, 1] kept, NaN (and UNKNOWN_AF)
    stored as UNKNOWN_AF; anything else is a ConfigError."""
    t = torch.as_tensor(af, dtype=torch.float32, device="cpu").detach().reshape(-1)  # also under a meta-device context
    if t.numel() != n_sites:
        raise ConfigError(f"site allele frequencies: {t.numel()} values for a model of n_sites={n_sites}")
    t = torch.nan_to_num(t, nan=UNKNOWN_AF)
    bad = (t != UNKNOWN_AF) & ((t < 0) | (t > 1))
    if bad.any():
        i = int(bad.nonzero()[0])
        raise ConfigError(f"site allele frequencies: site {i} has AF {float(t[i])}, outside [0, 1]")
    return t


class TokenEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        D = cfg.d_model
        self.binary = cfg.site_code == "binary"
        if self.binary:
            self.genotype = nn.Embedding(N_TOKENS, cfg.genotype_dim)
            self.code_proj = nn.Linear(SITE_CODE_BITS + cfg.genotype_dim, D, bias=False)
        else:
            self.genotype = nn.Embedding(N_TOKENS, D)
            self.site = nn.Embedding(cfg.n_sites, cfg.site_dim)
            self.site_proj = nn.Linear(cfg.site_dim, D, bias=False)
            # a second narrow per-site table, scaled by the centred ALT dosage (see module doc)
            self.allele = nn.Embedding(cfg.n_sites, cfg.site_dim)
            self.allele_proj = nn.Linear(cfg.site_dim, D, bias=False)
        self.position = nn.Linear(2 * N_FREQUENCIES, D)
        self.frequency = nn.Linear(N_AF_FEATURES, D)
        # part of the checkpoint: a saved model carries the AF of the cohort it was trained on
        self.register_buffer("site_af", torch.full((cfg.n_sites,), UNKNOWN_AF))
        self.dropout = nn.Dropout(cfg.dropout)
        # derived from constants, so not part of the checkpoint
        self.register_buffer("wavelengths", _wavelengths(), persistent=False)

    @torch.no_grad()
    def reset_tables(self) -> None:
        """Unit-variance codes for the narrow tables that feed projections (called by
        Encoder.reset_parameters): per-site rows stored at std 1 / SITE_SCALE (the forward
        scale brings them to 1); the binary code's genotype embedding at std 1, like its
        +-1 bits."""
        if self.binary:
            nn.init.normal_(self.genotype.weight, std=1.0)
            return
        for table in (self.site, self.allele):
            nn.init.normal_(table.weight, std=1.0 / SITE_SCALE)

    def forward(self, genotype: torch.Tensor, site_index: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        if self.binary:
            code = site_code(site_index).to(self.code_proj.weight.dtype)  # (B, L, BITS)
            x = self.code_proj(torch.cat([code, self.genotype(genotype)], dim=-1))  # (B, L, BITS + G) -> (B, L, D)
        else:
            x = self.genotype(genotype)  # (B, L, D)
            x = x + self.site_proj(self.site(site_index) * SITE_SCALE)  # (B, L, site_dim) -> (B, L, D)
        pf = position_features(position, self.wavelengths).to(self.position.weight.dtype)  # (B, L, 2F)
        x = x + self.position(pf)  # (B, L, D)
        site_af = self.site_af[site_index]  # (B, L)
        af = af_features(site_af).to(self.frequency.weight.dtype)  # (B, L, 4)
        x = x + self.frequency(af)  # (B, L, D)
        if not self.binary:
            allele = self.allele_proj(self.allele(site_index) * SITE_SCALE)  # (B, L, D)
            x = x + allele_dose(genotype, site_af)[..., None].to(x.dtype) * allele
        return self.dropout(x)

    @torch.no_grad()
    def set_site_prior(self, af) -> None:
        af = check_site_af(af, self.site_af.numel())
        if not self.site_af.is_meta:  # a shape-only model (built on the meta device) holds no data
            self.site_af.copy_(af)
