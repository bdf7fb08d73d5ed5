"""Decoded features for ``snpbag classify`` (``classifier.features: decoded``): the expected ALT
dosage of every site that the embedding model's own decoder reads out of a genome's patch
embeddings, standardised with the decoder's allele-frequency prior, ``z = (d - 2p) / sqrt(2p(1 - p))``.

Why: the genotypes are in the embedding (the decoder reconstructs them), but not linearly, and
a linear classifier on the decoded dosages separates fine-scale sub-populations better than one
on the embedding itself (docs/benchmarks.md, "Genome embeddings"). The map is fixed by the
embedding model (its ``site``/``slot`` readout and AF prior), so it is the same for every
training fold and for ``predict``, and the classifier directory carries it (the readout rows of
the embeddings' sites, the projection ``readout_in`` and the AF prior, copied from the
embedding model after checking that model wrote the embeddings).

Memory is bounded for whole-genome embeddings (millions of sites): nothing holds samples x
sites. The linear classifier's sufficient statistic is the Gram matrix ``Z Zᵀ`` of the
standardised dosages (samples x samples; snpbag.model.popclass.kernel_features), accumulated over
blocks of patches whose decoded dosages are at most ``BLOCK_NUMBERS`` numbers; a second pass
turns the fitted coefficients into one weight per class and site (classes x sites), and
``predict`` streams the same blocks against slices of those weights read from the classifier's
safetensors file. This is exact, unlike a randomised PCA: every site keeps its weight. Each block
reads its patches of every sample (a Zarr file chunked by samples is decompressed once per block).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from snpbag import modeldir
from snpbag.errors import InputError
from snpbag.inference.embedout import Embeddings

#: decoded dosages held at once (samples x sites of one block of patches), about 64 MiB in float64
BLOCK_NUMBERS = 1 << 23
PREFIX = "decoder."  # the decoder's tensors in the classifier's weights file
DECODERS = ("site", "slot")  # decoders whose readout is read per site (snpbag.model.heads.embed)


@dataclass
class Decoder:
    """The embedding model's decoder restricted to the sites of one embeddings file."""

    readout_in_weight: Any  # (r, dims) tensor
    readout_in_bias: Any  # (r,) tensor
    readout: Any  # (rows, 3 * (r + 1)) tensor, or a safetensors slice of one
    row: np.ndarray  # int64 (M,): each site's readout row, sites in patch order
    site_af: np.ndarray  # float32 (M,): the decoder's AF prior per site
    patch_sites: np.ndarray  # int64 (P,): sites per patch
    patch_first_pos: np.ndarray  # int64 (P,): the patches' first positions (checked at predict)
    scale: float  # the readout's readout_scale

    @property
    def n_sites(self) -> int:
        return int(self.row.size)

    def standardisation(self) -> tuple[np.ndarray, np.ndarray]:
        """(centre 2p, spread sqrt(2p(1 - p))) per site, p the AF prior clamped as the decoder's."""
        from snpbag.model.embedding import AF_EPS

        p = np.clip(np.where(self.site_af >= 0, self.site_af, 0.5), AF_EPS, 1 - AF_EPS).astype(np.float64)
        return 2 * p, np.sqrt(2 * p * (1 - p))

    def dosage(self, embedding: np.ndarray, patches: slice, sites: slice) -> np.ndarray:
        """float32 (n, sites) expected dosages of ``sites`` (the sites of ``patches``) from the
        (n, patches, dims) embedding block."""
        import torch

        from snpbag.model.heads.embed import decoded_dosage

        rows = self.row[sites]
        lo = int(rows.min()) if rows.size else 0
        table = torch.as_tensor(self.readout[lo:int(rows.max()) + 1 if rows.size else lo])
        with torch.no_grad():
            d = decoded_dosage(torch.from_numpy(embedding), (torch.as_tensor(self.readout_in_weight),
                                                             torch.as_tensor(self.readout_in_bias)),
                               table[torch.from_numpy(rows - lo)], torch.from_numpy(self.site_af[sites]),
                               self.patch_sites[patches].tolist(), self.scale)
        return d.numpy()

    def tensors(self) -> dict[str, Any]:
        """The decoder as named tensors, for the classifier's weights file."""
        import torch

        return {PREFIX + k: torch.as_tensor(v) for k, v in (
            ("readout_in.weight", self.readout_in_weight), ("readout_in.bias", self.readout_in_bias),
            ("readout", self.readout), ("row", self.row), ("site_af", self.site_af),
            ("patch_sites", self.patch_sites), ("patch_first_pos", self.patch_first_pos))}

    def meta(self) -> dict[str, Any]:
        return {"readout_scale": self.scale, "n_sites": self.n_sites}

    @classmethod
    def from_file(cls, handle, meta: dict[str, Any]) -> Decoder:
        """The decoder of an open safetensors ``handle`` (safetensors.safe_open); the readout
        table stays on disk and is read a block of rows at a time."""
        get = lambda k: handle.get_tensor(PREFIX + k)  # noqa: E731
        return cls(get("readout_in.weight"), get("readout_in.bias"), handle.get_slice(PREFIX + "readout"),
                   get("row").numpy(), get("site_af").numpy(), get("patch_sites").numpy(),
                   get("patch_first_pos").numpy(), float(meta["readout_scale"]))

    @classmethod
    def from_model(cls, directory: str | Path, emb: Embeddings) -> Decoder:
        """The decoder of the embedding model ``directory`` for the sites of ``emb``.

        Raises
        ------
        InputError : ``emb`` was written by another model, the model's decoder is not a
            per-site readout, or the embeddings are pooled.
        """
        emb.check_same_model(modeldir.identity(directory), what=f"--embedding-model {directory}")
        if len(emb.shape) != 3:
            raise InputError(f"{emb.path}: pooled embeddings (--pool mean) have no patches to decode; "
                             "embed with --pool none for classifier features: decoded")
        loaded = modeldir.read(directory)
        head = loaded.model.head
        if head.level != "patch" or getattr(head, "decoder", None) not in DECODERS:
            raise InputError(f"--embedding-model {directory}: decoder {getattr(head, 'decoder', head.name)!r} has no "
                             f"per-site readout to decode with (features: decoded reads decoder={' or '.join(DECODERS)}); "
                             "use features: embedding")
        first = _first_sites(loaded.vocab, head.patch, emb)
        n = emb.patches.n_sites.astype(np.int64)
        sites = np.concatenate([np.arange(a, a + k) for a, k in zip(first, n)]) if n.size else np.zeros(0, np.int64)
        row = sites if head.decoder == "site" else np.concatenate([np.arange(k) for k in n])
        lo, hi = int(row.min()), int(row.max()) + 1
        return cls(head.readout_in.weight.detach().clone(), head.readout_in.bias.detach().clone(),
                   head.readout.weight.detach()[lo:hi].clone(), (row - lo).astype(np.int64),
                   head.site_af.numpy()[sites].astype(np.float32), n, emb.patches.first_pos.astype(np.int64),
                   float(head.readout_scale))

    def check_patches(self, emb: Embeddings, *, what: str) -> None:
        """InputError unless ``emb`` has the patches this decoder was built for."""
        if len(emb.shape) != 3 or not (np.array_equal(emb.patches.n_sites, self.patch_sites)
                                       and np.array_equal(emb.patches.first_pos, self.patch_first_pos)):
            raise InputError(f"{emb.path}: its patches differ from those {what} was trained on "
                             f"({len(emb.patches)} against {self.patch_sites.size}); embed the same chromosomes "
                             "with --pool none")


