"""Training FLOPs per token of the encoder: the numerator of model FLOPs utilisation (MFU).

``6 N + 12 n_layers d_model window`` (PaLM's appendix B, with the attention term over the
``window`` keys a token sees rather than the whole sequence): N counts the weight matrices of
attention (4 d^2) and the feed-forward (2 d d_ff; 3 d d_ff for SwiGLU) per layer; 6 = forward (2) + backward (4) FLOPs per
weight per token; the second term is QK^T and AV, forward and backward. Embedding tables are
lookups and the heads are left out, as is conventional.
"""

from __future__ import annotations

from snpbag.config import ModelConfig


#: feed-forward weight matrices of d_model x d_ff per layer, by ``model.ffn``
FFN_MATRICES = {"gelu": 2, "swiglu": 3}


def encoder_matmul_params(*, n_layers: int, d_model: int, d_ff: int, ffn: str = "gelu") -> int:
    """Weights of the attention and feed-forward matrices of ``n_layers`` blocks (the
    non-embedding parameters of scaling laws, less norms and biases)."""
    return n_layers * (4 * d_model * d_model + FFN_MATRICES[ffn] * d_model * d_ff)


def training_flops_per_token(*, n_layers: int, d_model: int, d_ff: int, window: int, ffn: str = "gelu") -> int:
    """Forward + backward FLOPs per token of one training step."""
    params = encoder_matmul_params(n_layers=n_layers, d_model=d_model, d_ff=d_ff, ffn=ffn)
    return 6 * params + 12 * n_layers * d_model * window


def model_flops_per_token(cfg: ModelConfig) -> int:
    """:func:`training_flops_per_token` of a model config."""
    return training_flops_per_token(n_layers=cfg.n_layers, d_model=cfg.d_model, d_ff=cfg.d_ff, window=cfg.window,
                                    ffn=cfg.ffn)
