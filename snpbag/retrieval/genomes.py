"""What the nearest panel genomes carry at each site: a retrieval input for the encoder.

A small encoder trained for minutes cannot store a panel of thousands of genomes in its
weights, and it shows: plain nearest-genome voting beats the pretrained tiny model in every
MAF bin of the demo (docs/benchmarks.md, "k-nearest genomes"). :class:`NeighbourPanel`
keeps the panel's dosages at the vocabulary sites and, for one sequence, returns per site
the genotype fractions among the ``k`` panel genomes closest to it on the *visible* sites
within ``span`` sites either side (model.retrieval_span; distance: sum of |dosage difference| over sites
called in both). The site itself never counts towards the distance, so a visible token
carries no more than a hidden one, and a panel genome can be excluded (its own row in
training: leave-one-out, as a new genome will meet the panel at inference).

Cost per sequence of L sites: O(panel × L) for the distances over the span (cumulative
sums) plus a partial sort per site — milliseconds for thousands of panel genomes, so it
runs in the loader workers. Memory: the panel's dosages (genomes × sites, int8). This is
for panels of up to ~10^4 genomes; beyond that, haplotype indexes (PBWT) are the tool.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from snpbag.retrieval.panel import PanelRows
from snpbag.errors import InputError

#: Genotype classes voted for (ALT dosage 0, 1, 2).
N_CLASSES = 3

class NeighbourPanel(PanelRows):
    """Dosages (genomes × vocabulary sites, int8, −1 missing) of a reference panel.

    Parameters
    ----------
    dosage : (n_panel, n_sites) int8.
    span : sites either side of a site whose visible genotypes define the distance.
    k : panel genomes that vote.
    sample_ids : the panel's sample ids (saved with it, used to exclude a genome by id).
    """

    def __init__(self, dosage: np.ndarray, *, span: int = 128, k: int = 20, sample_ids=None,
                 store_rows: np.ndarray | None = None):
        dosage = np.asarray(dosage, dtype=np.int8)
        if dosage.ndim != 2 or dosage.shape[0] < 2:
            raise InputError(f"neighbour panel: need a (genomes >= 2, sites) dosage matrix, got {dosage.shape}")
        if span < 1 or k < 1:
            raise InputError(f"neighbour panel: span={span}, k={k}: both must be positive")
        # kept site-major: a site's genotypes across the panel are one contiguous row, which
        # the per-site loop of the kernel reads (genome-major it missed cache on every genome)
        self.by_site = np.ascontiguousarray(dosage.T)
        self.span, self.k = int(span), int(k)
        self.sample_ids = None if sample_ids is None else np.asarray(sample_ids, dtype=str)
        self.store_rows = None if store_rows is None else np.asarray(store_rows, dtype=np.int64)  # sorted

    @classmethod
    def from_store(cls, store, rows: np.ndarray, *, span: int = 128, k: int = 20) -> NeighbourPanel:
        """The panel of store samples ``rows`` (e.g. the training split) at every vocabulary site."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        voc = store.vocab
        parts = [store.read_dosage(c, rows) for c in range(voc.n_tiles)]
        dosage = np.concatenate(parts, axis=1) if parts else np.zeros((rows.size, 0), dtype=np.int8)
        return cls(dosage, span=span, k=k, sample_ids=np.asarray(store.sample_ids)[rows], store_rows=rows)

    @property
    def dosage(self) -> np.ndarray:
        """(n_panel, n_sites) int8 dosages (a view)."""
        return self.by_site.T

    @property
    def n_genomes(self) -> int:
        return self.by_site.shape[1]

    def votes(self, dosage: np.ndarray, sites: np.ndarray, *, exclude=None) -> np.ndarray:
        """Genotype fractions (L, 3) float32 among the nearest panel genomes, per site.

        Parameters
        ----------
        dosage : (L,) the sequence's visible dosages 0/1/2; any other value (missing,
            masked) is not visible. (B, L) for B sequences over the same sites (then
            ``exclude`` is one entry per sequence) gives (B, L, 3), reading the panel once.
        sites : (L,) vocabulary indices of its sites, increasing (one sequence).
        exclude : panel row(s) that may not vote: the sequence's own genome (−1: none), or
            for a synthetic genome the panel genomes its haplotypes were copied from.
        """
        g = np.asarray(dosage)
        if g.ndim == 2:
            ex = [None] * g.shape[0] if exclude is None else exclude
            panel = self.by_site[np.asarray(sites, dtype=np.int64)]
            return np.stack([self._votes(panel, row, e) for row, e in zip(g, ex)]) if g.shape[0] else \
                np.zeros((0, panel.shape[0], N_CLASSES), dtype=np.float32)
        return self._votes(self.by_site[np.asarray(sites, dtype=np.int64)], g, exclude)

    def _votes(self, panel: np.ndarray, g: np.ndarray, exclude) -> np.ndarray:
        """:meth:`votes` of one sequence, given the panel at its sites (L, n)."""
        L, n = panel.shape
        out = np.zeros((L, N_CLASSES), dtype=np.float32)
        if L == 0:
            return out
        vis = ((g >= 0) & (g <= 2)).astype(np.int8)
        allowed = np.ones(n, dtype=np.int8)
        if exclude is not None:
            ex = np.atleast_1d(np.asarray(exclude, dtype=np.int64))
            allowed[ex[(ex >= 0) & (ex < n)]] = 0
        k = min(self.k, int(allowed.sum()))
        if k > 0:
            _votes(panel, np.where(vis, g, 0).astype(np.int8), vis, allowed, self.span, k, out)
        return out

    def save(self, path: str | Path) -> None:
        """Write the panel as one ``.npz`` (dosages, ids, span, k) at exactly ``path``. The span
        is stored under the key ``window``, the file format's name for it."""
        with open(path, "wb") as fh:  # a file object: numpy would append ".npz" to a temporary name
            np.savez_compressed(fh, dosage=self.dosage, window=self.span, k=self.k,
                                sample_ids=self.sample_ids if self.sample_ids is not None else np.zeros(0, dtype=str))

    @classmethod
    def load(cls, path: str | Path) -> NeighbourPanel:
        try:
            with np.load(path, allow_pickle=False) as z:
                ids = z["sample_ids"]
                return cls(z["dosage"], span=int(z["window"]), k=int(z["k"]), sample_ids=ids if ids.size else None)
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: not a snpbag neighbour panel ({type(e).__name__}: {e}); "
                             "re-export the model") from e


