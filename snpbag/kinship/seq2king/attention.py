"""Attention maps and token states of a trained Seq2KING model on given sentences (torch)."""

from __future__ import annotations

import numpy as np

from snpbag.kinship.seq2king.train import token_inputs


def collect(model, sentences: np.ndarray, *, features: np.ndarray | None,
            model_rows: np.ndarray | None, batch: int = 64) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({layer: (S, H, L, L) attention}, {layer: (S, L, C) token states}) of (S, L) unpadded sentences.

    Rows of every attention map sum to 1 (softmax over the sentence's keys)."""
    import torch

    attn: dict[str, list] = {}
    states: dict[str, list] = {}
    with torch.no_grad():
        for i in range(0, len(sentences), batch):
            tok, pad = token_inputs(sentences[i:i + batch], tokens=model.cfg.tokens, features=features,
                                    model_rows=model_rows)
            _, a, s = model(tok, pad, return_attn=True)
            for name, w in a.items():
                attn.setdefault(name, []).append(w.double().numpy())
                states.setdefault(name, []).append(s[name].double().numpy())
    return ({k: np.concatenate(v) for k, v in attn.items()}, {k: np.concatenate(v) for k, v in states.items()})
