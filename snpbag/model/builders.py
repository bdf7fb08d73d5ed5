"""The functions that turn a ModelConfig (already validated by its ``__post_init__``) into
modules. The presets are configs/model/*.yaml, read by :func:`snpbag.config.preset`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from snpbag.config import ModelConfig, preset
from snpbag.errors import ConfigError
from snpbag.model.encoder import Encoder
from snpbag.model.heads import HEADS, Head
from snpbag.model.model import SnpbagModel


def build_encoder(cfg: ModelConfig) -> Encoder:
    # not a value check (ModelConfig does those): a preset leaves n_sites at 0 until the data is known
    if cfg.n_sites < 1:
        raise ConfigError(
            f"model.n_sites={cfg.n_sites}: set it to the number of sites in the store's vocabulary "
            "(the trainer fills it from the data)"
        )
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
    site_table = 0 if emb.binary else count_parameters(emb.site)  # the binary site code has none
    return {
        "site_table": site_table,
        "embedding_other": count_parameters(emb) - site_table,
        "blocks": count_parameters(model.encoder.blocks),
        "final_norm": count_parameters(model.encoder.ln_f),
        "head": count_parameters(model.head),
        "total": count_parameters(model),
    }
