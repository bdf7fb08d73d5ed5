"""Training FLOPs per token of the encoder: the numerator of model FLOPs utilisation (MFU).

``6 N + 12 n_layers d_model window`` (PaLM's appendix B, with the attention term over the
``window`` keys a token sees rather than the whole sequence): N counts the weight matrices of
attention (4 d^2) and the MLP (2 d d_ff) per layer; 6 = forward (2) + backward (4) FLOPs per
weight per token; the second term is QK^T and AV, forward and backward. Embedding tables are
lookups and the heads are left out, as is conventional.
"""

from __future__ import annotations

from snpbag.config import ModelConfig


def encoder_matmul_params(*, n_layers: int, d_model: int, d_ff: int) -> int:
    """Weights of the attention and MLP matrices of ``n_layers`` blocks."""
    return n_layers * (4 * d_model * d_model + 2 * d_model * d_ff)


def training_flops_per_token(*, n_layers: int, d_model: int, d_ff: int, window: int) -> int:
    """Forward + backward FLOPs per token of one training step."""
    params = encoder_matmul_params(n_layers=n_layers, d_model=d_model, d_ff=d_ff)
    return 6 * params + 12 * n_layers * d_model * window


def model_flops_per_token(cfg: ModelConfig) -> int:
    """:func:`training_flops_per_token` of a model config."""
    return training_flops_per_token(n_layers=cfg.n_layers, d_model=cfg.d_model, d_ff=cfg.d_ff, window=cfg.window)
