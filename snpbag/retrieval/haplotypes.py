"""Genotype probabilities from copying panel haplotypes: the phased retrieval input.

The genome-level retrieval (:mod:`snpbag.retrieval.genomes`) votes with whole panel genomes,
but a genome is two haplotypes inherited from different ancestors: its nearest panel
genome usually shares one of them, so the votes stay a mixture and accuracy stalls well
below Beagle's (docs/benchmarks.md, impute_vs_peers). Beagle, IMPUTE and minimac model a
target as a mosaic of panel *haplotypes* (Li & Stephens 2003). :class:`HaplotypePanel`
does the same for each sequence the encoder reads and hands it the result, per site, as
the probabilities of ALT dosage 0/1/2 — the same (L, 3) input as the genome votes, so the
encoder and the tasks do not change.

For an unphased diploid sequence the hidden state is an ordered pair of panel haplotypes
(one per copy); each copy switches to another haplotype with probability
ρ = 1 − exp(−0.04·Ne·Δcm / H) between consecutive visible sites (Beagle's
parameterisation: H panel haplotypes, Ne the effective population size), and a visible
genotype is emitted as the pair's allele sum with error ``eps``. Because the two copies
switch independently, one forward or backward step over the K² pair states costs O(K²)
rather than O(K⁴). Phasing is implicit: the pair posterior is summed, never split.

To keep K small the states are chosen per block of visible sites: the K haplotypes with
the fewest opposite-homozygous conflicts with the sequence over the block and a margin
either side (ties broken by conflicts over a twice wider span, then by a fixed
pseudo-random order, so no population is favoured by its row order in the panel). The
forward-backward runs over block + margins and keeps the posteriors of the block, so each
block sees its margins as context. A hidden site between two visible ones gets the pair
posteriors of both, interpolated linearly in cM, as Beagle does.

A sequence's own haplotypes (leave-one-out in training) and, for a synthetic genome, the
panel genomes it was recombined from, can be excluded, as in :mod:`snpbag.retrieval.genomes`.
Cost per sequence: O(V × H) to find candidates plus O(3·V × K²) for the HMM, V visible
sites — a few ms for a 512-site training sequence, tenths of a second for a whole
chromosome of array sites.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from numba import njit

from snpbag.io.genmap import genetic_positions, read_genetic_map
from snpbag.retrieval.panel import PanelRows
from snpbag.retrieval.states import SELECTIONS, composite_panel, count_allowed, rank_states
from snpbag.errors import InputError


class HaplotypePanel(PanelRows):
    """Phased panel haplotypes at the vocabulary sites, with the sites' genetic positions.

    Parameters
    ----------
    haplotypes : (n_genomes, n_sites, 2) int8 alleles 0/1 — phased, no missing calls
        (as Beagle and minimac require of a reference panel).
    cm : (n_sites,) genetic position of every site in cM, non-decreasing within a chromosome.
    states : K, the haplotypes kept per block of visible sites.
    block, margin : visible sites per block, and visible sites of context either side.
    ne : effective population size in the switch probability.
    eps : probability that a visible genotype disagrees with the copied pair.
    selection : ``conflicts`` (K haplotypes per block) or ``composite`` (K composite
        haplotypes per sequence, persistent across blocks): :mod:`snpbag.retrieval.states`.
    sample_ids : the panel's sample ids.
    store_rows : the store rows of the panel genomes (sorted), for leave-one-out.
    """

    def __init__(self, haplotypes: np.ndarray, cm: np.ndarray, *, states: int = 48, block: int = 64,
                 margin: int = 64, ne: float = 1e5, eps: float = 1e-3, selection: str = "conflicts",
                 sample_ids=None, store_rows: np.ndarray | None = None):
        h = np.asarray(haplotypes)
        if h.ndim != 3 or h.shape[2] != 2 or h.shape[0] < 2:
            raise InputError(f"haplotype panel: need (genomes >= 2, sites, 2) alleles, got {h.shape}")
        if h.size and (h.min() < 0 or h.max() > 1):
            raise InputError("haplotype panel: alleles must be 0/1 with no missing calls (phase and fill the "
                             "reference panel first, e.g. with Beagle, as for any imputation panel)")
        cm = np.asarray(cm, dtype=np.float64)
        if cm.shape != (h.shape[1],):
            raise InputError(f"haplotype panel: {cm.shape[0] if cm.ndim else 0} genetic positions for {h.shape[1]} sites")
        if states < 1 or block < 1 or margin < 1 or ne <= 0 or not 0 < eps < 0.5:
            raise InputError(f"haplotype panel: states={states}, block={block}, margin={margin}, ne={ne}, eps={eps}: "
                             "need states, block, margin >= 1, ne > 0 and 0 < eps < 0.5")
        if selection not in SELECTIONS:
            raise InputError(f"haplotype panel: state selection {selection!r}; use one of {', '.join(SELECTIONS)}")
        # site-major, one row of 2·n alleles per site (genome g's copies at 2g, 2g+1): the
        # kernels' per-site loops read contiguous rows
        self.by_site = np.ascontiguousarray(h.astype(np.int8, copy=False).transpose(1, 0, 2).reshape(h.shape[1], -1))
        self.cm = cm
        self.states, self.block, self.margin = int(states), int(block), int(margin)
        self.ne, self.eps = float(ne), float(eps)
        self.selection = selection
        self.sample_ids = None if sample_ids is None else np.asarray(sample_ids, dtype=str)
        self.store_rows = None if store_rows is None else np.asarray(store_rows, dtype=np.int64)

    @classmethod
    def from_store(cls, store, rows: np.ndarray, *, genetic_map: str | Path | None = None,
                   **options) -> HaplotypePanel:
        """The panel of store samples ``rows`` at every vocabulary site.

        Genetic positions from ``genetic_map`` (PLINK .map or HapMap-style,
        :mod:`~snpbag.io.genmap`) or, without one, 1 cM/Mb.
        """
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        voc = store.vocab
        parts = [store.read_haplotypes(c, rows) for c in range(voc.n_tiles)]
        h = np.concatenate(parts, axis=1) if parts else np.zeros((rows.size, 0, 2), dtype=np.int8)
        if (h < 0).any():
            raise InputError(f"{store.path}: the haplotype panel has missing calls; impute or fill the reference "
                             "panel first (Beagle), or use the genome-level retrieval (model.retrieval=genomes)")
        het = h[:, :, 0] != h[:, :, 1]
        for c in range(voc.n_tiles) if het.any() else ():  # unphased hets would copy made-up haplotypes
            sl = voc.tile_sites(c)
            phased = store.read_phased(np.arange(sl.start, sl.stop), rows)
            bad = 0 if phased is None else int((het[:, sl] & ~phased).sum())
            if bad:
                raise InputError(f"{store.path}: the haplotype panel is not phased ({bad:,} heterozygous calls "
                                 "unphased); phase the reference panel first (Beagle, SHAPEIT), or use the "
                                 "genome-level retrieval (model.retrieval=genomes)")
        gmap = None if genetic_map is None else read_genetic_map(genetic_map)
        cm = np.empty(voc.n_sites, dtype=np.float64)
        for c in range(voc.n_tiles):  # tiles cover the vocabulary
            sl = voc.tile_sites(c)
            cm[sl] = genetic_positions(voc.position[sl], chrom=voc.tile_chrom_name(c), genetic_map=gmap)
        return cls(h, cm, sample_ids=np.asarray(store.sample_ids)[rows], store_rows=rows, **options)

    @property
    def n_genomes(self) -> int:
        return self.by_site.shape[1] // 2

    @property
    def haplotypes(self) -> np.ndarray:
        """(n_genomes, n_sites, 2) alleles (a copy)."""
        return self.by_site.reshape(self.by_site.shape[0], -1, 2).transpose(1, 0, 2).copy()

    def votes(self, dosage: np.ndarray, sites: np.ndarray, *, exclude=None, threads: int | None = None,
              loo: bool = False):
        """Probabilities (L, 3) float32 of ALT dosage 0/1/2 at each site of a sequence.

        Parameters
        ----------
        dosage : (L,) the sequence's visible dosages 0/1/2 (anything else is hidden), or
            (B, L) for B sequences over the same sites (``exclude`` then one entry each).
        sites : (L,) vocabulary indices of its sites, increasing (one tile).
        exclude : panel genome row(s) whose haplotypes may not be copied (−1: none).
        threads : sequences computed at once for (B, L) input (default: the usable cores).
        loo : also return, from the same pass, the leave-one-out probabilities of every
            visible site: the posterior given all *other* visible sites (its own emission
            divided out of the forward–backward product, as minimac's LooDosage), NaN at
            hidden sites. The K states were still chosen with the site's genotype counted
            among the block's conflicts, so this is the copying model's leave-one-out for
            fixed candidates. Returns ``(probs, loo_probs)`` then, both of one shape.
        """
        g = np.asarray(dosage)
        sites = np.asarray(sites, dtype=np.int64)
        panel, cm = self.by_site[sites], self.cm[sites]
        if g.ndim == 2:
            ex = [None] * g.shape[0] if exclude is None else list(exclude)
            if not g.shape[0]:
                empty = np.zeros((0, sites.size, 3), dtype=np.float32)
                return (empty, empty.copy()) if loo else empty
            n_threads = min(g.shape[0], threads or len(os.sched_getaffinity(0)))
            if n_threads <= 1:
                parts = [self._probs(panel, cm, row, e, loo) for row, e in zip(g, ex)]
            else:
                with ThreadPoolExecutor(n_threads) as pool:  # the kernel releases the GIL
                    parts = list(pool.map(lambda i: self._probs(panel, cm, g[i], ex[i], loo), range(g.shape[0])))
            probs = np.stack([p for p, _ in parts])
            return (probs, np.stack([q for _, q in parts])) if loo else probs
        probs, held = self._probs(panel, cm, g, exclude, loo)
        return (probs, held) if loo else probs

    def _probs(self, panel: np.ndarray, cm: np.ndarray, g: np.ndarray, exclude, loo: bool = False):
        L, nh = panel.shape
        out = np.zeros((L, 3), dtype=np.float32)
        held = np.full((L if loo else 0, 3), np.nan, dtype=np.float32)
        if L == 0:
            return out, held
        allowed = np.ones(nh, dtype=np.bool_)
        if exclude is not None:
            ex = np.atleast_1d(np.asarray(exclude, dtype=np.int64))
            ex = ex[(ex >= 0) & (ex < nh // 2)]
            allowed[2 * ex] = False
            allowed[2 * ex + 1] = False
        if not allowed.any():
            return out, held
        gi = np.where((g >= 0) & (g <= 2), g, -1).astype(np.int8)
        n_ref = 0
        if self.selection == "composite" and (gi >= 0).any():  # copy from the sequence's composite haplotypes
            n_ref = int(allowed.sum())
            panel = composite_panel(panel, gi, allowed=allowed, states=self.states, genotype=True)
            allowed = np.ones(panel.shape[1], dtype=np.bool_)
        _copy_probs(panel, gi, cm, allowed, n_ref, self.states, self.block, self.margin, self.ne, self.eps,
                    conflict_stride(self.block, self.margin), out, held)
        return out, held

    def save(self, path: str | Path) -> None:
        """Write the panel as one ``.npz`` at exactly ``path`` (alleles bit-packed)."""
        with open(path, "wb") as fh:
            np.savez_compressed(fh, bits=np.packbits(self.by_site, axis=1), n_haplotypes=self.by_site.shape[1],
                                cm=self.cm,
                                states=self.states, block=self.block, margin=self.margin, ne=self.ne, eps=self.eps,
                                selection=self.selection,
                                sample_ids=self.sample_ids if self.sample_ids is not None else np.zeros(0, dtype=str))

    @classmethod
    def load(cls, path: str | Path) -> HaplotypePanel:
        try:
            with np.load(path, allow_pickle=False) as z:
                nh = int(z["n_haplotypes"])
                by_site = np.unpackbits(z["bits"], axis=1, count=nh).view(np.int8)  # 0/1: a view, no copy
                ids = z["sample_ids"]
                # a genome-major view of the site-major bits: the constructor's transpose
                # back to site-major is then a plain contiguous copy-free reshape
                h = by_site.reshape(by_site.shape[0], nh // 2, 2).transpose(1, 0, 2)
                return cls(h, z["cm"], states=int(z["states"]), block=int(z["block"]), margin=int(z["margin"]),
                           ne=float(z["ne"]), eps=float(z["eps"]), sample_ids=ids if ids.size else None,
                           selection=str(z["selection"]) if "selection" in z else "conflicts")
        except (OSError, KeyError, ValueError) as e:
            raise InputError(f"{path}: not a snpbag haplotype panel ({type(e).__name__}: {e}); "
                             "re-export the model") from e


def conflict_stride(block: int, margin: int) -> int:
    """Visible sites between the rows of the conflict table that block selection reads: every
    block start and margin edge is a multiple of gcd(block, margin), or the end."""
    return math.gcd(block, margin)


@njit(cache=True, nogil=True)
def select_states(cc, w0, w1, v0, v1, n_wide, allowed, K, out):  # pragma: no cover - compiled
    """out[:K] = the K allowed haplotypes with the fewest conflicts between rows w0 and w1 of
    the running conflict table (:func:`conflicts`: the block and its margins), ties by
    conflicts between rows v0 and v1 (``n_wide`` visible sites), then by a fixed hash of the row."""
    rank_states(cc[w1] - cc[w0], cc[v1] - cc[v0], np.int64(n_wide + 1), allowed, K, out)


@njit(cache=True, nogil=True, fastmath=True)
def _pair_gp(P, r, x, K):  # pragma: no cover - compiled
    """(P0, P1, P2): probabilities of allele sum 0/1/2 under the symmetric pair posterior P
    (row sums r) when the K states carry alleles x — summed over the smaller allele class."""
    n1 = 0
    for i in range(K):
        n1 += x[i]
    want = 1 if n1 <= K - n1 else 0  # the class summed over
    both = 0.0
    one = 0.0
    for i in range(K):
        if x[i] != want:
            continue
        one += r[i]
        for j in range(K):
            if x[j] == want:
                both += P[i, j]
    other = max(0.0, 1.0 - 2.0 * one + both)  # both copies in the other class
    if want == 1:
        p2, p0 = both, other
    else:
        p0, p2 = both, other
    p1 = max(0.0, 1.0 - p0 - p2)
    return p0, p1, p2


@njit(cache=True, nogil=True, fastmath=True)
def emission_rows(panel, s, gt, cand, K, hit, miss, x, ev):  # pragma: no cover - compiled
    """x = the candidates' alleles at site s; ev[a][j] = P(genotype gt | alleles a and x[j]).

    Allele 2 means "0 or 1, equally likely" (a panel of unphased genotypes, the start of
    cohort phasing, codes its heterozygotes so); ev then has a third row, a = 2."""
    alleles_at(panel, s, cand, K, x)
    for j in range(K):
        for a in range(ev.shape[0]):
            if a < 2 and x[j] < 2:
                ev[a, j] = hit if a + x[j] == gt else miss
            else:
                acc = 0.0
                for a1 in range(2):
                    for x1 in range(2):
                        if (a == 2 or a1 == a) and (x[j] == 2 or x1 == x[j]):
                            acc += hit if a1 + x1 == gt else miss
                ev[a, j] = acc / ((2 if a == 2 else 1) * (2 if x[j] == 2 else 1))


@njit(cache=True, nogil=True, fastmath=True)
def _row_sums(A, K, r):  # pragma: no cover - compiled
    """r[i] = sum of row i of A (K × K); returns the total."""
    tot = 0.0
    for i in range(K):
        row = A[i]
        acc = np.float32(0.0)
        for j in range(K):
            acc += row[j]
        r[i] = acc
        tot += acc
    return tot


@njit(cache=True, nogil=True, fastmath=True)
def normalise(A, K):  # pragma: no cover - compiled
    z = np.float32(0.0)
    for i in range(K):
        row = A[i]
        for j in range(K):
            z += row[j]
    inv = np.float32(1.0) / z
    for i in range(K):
        row = A[i]
        for j in range(K):
            row[j] *= inv


@njit(cache=True, nogil=True)
def conflicts(panel, g, vis, stride):  # pragma: no cover - compiled
    """Running opposite-homozygote conflicts of every haplotype with genotypes g over the
    visible sites ``vis``, kept every ``stride`` visible sites and at the end (a span's count
    is a difference of two rows, :func:`_cc_row`): all the block selection reads. A table of
    every site was sites x haplotypes x 4 bytes per sequence, tens of MB freshly faulted in.
    Returns the table and the index of its last row (the counts over all of ``vis``)."""
    m = vis.size
    nh = panel.shape[1]
    last = m // stride + 1
    cc = np.zeros((last + 1, nh), dtype=np.int32)
    run = np.zeros(nh, dtype=np.int32)
    for t in range(m):
        s = vis[t]
        gt = g[s]
        for h in range(nh):
            x = panel[s, h]
            if (gt == 0 and x == 1) or (gt == 2 and x == 0):
                run[h] += 1
        if (t + 1) % stride == 0:
            cc[(t + 1) // stride, :] = run
    cc[last, :] = run
    return cc, last


@njit(cache=True, nogil=True)
def switch_rho(cm, s0, s1, ne, n_allowed):  # pragma: no cover - compiled
    """Probability that one copy switches haplotype between sites s0 < s1 (module doc)."""
    return 1.0 - np.exp(-0.04 * ne * max(0.0, cm[s1] - cm[s0]) / n_allowed)


@njit(cache=True, nogil=True, fastmath=True)
def advance(prev, cur, ev, x, K, rho, rsum):  # pragma: no cover - compiled
    """cur = emission × transition(prev) over the K × K pair states, unnormalised.

    Each copy keeps its haplotype with 1 − ρ or jumps to any of the K with ρ/K, so the
    step is O(K²): a pair's emission depends only on its two alleles, so row i reads the
    emission vector of its own allele over all j (branch-free inner loops over contiguous
    rows, which vectorise)."""
    a = np.float32((1.0 - rho) * (1.0 - rho))
    bb = np.float32((1.0 - rho) * rho / K)
    tot = _row_sums(prev, K, rsum)
    c = np.float32((rho / K) * (rho / K) * tot)
    for i in range(K):
        e = ev[x[i]]
        p = prev[i]
        row = cur[i]
        base = bb * rsum[i] + c
        for j in range(K):
            row[j] = e[j] * (a * p[j] + bb * rsum[j] + base)


@njit(cache=True, nogil=True, fastmath=True)
def forward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, alpha):  # pragma: no cover
    """alpha[t] (normalised) over the sites vis[w0:w0+n] for the candidates ``cand``."""
    for t in range(n):
        s = vis[w0 + t]
        emission_rows(panel, s, g[s], cand, K, hit, miss, x, ev)
        if t == 0:
            for i in range(K):
                e = ev[x[i]]
                row = alpha[0, i]
                for j in range(K):
                    row[j] = e[j]
        else:
            advance(alpha[t - 1], alpha[t], ev, x, K, switch_rho(cm, vis[w0 + t - 1], s, ne, n_allowed), rsum)
        normalise(alpha[t], K)


@njit(cache=True, nogil=True, fastmath=True)
def backward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, emit, beta):  # pragma: no cover
    """beta[t] (normalised, without site t's emission) over the sites vis[w0:w0+n]."""
    beta[n - 1, :, :] = 1.0
    for t in range(n - 2, -1, -1):
        s1 = vis[w0 + t + 1]
        rho = switch_rho(cm, vis[w0 + t], s1, ne, n_allowed)
        a = np.float32((1.0 - rho) * (1.0 - rho))
        bb = np.float32((1.0 - rho) * rho / K)
        emission_rows(panel, s1, g[s1], cand, K, hit, miss, x, ev)
        for i in range(K):
            e = ev[x[i]]
            nxt = beta[t + 1, i]
            row = emit[i]
            for j in range(K):
                row[j] = nxt[j] * e[j]
        tot = _row_sums(emit, K, rsum)
        c = np.float32((rho / K) * (rho / K) * tot)
        for i in range(K):
            src = emit[i]
            row = beta[t, i]
            base = bb * rsum[i] + c
            for j in range(K):
                row[j] = a * src[j] + bb * rsum[j] + base
        normalise(beta[t], K)


@njit(cache=True, nogil=True, fastmath=True)
def _copy_probs(panel, g, cm, allowed, n_ref, K, block, margin, ne, eps, stride, out, loo):  # pragma: no cover - compiled
    """out[s] = P(ALT dosage = 0/1/2) at every site s from the pair-copying HMM (module doc);
    with loo of shape (L, 3), loo[s] = the same at each visible site s with its own emission
    left out (leave-one-out), NaN elsewhere; a (0, 3) loo skips that. Conflict counts are
    kept every ``stride`` visible sites (:func:`conflict_stride`); ``n_ref`` haplotypes in the
    switch probability (0: the allowed ones of ``panel``; a composite panel's are fewer)."""
    L, nh = panel.shape
    n_allowed = count_allowed(allowed)
    K = min(K, n_allowed)
    if n_ref > 0:
        n_allowed = n_ref
    m = 0
    for s in range(L):
        if g[s] >= 0:
            m += 1
    if m == 0:  # nothing to copy from: the panel's Hardy-Weinberg genotype frequencies
        for s in range(L):
            c = 0
            for h in range(nh):
                if allowed[h]:
                    c += panel[s, h]
            p = c / n_allowed
            out[s, 0] = (1 - p) * (1 - p)
            out[s, 1] = 2 * p * (1 - p)
            out[s, 2] = p * p
        return
    vis = np.empty(m, dtype=np.int64)
    t = 0
    for s in range(L):
        if g[s] >= 0:
            vis[t] = s
            t += 1
    cc, last = conflicts(panel, g, vis, stride)
    cand = np.empty(K, dtype=np.int64)
    W = min(m, block + 2 * margin)
    alpha = np.empty((W, K, K), dtype=np.float32)
    beta = np.empty((W, K, K), dtype=np.float32)
    emit = np.empty((K, K), dtype=np.float32)
    rsum = np.empty(K, dtype=np.float32)
    P = np.empty((K, K))
    Pr = np.empty((K, K))
    rr = np.empty(K)
    rl = np.empty(K)
    x = np.empty(K, dtype=np.int64)
    ev = np.empty((2, K), dtype=np.float32)
    hit, miss = np.float32(1.0 - eps), np.float32(eps / 2.0)
    want_loo = loo.shape[0] == L
    Q = np.empty((K, K))
    rq = np.empty(K)
    n_blocks = (m + block - 1) // block
    for b in range(n_blocks):
        c0 = b * block
        c1 = min(m, c0 + block)
        w0 = max(0, c0 - margin)
        w1 = min(m, c1 + margin)
        v0, v1 = max(0, w0 - 2 * margin), min(m, w1 + 2 * margin)
        select_states(cc, _cc_row(w0, stride, m, last), _cc_row(w1, stride, m, last), _cc_row(v0, stride, m, last),
                      _cc_row(v1, stride, m, last), v1 - v0, allowed, K, cand)
        n = w1 - w0
        forward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, alpha)
        backward(panel, g, cm, vis, w0, n, cand, K, ne, n_allowed, hit, miss, x, ev, rsum, emit, beta)
        # the block's sites: from just after the previous block's last visible site (the
        # chromosome start for the first block) to this block's last visible site (the end
        # for the last block); a hidden site uses the posteriors of its flanking visible sites
        lo = 0 if b == 0 else vis[c0 - 1] + 1
        hi = L if b == n_blocks - 1 else vis[c1 - 1] + 1
        t_left = c0 - 1  # visible index (global) of the last visible site before s
        have = -1  # local index whose posterior is in P (left flank), Pr (right flank)
        have_r = -1
        for s in range(lo, hi):
            while t_left + 1 < m and vis[t_left + 1] <= s:
                t_left += 1
            if t_left >= 0 and vis[t_left] == s:
                tl = t_left - w0
                if have != tl:
                    _posterior(alpha, beta, tl, K, P, rl)
                    have = tl
                alleles_at(panel, s, cand, K, x)
                p0, p1, p2 = _pair_gp(P, rl, x, K)
                out[s, 0], out[s, 1], out[s, 2] = p0, p1, p2
                if want_loo:
                    _posterior_loo(alpha, beta, tl, K, x, g[s], hit, miss, Q, rq)
                    p0, p1, p2 = _pair_gp(Q, rq, x, K)
                    loo[s, 0], loo[s, 1], loo[s, 2] = p0, p1, p2
                continue
            t_right = t_left + 1
            alleles_at(panel, s, cand, K, x)
            q0 = q1 = q2 = 0.0
            w = 0.5
            if t_left < 0:
                w = 1.0
            elif t_right >= m:
                w = 0.0
            else:
                span = cm[vis[t_right]] - cm[vis[t_left]]
                if span > 0:
                    w = (cm[s] - cm[vis[t_left]]) / span
            if w < 1.0:
                tl = t_left - w0
                if have != tl:
                    _posterior(alpha, beta, tl, K, P, rl)
                    have = tl
                p0, p1, p2 = _pair_gp(P, rl, x, K)
                q0 += (1 - w) * p0
                q1 += (1 - w) * p1
                q2 += (1 - w) * p2
            if w > 0.0:
                tr = t_right - w0
                if have_r != tr:
                    _posterior(alpha, beta, tr, K, Pr, rr)
                    have_r = tr
                p0, p1, p2 = _pair_gp(Pr, rr, x, K)
                q0 += w * p0
                q1 += w * p1
                q2 += w * p2
            out[s, 0], out[s, 1], out[s, 2] = q0, q1, q2


@njit(cache=True, nogil=True)
def _cc_row(t, stride, m, last):  # pragma: no cover - compiled
    """Row of the conflict table holding the counts over the first t visible sites (t is a
    multiple of the stride, or m)."""
    return last if t == m else t // stride


@njit(cache=True, nogil=True)
def alleles_at(panel, s, cand, K, x):  # pragma: no cover - compiled
    """x[i] = the allele of candidate i at site s."""
    for i in range(K):
        x[i] = panel[s, cand[i]]


@njit(cache=True, nogil=True, fastmath=True)
def _posterior_loo(alpha, beta, t, K, x, gt, hit, miss, P, r):  # pragma: no cover - compiled
    """As :func:`_posterior` with site t's own emission divided out: alpha[t] includes it,
    beta[t] does not, so the pair posterior given every other visible site (minimac's
    leave-one-out dosage, in the same pass)."""
    for i in range(K):
        for j in range(K):
            e = hit if x[i] + x[j] == gt else miss
            P[i, j] = alpha[t, i, j] * beta[t, i, j] / e
    _symmetrise(P, K, r)


@njit(cache=True, nogil=True, fastmath=True)
def _symmetrise(P, K, r):  # pragma: no cover - compiled
    """P = (P + Pᵀ) / (2·sum P), r its row sums."""
    z = 0.0
    for i in range(K):
        for j in range(K):
            z += P[i, j]
    for i in range(K):
        for j in range(i, K):
            v = 0.5 * (P[i, j] + P[j, i]) / z
            P[i, j] = v
            P[j, i] = v
    for i in range(K):
        acc = 0.0
        for j in range(K):
            acc += P[i, j]
        r[i] = acc


@njit(cache=True, nogil=True, fastmath=True)
def _posterior(alpha, beta, t, K, P, r):  # pragma: no cover - compiled
    """P = normalised alpha[t]·beta[t] (symmetrised), r its row sums."""
    for i in range(K):
        for j in range(K):
            P[i, j] = alpha[t, i, j] * beta[t, i, j]
    _symmetrise(P, K, r)
