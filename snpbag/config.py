"""Typed configuration schemas. Registered with Hydra's ConfigStore (see register())
so YAML in configs/ extends a schema and a typo fails at compose time.

The model schema is used without Hydra too: a model directory stores it as JSON and
inference rebuilds the model from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from snpbag.errors import ConfigError

ATTENTION_BACKENDS = ("auto", "flash", "flex", "local", "dense")


@dataclass
class ModelConfig:
    """Encoder architecture. ``window`` is the TOTAL attention span in tokens: a token
    attends to keys within ``window // 2`` positions on either side (itself included)."""

    name: str = "tiny"
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    d_ff: int | None = None  # default 4 * d_model
    window: int = 128
    backend: str = "auto"
    block_size: int = 128  # tile size of the block-local and flex backends
    n_sites: int = 0  # vocabulary size the site embedding covers (set from the data)
    site_dim: int = 16  # narrow per-site table, projected to d_model (factorised embedding)
    dropout: float = 0.0
    activation_checkpointing: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}")
        if self.window < 1:
            raise ConfigError(f"model.window={self.window} must be >= 1")
        if self.backend not in ATTENTION_BACKENDS:
            raise ConfigError(f"model.backend={self.backend!r}; choose one of {ATTENTION_BACKENDS}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = set(d) - set(known)
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}")
        return cls(**known)


@dataclass
class HeadConfig:
    """Which head sits on the encoder, by its HEADS registry name, plus its options."""

    name: str = "genotype"
    options: dict[str, Any] = field(default_factory=dict)
