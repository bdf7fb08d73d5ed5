"""Named presets and the functions that turn a ModelConfig into modules.

PRESETS mirror configs/model/<name>.yaml key for key (a test checks it). ``n_sites`` is 0 in
every preset: it is a property of the data, filled in from the store's site vocabulary before
the model is built.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from snpbag.config import ModelConfig
from snpbag.errors import ConfigError
from snpbag.model.encoder import Encoder
from snpbag.model.heads import HEADS, Head
from snpbag.model.model import SnpbagModel

PRESETS: dict[str, dict[str, Any]] = {
    # CPU smoke tests and the demo: trains on 2 cores in minutes
    "tiny": dict(n_layers=2, n_heads=4, d_model=64, window=128, block_size=64, site_dim=16),
    # CPU experiments: a real model, still minutes per epoch on small simulations
    "small": dict(n_layers=4, n_heads=4, d_model=128, window=128, block_size=64, site_dim=16),
    # the paper's encoder: 16 layers x 16 heads x 512 (whole-genome model, window 128)
    "base": dict(n_layers=16, n_heads=16, d_model=512, window=128, block_size=128, site_dim=32),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of a named preset, with field overrides (e.g. n_sites=81920)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(**{"name": name, **PRESETS[name], **overrides})


def _check(cfg: ModelConfig) -> None:
    if cfg.n_sites < 1:
        raise ConfigError(
            f"model.n_sites={cfg.n_sites}: set it to the number of sites in the store's vocabulary "
            "(the trainer fills it from the data)"
        )
    if cfg.site_dim < 1 or cfg.n_layers < 1 or cfg.d_ff < 1:
        raise ConfigError(
            f"model.site_dim={cfg.site_dim}, model.n_layers={cfg.n_layers}, model.d_ff={cfg.d_ff} must all be >= 1"
        )
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.dropout} must be in [0, 1)")


def build_encoder(cfg: ModelConfig) -> Encoder:
    _check(cfg)
    return Encoder(cfg)


def build_head(name: str, cfg: ModelConfig, **options: Any) -> Head:
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    try:
        return HEADS[name](cfg, **options)
    except TypeError as e:
        raise ConfigError(f"head {name!r} does not accept options {sorted(options)}: {e}") from None


def build_model(
    cfg: ModelConfig | str,
    head: str = "genotype",
    *,
    head_options: dict[str, Any] | None = None,
    site_af: Any = None,
) -> SnpbagModel:
    """Encoder + head. ``cfg`` may be a preset name (then n_sites must come another way).
    ``site_af``: ALT allele frequency of every vocabulary site in the training cohort (the
    store vocabulary's ``af``; NaN where unknown), kept in the model as its site prior
    (SnpbagModel.set_site_prior); None leaves it unknown (flat prior, zero AF features)."""
    if isinstance(cfg, str):
        cfg = preset(cfg)
    model = SnpbagModel(build_encoder(cfg), build_head(head, cfg, **(head_options or {})))
    if site_af is not None:
        model.set_site_prior(site_af)
    return model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(cfg: ModelConfig, head: str = "genotype") -> dict[str, int]:
    """Parameters by component, counted on the meta device (no memory, any n_sites)."""
    with torch.device("meta"):
        model = build_model(cfg, head)
    emb = model.encoder.embed
    return {
        "site_table": count_parameters(emb.site),
        "embedding_other": count_parameters(emb) - count_parameters(emb.site),
        "blocks": count_parameters(model.encoder.blocks),
        "final_norm": count_parameters(model.encoder.ln_f),
        "head": count_parameters(model.head),
        "total": count_parameters(model),
    }