def _first_sites(vocab, patch: int, emb: Embeddings) -> np.ndarray:
    """The model site index of each embeddings patch's first site (patches are a fixed grid of
    each model tile, as snpbag.inference.embed lays them out)."""
    index = {}
    for c in range(vocab.n_tiles):
        s = vocab.tile_sites(c)
        for a in range(s.start, s.stop, patch):
            b = min(a + patch, s.stop)
            index[(vocab.tile_chrom_name(c), int(vocab.position[a]), int(vocab.position[b - 1]), b - a)] = a
    p = emb.patches
    keys = list(zip(p.chrom.tolist(), p.first_pos.tolist(), p.last_pos.tolist(), p.n_sites.tolist()))
    missing = [k for k in keys if k not in index]
    if missing:
        raise InputError(f"{emb.path}: {len(missing)} patches (first {missing[0][0]}:{missing[0][1]}) are not patches of "
                         "the embedding model's sites; embed with that model")
    return np.array([index[k] for k in keys], np.int64)


def blocks(emb: Embeddings, rows: np.ndarray, decoder: Decoder, *,
           budget: int | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """(sites, standardised decoded dosages float64 (len(rows), sites)) over consecutive blocks
    of whole patches, each of at most ``budget`` numbers (default ``BLOCK_NUMBERS``) or one patch."""
    budget = budget or BLOCK_NUMBERS
    centre, spread = decoder.standardisation()
    ends = np.cumsum(decoder.patch_sites)
    starts = ends - decoder.patch_sites
    per = max(1, budget // max(len(rows), 1))
    p = 0
    while p < ends.size:
        q = p + 1
        while q < ends.size and ends[q] - starts[p] <= per:
            q += 1
        sites = slice(int(starts[p]), int(ends[q - 1]))
        d = decoder.dosage(emb.patch_block(rows, p, q), slice(p, q), sites).astype(np.float64)
        yield sites, (d - centre[sites]) / spread[sites]
        p = q


def gram(emb: Embeddings, rows: np.ndarray, decoder: Decoder) -> np.ndarray:
    """float64 (n, n) Gram matrix Z Zᵀ of the standardised decoded dosages of ``rows``."""
    out = np.zeros((len(rows), len(rows)))
    for _, z in blocks(emb, rows, decoder):
        out += z @ z.T
    return out


def site_weights(emb: Embeddings, rows: np.ndarray, decoder: Decoder, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weights (C, M) float32, offset (C,)): ``coef`` (C, n) on the centred standardised dosages
    of the training ``rows`` turned into one weight per class and site, ``coef @ (Z - mean)``,
    and ``weights @ mean``, which the bias subtracts so the weights read uncentred z."""
    w = np.zeros((coef.shape[0], decoder.n_sites), np.float32)
    offset = np.zeros(coef.shape[0])
    for sites, z in blocks(emb, rows, decoder):
        mean = z.mean(0)
        wb = coef @ (z - mean)  # (C, m)
        w[:, sites] = wb
        offset += wb @ mean
    return w, offset


def logits(emb: Embeddings, rows: np.ndarray, decoder: Decoder, weights, bias: np.ndarray) -> np.ndarray:
    """float64 (n, C) logits z @ weightsᵀ + bias, ``weights`` (C, M) an array or a safetensors
    slice read a block of sites at a time."""
    out = np.tile(np.asarray(bias, np.float64), (len(rows), 1))
    for sites, z in blocks(emb, rows, decoder):
        out += z @ np.asarray(weights[:, sites.start:sites.stop], np.float64).T
    return out
