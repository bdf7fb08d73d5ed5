"""What ``snpbag relate`` reads per pair: per-patch KING counts, patch embeddings, or both.

A relate model is trained on one kind of input (``RelateConfig.inputs``) and called on the
same kind:

``counts``
    the pair's KING counts per patch of ``patch_sites`` consecutive SNPs of a VCF or store
    (:mod:`snpbag.kinship.pairfeatures`), plus their genome-wide numbers.
``embeddings``
    the two genomes' patch embeddings from ``snpbag embed`` (one vector per patch of the embedding
    model's sites), turned into symmetric per-patch features by
    :func:`snpbag.model.relate.embedding_pair_features` (|e1 − e2|, e1·e2) plus two genome-wide
    numbers. Computed per batch of pairs from the per-genome vectors, so memory is genomes ×
    patches × dims, not pairs × patches × dims.
``both``
    the two sequences one after the other along the patch axis (the two patch grids differ:
    counts follow the input's SNPs, embeddings the model's sites), each feature vector padded
    with zeros for the other kind's features and a last column saying which kind it is; the
    genome-wide numbers of both.

Embeddings are only comparable with those the model was trained on: the embedding model's
identity (weights and site-list digests) and the patch table are recorded at training and
checked when calling (:func:`check_embeddings`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from snpbag.errors import InputError
from snpbag.inference import embedout
from snpbag.kinship import pairfeatures as pf


@dataclass
class PairData:
    """Pairs of one input with their evidence; ``y`` degree classes, ``sub`` degree-2 types (−1 unknown)."""

    ids: list[str]
    pairs: np.ndarray  # (n, 2) sample indices into ids
    counts: np.ndarray | None  # (n, patches, 5) KING counts per patch; None without genotypes
    variants: int
    y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    family: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per pair, −1 if across
    sub: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # per pair, −1 unless degree 2
    emb: np.ndarray | None = None  # (len(ids), patches, dims) float32 patch embeddings, rows in ids order
    emb_valid: np.ndarray | None = None  # (patches,) bool: patches not flagged by `snpbag embed`
    extra: np.ndarray | None = None  # (n, E) float32 genome-wide numbers appended to the summary (ERSA's, say)

    def subset(self, keep: np.ndarray) -> PairData:
        """The pairs where ``keep`` is true (same genomes)."""
        pick = (lambda a: a[keep] if a is not None and len(a) else a)  # noqa: E731
        return PairData(self.ids, self.pairs[keep], pick(self.counts), self.variants, pick(self.y),
                        pick(self.family), pick(self.sub), self.emb, self.emb_valid, pick(self.extra))


@dataclass
class EmbeddingInput:
    """Patch embeddings opened for ``snpbag relate``: float32 vectors per genome, their validity, identity."""

    path: Path
    samples: list[str]
    vectors: np.ndarray  # (samples, patches, dims) float32
    valid: np.ndarray  # (patches,) bool
    identity: dict[str, Any]
    patch_digest: str

    def rows_for(self, ids: list[str], *, what: str) -> np.ndarray:
        """Rows of ``ids`` in these embeddings; InputError naming the first missing one."""
        index = {s: k for k, s in enumerate(self.samples)}
        missing = [s for s in ids if s not in index]
        if missing:
            raise InputError(f"--embeddings {self.path}: sample {missing[0]!r} of {what} is not embedded "
                             f"({len(missing)} missing); embed the same samples with `snpbag embed`")
        return np.array([index[s] for s in ids], dtype=np.int64)

    def record(self) -> dict[str, Any]:
        """What a relate model keeps of the embeddings it was trained on."""
        return {"model": self.identity, "patches": int(self.vectors.shape[1]), "dims": int(self.vectors.shape[2]),
                "patch_digest": self.patch_digest}


def read_embedding_input(path: str | Path) -> EmbeddingInput:
    """Open ``snpbag embed`` output for relate (per-patch vectors, not ``--pool mean``).

    Raises
    ------
    InputError : not an embeddings file, or pooled embeddings.
    """
    e = embedout.read_embeddings(path)
    if e.attrs.get("pool") == "mean" or len(e.shape) != 3:
        raise InputError(f"{path}: embeddings pooled over the genome (--pool mean) have no patches to compare; "
                         "re-run `snpbag embed` with --pool none")
    p = e.patches  # the site set: where each patch lies and how many model sites it has (not how many are typed)
    table = "\n".join(f"{c}\t{a}\t{b}\t{n}" for c, a, b, n in zip(p.chrom.tolist(), p.first_pos.tolist(),
                                                               p.last_pos.tolist(), p.n_sites.tolist()))
    return EmbeddingInput(Path(path), e.samples, e.matrix(flat=False), ~np.asarray(e.patches.flagged, bool),
                          e.identity, hashlib.sha256(table.encode()).hexdigest())


def check_embeddings(emb: EmbeddingInput, trained: dict[str, Any]) -> None:
    """InputError unless ``emb`` comes from the embedding model and site set the relate model was trained on."""
    mine, theirs = emb.identity, trained.get("model") or {}
    for key in ("weights_sha256", "vocab_sha256"):
        if mine.get(key) != theirs.get(key):
            raise InputError(f"--embeddings {emb.path}: made by model {mine.get('name')!r} ({key} "
                             f"{str(mine.get(key))[:12]}), but this relate model was trained on embeddings of model "
                             f"{theirs.get('name')!r} ({str(theirs.get(key))[:12]}); embed with that model")
    if emb.patch_digest != trained.get("patch_digest"):
        raise InputError(f"--embeddings {emb.path}: {emb.vectors.shape[1]:,} patches over other sites than the "
                         f"{trained.get('patches'):,} this relate model was trained on (another site set or region); "
                         "embed genomes typed at the training input's sites")


def n_features(inputs: str, dims: int) -> int:
    """Features per patch of each input kind."""
    return {"counts": len(pf.FEATURES), "embeddings": 2 * dims, "both": len(pf.FEATURES) + 2 * dims + 1}[inputs]


class Features:
    """Network inputs (x (B, P, F), mask (B, P), summary (B, G)) of any rows of a PairData."""

    def __init__(self, data: PairData, inputs: str, patch_sites: int):
        import torch

        self.inputs, self.n = inputs, len(data.pairs)
        if inputs in ("counts", "both"):
            if data.counts is None:
                raise InputError("this relate model reads genotypes (KING counts per patch); give a VCF or store "
                                 "as --input")
            x, m = pf.patch_features(data.counts, patch_sites=patch_sites)
            self.x_c, self.m_c = torch.from_numpy(x), torch.from_numpy(m)
            self.s_c = torch.from_numpy(pf.pair_summary(data.counts))
        if inputs in ("embeddings", "both"):
            if data.emb is None:
                raise InputError("this relate model reads patch embeddings; give `snpbag embed` output "
                                 "(--embeddings, or --input for an embeddings-only model)")
            self.e = torch.from_numpy(np.ascontiguousarray(data.emb, np.float32))  # (samples, P, D)
            self.e_valid = torch.from_numpy(np.asarray(data.emb_valid, bool))  # (P,)
            self.pairs = torch.from_numpy(np.asarray(data.pairs, np.int64))
        self.extra = None if data.extra is None else torch.from_numpy(np.ascontiguousarray(data.extra, np.float32))

    def __len__(self) -> int:
        return self.n

    def batch(self, rows):
        """(x, mask, summary) of ``rows`` (a LongTensor of pair indices)."""
        import torch

        from snpbag.model.relate import embedding_pair_features, embedding_pair_summary

        parts = []
        if self.inputs in ("counts", "both"):
            parts.append((self.x_c[rows], self.m_c[rows], self.s_c[rows]))
        if self.inputs in ("embeddings", "both"):
            e1, e2 = self.e[self.pairs[rows, 0]], self.e[self.pairs[rows, 1]]  # (B, P, D)
            m = self.e_valid.expand(len(rows), -1)  # (B, P)
            parts.append((embedding_pair_features(e1, e2), m, embedding_pair_summary(e1, e2, m)))
        if self.extra is not None:
            x, m, s = parts[-1]
            parts[-1] = (x, m, torch.cat([s, self.extra[rows]], -1))
        if len(parts) == 1:
            return parts[0]
        (xc, mc, sc), (xe, me, se) = parts
        b = len(rows)
        xc = torch.cat([xc, xc.new_zeros(b, xc.shape[1], xe.shape[-1]), xc.new_ones(b, xc.shape[1], 1)], -1)
        xe = torch.cat([xe.new_zeros(b, xe.shape[1], self.x_c.shape[-1]), xe, xe.new_zeros(b, xe.shape[1], 1)], -1)
        return torch.cat([xc, xe], 1), torch.cat([mc, me], 1), torch.cat([sc, se], -1)