@njit(cache=True, nogil=True)
def _votes(panel, g, vis, allowed, span, k, out):  # pragma: no cover - compiled
    """out[s] = genotype fractions among the k panel genomes nearest to g around site s.

    ``panel`` is (L, n) site-major, so every loop walks contiguous rows (the running sums
    too: ``cs[t]`` holds every genome's mismatch up to site t).

    Distances are small integers (at most 2 per site of the span), so the k nearest are
    found by counting: a histogram of the distances gives the cut, and rows at the cut
    vote in row order — the ties broken as a stable sort would, in O(panel) per site.
    """
    L, n = panel.shape
    cs = np.zeros((L + 1, n), dtype=np.int32)  # running mismatch over visible sites called in both
    for t in range(L):
        if vis[t]:
            gt = np.int32(g[t])
            for i in range(n):
                x = panel[t, i]
                cs[t + 1, i] = cs[t, i] + (abs(np.int32(x) - gt) if x >= 0 else 0)
        else:
            cs[t + 1] = cs[t]
    dist = np.empty(n, dtype=np.int64)
    hist = np.zeros(2 * (2 * span + 1) + 2, dtype=np.int64)
    for s in range(L):
        lo = max(0, s - span)
        hi = min(L, s + span + 1)
        hist[:] = 0
        for i in range(n):
            d = np.int64(cs[hi, i] - cs[lo, i] - (cs[s + 1, i] - cs[s, i]))  # the site itself left out
            dist[i] = d
            if allowed[i]:
                hist[d] += 1
        cut = 0
        below = 0
        while below + hist[cut] < k:
            below += hist[cut]
            cut += 1
        at_cut = k - below
        total = 0.0
        for i in range(n):
            if not allowed[i]:
                continue
            d = dist[i]
            if d > cut:
                continue
            if d == cut:
                if at_cut == 0:
                    continue
                at_cut -= 1
            x = panel[s, i]
            if x >= 0:
                out[s, x] += 1.0
                total += 1.0
        if total > 0:
            for c in range(3):
                out[s, c] /= total
