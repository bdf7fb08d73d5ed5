"""The Seq2KING configuration: one typed dataclass, validated where it is defined, and its presets.

Its own schema rather than a part of the genotype one: Seq2KING has no genotype store, site
vocabulary or masking (its input is a kinship matrix, its tokens are individuals). Two ways in,
one validation: ``snpbag seq2king train --preset NAME KEY=VALUE ...`` (:func:`make_config`), and
``snpbag train task=seq2king task.KEY=VALUE ...``, which composes configs/task/seq2king.yaml
with Hydra (an unknown key fails at compose time) and builds this dataclass from it
(``snpbag.inference.seq2king``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from snpbag.errors import ConfigError

TOKENS = ("id", "features")
FEATURES = ("anchors", "embedding")
READOUTS = ("bilinear", "positions")
NORMALISATIONS = ("minmax", "zscore")
ACTIVATIONS = ("tanh", "gelu", "relu")


@dataclass(frozen=True)
class Seq2KingConfig:
    """Model shape, sentences and training of one Seq2KING model (labels are never an input)."""

    # token input: "id" = one learned vector per individual (the original; transductive),
    # "features" = a vector per individual computed from data, so new people can be placed:
    # features="anchors", its normalised kinship to n_anchors fixed training individuals, or
    # features="embedding", its genome embedding from `snpbag embed` (--embeddings)
    tokens: str = "features"
    features: str = "anchors"
    n_anchors: int = 128
    d_model: int = 120
    n_heads: int = 1
    n_encoder: int = 3
    n_decoder: int = 2
    d_ff: int = 512
    activation: str = "tanh"
    dropout: float = 0.1
    # read-out: "bilinear" = <W h_i, W h_j> (symmetric, any length; attention is optional for it),
    # "positions" = the original's linear map of token i onto max_len positions (entry j = kinship
    # to the token at position j: only attention tells token i who sits at j)
    readout: str = "bilinear"
    # the original adds sinusoidal position encodings to the encoder input (a sentence is then a sequence)
    positional: bool = False
    # target: the kinship sub-matrix of the sentence, normalised over the whole matrix
    normalise: str = "minmax"
    min_len: int = 2
    max_len: int = 100
    # training
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    holdout: float = 0.2  # individuals never in a training sentence (the analysis's held-out set)
    seed: int = 0

    def __post_init__(self) -> None:
        for name, value, allowed in (("tokens", self.tokens, TOKENS), ("features", self.features, FEATURES),
                                     ("readout", self.readout, READOUTS), ("normalise", self.normalise, NORMALISATIONS),
                                     ("activation", self.activation, ACTIVATIONS)):
            if value not in allowed:
                raise ConfigError(f"seq2king {name}={value!r}: choose one of {', '.join(allowed)}")
        if not isinstance(self.positional, bool):
            raise ConfigError(f"seq2king positional={self.positional!r}: true or false")
        if self.d_model % self.n_heads:
            raise ConfigError(f"seq2king d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 2 <= self.min_len <= self.max_len:
            raise ConfigError(f"seq2king min_len={self.min_len}, max_len={self.max_len}: need 2 <= min_len <= max_len")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"seq2king holdout={self.holdout}: a fraction in (0, 1), e.g. 0.2")
        for name in ("n_anchors", "d_model", "n_heads", "n_encoder", "d_ff", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"seq2king {name}={getattr(self, name)}: must be at least 1")
        if self.n_decoder < 0 or not 0.0 <= self.dropout < 1.0 or self.lr <= 0:
            raise ConfigError(f"seq2king n_decoder={self.n_decoder}, dropout={self.dropout}, lr={self.lr}: "
                              "need n_decoder >= 0, 0 <= dropout < 1, lr > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The original's shape (EcotoneAI/Seq2KING): 3 encoder + 2 decoder layers, 1 head, width 120,
#: Tanh feed-forward of 512, global min-max target, sentences of 2-100 individuals, id tokens.
PRESETS: dict[str, dict[str, Any]] = {
    "seq2king_paper": {"tokens": "id"},
    "small": {"d_model": 32, "n_heads": 2, "n_encoder": 2, "n_decoder": 1, "d_ff": 64, "n_anchors": 16,
              "max_len": 24, "steps": 50, "batch_size": 8, "lr": 1e-3},
}


def _parse(field_type: str, key: str, text: str) -> Any:
    try:
        if field_type == "int":
            return int(text)
        if field_type == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"seq2king override {key}={text!r}: expected a number ({field_type})") from None
    if field_type == "bool":
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"seq2king override {key}={text!r}: expected true or false")
        return text.lower() == "true"
    return text


def make_config(preset: str = "seq2king_paper", overrides: dict[str, Any] | list[str] | tuple[str, ...] = ()) -> Seq2KingConfig:
    """A preset with ``key=value`` overrides (strings as on the command line, or a dict).

    Raises
    ------
    ConfigError : an unknown preset or key, a value of the wrong type or out of range.
    """
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    types = {f.name: f.type for f in fields(Seq2KingConfig)}
    items = dict(overrides) if isinstance(overrides, dict) else {}
    if not isinstance(overrides, dict):
        for item in overrides:
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"seq2king override {item!r}: write KEY=VALUE, e.g. steps=500")
            items[key] = value
    unknown = sorted(set(items) - set(types))
    if unknown:
        raise ConfigError(f"seq2king override {unknown[0]!r} is not a setting; known: {', '.join(types)}")
    values = {k: _parse(types[k], k, v) if isinstance(v, str) else v for k, v in items.items()}
    return replace(Seq2KingConfig(), **{**PRESETS[preset], **values})
