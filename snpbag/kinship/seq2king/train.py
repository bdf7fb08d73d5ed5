"""Train a Seq2KING model on a kinship matrix (``snpbag seq2king train``); labels are never read.

Each step draws ``batch_size`` random sentences of ``min_len``..``max_len`` training
individuals and fits the normalised kinship sub-matrix with a masked MSE. With
``tokens="features"`` the held-out individuals never appear in a training sentence and the
report analyses them; with ``tokens="id"`` (the original, transductive) every individual is
trained and the report's sentences are new sets of the held-out individuals. Feature
tokens are the kinship to fixed anchor individuals (``features="anchors"``) or a genome
embedding standardised with the training individuals' mean and spread
(``features="embedding"``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from snpbag.errors import ConfigError
from snpbag.fileio import atomic_output
from snpbag.kinship.seq2king import checkpoint
from snpbag.kinship.seq2king.config import Seq2KingConfig
from snpbag.kinship.seq2king.inputs import Kinship, TokenVectors, read_kinship
from snpbag.kinship.seq2king.sentences import (Normaliser, choose_anchors, sample_sentences, split_individuals,
                                               targets)
from snpbag.provenance import provenance

log = logging.getLogger(__name__)


def token_inputs(sentences: np.ndarray, *, tokens: str, features: np.ndarray | None,
                 model_rows: np.ndarray | None = None):
    """(tokens, padding mask) tensors of (S, L) sentences of kinship rows.

    ``id``: the model's individual number (``model_rows`` maps kinship rows to it);
    ``features``: row ``features[r]`` (kinship rows x inputs, :func:`token_features`)."""
    import torch

    pad = torch.from_numpy(sentences < 0)
    idx = np.where(sentences < 0, 0, sentences)
    if tokens == "id":
        ids = idx if model_rows is None else model_rows[idx]
        return torch.from_numpy(np.where(sentences < 0, -1, ids)), pad
    return torch.from_numpy(features[idx].astype(np.float32)), pad


def token_features(kin: Kinship, cfg: Seq2KingConfig, *, norm_matrix: np.ndarray, anchors: np.ndarray,
                   embeddings: TokenVectors | None, scale: dict | None) -> np.ndarray | None:
    """The (kinship rows x inputs) matrix of feature tokens; None for ``id`` tokens.

    ``anchors``: the normalised kinship of every individual to the anchor rows. ``embedding``:
    each individual's genome embedding (matched by sample id) standardised per dimension with
    ``scale`` (the training individuals' mean and std, :func:`embedding_scale`)."""
    if cfg.tokens != "features":
        return None
    if cfg.features == "anchors":
        return norm_matrix[:, anchors]
    if embeddings is None:
        raise ConfigError("seq2king features=embedding needs --embeddings EMBEDDINGS (the output of "
                          "`snpbag embed --pool mean` for every individual of --kinship)")
    x = embeddings.matrix[embeddings.rows(kin.ids.tolist())].astype(np.float64)
    return (x - np.asarray(scale["mean"])) / np.asarray(scale["std"])


def embedding_scale(x: np.ndarray) -> dict:
    """Per-dimension mean and std (1 where constant) of embeddings ``x`` (n, D)."""
    x = x.astype(np.float64)
    sd = x.std(axis=0)
    return {"mean": x.mean(axis=0).tolist(), "std": np.where(sd > 0, sd, 1.0).tolist()}


def fit(kin: Kinship, cfg: Seq2KingConfig, *, embeddings: TokenVectors | None = None) -> tuple[object, dict]:
    """Train on ``kin`` (and, for ``features=embedding``, ``embeddings``); (model, metadata for
    the model directory)."""
    import torch

    from snpbag.kinship.seq2king.model import Seq2King, masked_mse

    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    n = len(kin.ids)
    train_rows, held_rows = split_individuals(n, cfg.holdout, rng)
    pool = train_rows if cfg.tokens == "features" else np.arange(n)
    anchors = choose_anchors(train_rows, cfg.n_anchors, rng)
    norm = Normaliser.fit(kin.matrix, cfg.normalise)
    km = norm(kin.matrix)
    scale = None  # the standardisation is a statistic of the training individuals only
    if cfg.tokens == "features" and cfg.features == "embedding" and embeddings is not None:
        scale = embedding_scale(embeddings.matrix[embeddings.rows(kin.ids.tolist())][train_rows])
    feats = token_features(kin, cfg, norm_matrix=km, anchors=anchors, embeddings=embeddings, scale=scale)
    model = Seq2King(cfg, n_individuals=n, n_inputs=len(anchors) if feats is None else feats.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses, t0 = [], time.perf_counter()
    model.train()
    for step in range(cfg.steps):
        sent = sample_sentences(pool, cfg.batch_size, min_len=cfg.min_len, max_len=cfg.max_len, rng=rng)
        tok, pad = token_inputs(sent, tokens=cfg.tokens, features=feats)
        loss = masked_mse(model(tok, pad), torch.from_numpy(targets(km, sent).astype(np.float32)), pad)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            losses.append([step, round(loss.item(), 6)])
            log.info("step %d loss %.5f", step, losses[-1][1])
    seconds = time.perf_counter() - t0
    model.eval()
    held_loss, constant_loss = _held_out_loss(model, km, feats, train_rows, held_rows, cfg, rng)
    ids = kin.ids.tolist()
    meta = {
        "config": asdict(cfg), "ids": ids, "training": [ids[i] for i in train_rows],
        "held_out": [ids[i] for i in held_rows], "anchors": [ids[i] for i in anchors], "normaliser": asdict(norm),
        "input": {"path": kin.source, "kind": kin.kind, "column": kin.column, "individuals": n},
        "embedding": None if scale is None else {"path": embeddings.source, "dim": int(feats.shape[1]),
                                                 "model": embeddings.identity, **scale},
        "record": {"seconds": round(seconds, 2), "losses": losses, "held_out_loss": held_loss,
                   "held_out_constant_loss": constant_loss,
                   "threads": torch.get_num_threads()},
        "provenance": provenance("seq2king train", asdict(cfg)),
    }
    return model, meta


def _held_out_loss(model, km, feats, train_rows, held_rows, cfg, rng) -> tuple[float, float]:
    """Masked MSE on 32 sentences of held-out individuals: the model's, and that of a constant
    prediction (the training pairs' mean) - what a model that learned no structure reaches."""
    import torch

    from snpbag.kinship.seq2king.model import masked_mse

    sent = sample_sentences(held_rows, 32, min_len=cfg.min_len, max_len=cfg.max_len, rng=rng)
    tok, pad = token_inputs(sent, tokens=cfg.tokens, features=feats)
    target = torch.from_numpy(targets(km, sent).astype(np.float32))
    sub = km[np.ix_(train_rows, train_rows)]
    mean = float(sub[~np.eye(len(train_rows), dtype=bool)].mean())
    constant = torch.full_like(target, mean)
    with torch.no_grad():
        return (round(float(masked_mse(model(tok, pad), target, pad)), 6),
                round(float(masked_mse(constant, target, pad)), 6))


def train(kinship: str | Path, *, out: str | Path, config: Seq2KingConfig, overwrite: bool = False,
          kinship_column: str = "KINSHIP", embeddings: TokenVectors | None = None) -> Path:
    """Train Seq2KING on ``kinship`` (a .kin0 table or a --matrix Zarr) and write a model directory.

    Parameters
    ----------
    kinship : PREFIX.kin0 of ``snpbag king`` (or any table with its #IID1, IID2, KINSHIP
        columns) or PREFIX.king.zarr of ``snpbag king --matrix``.
    out : the model directory to write (appears only when complete).
    config : :class:`Seq2KingConfig` (``make_config(preset, overrides)``).
    kinship_column : ``KINSHIP`` (KING's) or ``EXP_KINSHIP`` (``snpbag relate``'s expected
        kinship, from its PREFIX.rel); recorded in the model directory.
    embeddings : genome embeddings of every individual (``features=embedding`` only;
        ``snpbag.inference.seq2king.read_embeddings``).

    Returns
    -------
    The model directory.

    Raises
    ------
    InputError : an unreadable kinship input (see :func:`read_kinship`); ``out`` exists.
    ConfigError : ``features=embedding`` without ``embeddings``, or ``embeddings`` without it.
    SampleError : individuals of the kinship input without an embedding.
    """
    if embeddings is not None and (config.tokens, config.features) != ("features", "embedding"):
        raise ConfigError(f"--embeddings {embeddings.source}: the model's tokens are {config.tokens}"
                          f"{'/' + config.features if config.tokens == 'features' else ''}; add tokens=features "
                          "features=embedding to use them")
    kin = read_kinship(kinship, column=kinship_column)
    with atomic_output(out, overwrite=overwrite) as tmp:
        model, meta = fit(kin, config, embeddings=embeddings)
        checkpoint.save(model, meta, tmp)
    log.info("seq2king model: %s (%d individuals, %.1f s)", out, len(kin.ids), meta["record"]["seconds"])
    return Path(out)
