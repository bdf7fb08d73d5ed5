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
posteriors of both, interpolated linearly in cM, as Beagle does. With ``selection="composite"``
the K states are instead the sequence's composite haplotypes (:mod:`snpbag.retrieval.states`),
matched to its two haplotypes after phasing its visible sites (Beagle's order: phase, then
impute), and the same K persist over every block. The kernels are in
:mod:`snpbag.retrieval.copying`. With ``selection="phased"`` the pair HMM is not run: the
sequence is phased and each of its haplotypes imputed by a haploid HMM over its own K
composite haplotypes (:mod:`snpbag.retrieval.draws`, :mod:`snpbag.retrieval.haploid`: Beagle's and minimac's model), which
also gives per-haplotype ALT probabilities (:meth:`HaplotypePanel.votes` ``hds``).

A sequence's own haplotypes (leave-one-out in training) and, for a synthetic genome, the
panel genomes it was recombined from, can be excluded, as in :mod:`snpbag.retrieval.genomes`.
Cost per sequence: O(V × H) to find candidates plus O(3·V × K²) for the HMM, V visible
sites — a few ms for a 512-site training sequence, tenths of a second for a whole
chromosome of array sites.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from snpbag.io.genmap import genetic_positions, read_genetic_map
from snpbag.retrieval.panel import PanelRows
from snpbag.retrieval.copying import _copy_probs, conflict_stride
from snpbag.retrieval.draws import PHASE_OPTIONS, phased_probs
from snpbag.retrieval.hapclasses import hap_classes
from snpbag.retrieval.haploid import allele_carriers
from snpbag.retrieval.phasing import phased_composite, typed_panel
from snpbag.retrieval.states import SELECTIONS, check_selection
from snpbag.errors import InputError

#: Runs of sites (tiles) whose carriers, classes and phaser rows at the typed sites
#: :meth:`HaplotypePanel.votes` keeps for the next batch: a 10 Mb chromosome is two tiles; a
#: whole genome cycles through more and rebuilds them per batch, as with one.
INDEXES_KEPT = 4

#: The copying model's state selections (:mod:`snpbag.retrieval.states`) and ``phased``:
#: phase, then the haploid HMM per haplotype on its own composite states (module doc).
PANEL_SELECTIONS = (*SELECTIONS, "phased")


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
        haplotypes per sequence, persistent across blocks): :mod:`snpbag.retrieval.states`;
        ``phased``: phase, then K composite haplotypes per phased haplotype in a haploid
        HMM (:mod:`snpbag.retrieval.draws`; block and margin unused).
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
        check_selection(selection, "haplotype panel: state selection", PANEL_SELECTIONS)
        # site-major, one row of 2·n alleles per site (genome g's copies at 2g, 2g+1): the
        # kernels' per-site loops read contiguous rows
        self.by_site = np.ascontiguousarray(h.astype(np.int8, copy=False).transpose(1, 0, 2).reshape(h.shape[1], -1))
        self.cm = cm
        self.states, self.block, self.margin = int(states), int(block), int(margin)
        self.ne, self.eps = float(ne), float(eps)
        self.selection = selection
        self.sample_ids = None if sample_ids is None else np.asarray(sample_ids, dtype=str)
        self.store_rows = None if store_rows is None else np.asarray(store_rows, dtype=np.int64)
        # per run of sites (a tile; first and last site), its allele_carriers and its hap_classes
        # between the last batch's typed sites, for votes: the CLI's batches visit every tile
        # in turn, and building them took ~2 s per 5,204 × 81,920 tile
        self._indexes: dict[tuple[int, int], tuple] = {}

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

    @property
    def gives_hds(self) -> bool:
        """Whether :meth:`votes` can give per-haplotype ALT probabilities (``phased``)."""
        return self.selection == "phased"

    def votes(self, dosage: np.ndarray, sites: np.ndarray, *, exclude=None, threads: int | None = None,
              loo: bool = False, hds: bool = False):
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
            fixed candidates.
        hds : also return (L, 2) float32 per-haplotype ALT probabilities (``phased``
            selection only, :attr:`gives_hds`; the phaser's haplotype order).

        Returns
        -------
        probs, then ``held`` (with ``loo``), then ``hds`` (with ``hds``), each with the
        leading (B,) of a (B, L) input; probs alone without either.

        Raises
        ------
        InputError : ``hds`` from a panel without them.
        """
        if hds and not self.gives_hds:
            raise InputError(f"haplotype dosages need state selection 'phased'; this panel uses {self.selection!r}")
        g = np.asarray(dosage)
        sites = np.asarray(sites, dtype=np.int64)
        run = sites.size > 0 and sites[-1] - sites[0] == sites.size - 1 and bool((np.diff(sites) == 1).all())
        # a run of sites (a tile, a chromosome) is a view of the panel, not a copy per batch
        panel = self.by_site[sites[0]:sites[-1] + 1] if run else self.by_site[sites]
        cm = self.cm[sites]
        if g.ndim == 2:
            ex = [None] * g.shape[0] if exclude is None else list(exclude)
            n_threads = min(g.shape[0], threads or len(os.sched_getaffinity(0)))
            carriers = classes = at_typed = None
            if self.selection == "phased":  # once for the batch, and kept for the next batch of the same run
                key = (int(sites[0]), int(sites[-1])) if run else None
                typed = np.flatnonzero(((g >= 0) & (g <= 2)).any(0))  # the batch's array sites
                carriers, classes, at_typed = self._indexes.pop(key, (None, None, None))
                if carriers is None:
                    carriers = allele_carriers(panel)
                if classes is None or not np.array_equal(classes.typed, typed):
                    classes, at_typed = hap_classes(panel, typed), typed_panel(panel, typed, PHASE_OPTIONS)
                if key is not None:  # the latest last; the oldest dropped past INDEXES_KEPT runs
                    self._indexes[key] = (carriers, classes, at_typed)
                    while len(self._indexes) > INDEXES_KEPT:
                        self._indexes.pop(next(iter(self._indexes)))
            if n_threads <= 1:
                parts = [self._probs(panel, cm, row, e, loo, carriers, classes, at_typed) for row, e in zip(g, ex)]
            else:
                with ThreadPoolExecutor(n_threads) as pool:  # the kernel releases the GIL
                    parts = list(pool.map(lambda i: self._probs(panel, cm, g[i], ex[i], loo, carriers, classes,
                                                                at_typed),
                                          range(g.shape[0])))
            shapes = ((sites.size, 3), (sites.size, 3), (sites.size, 2))
            out = [np.stack([p[k] for p in parts]) if parts else np.zeros((0, *shapes[k]), np.float32)
                   for k in range(3)]
        else:
            out = list(self._probs(panel, cm, g, exclude, loo))
        picked = [out[0], *([out[1]] if loo else []), *([out[2]] if hds else [])]
        return picked[0] if len(picked) == 1 else tuple(picked)

    def _probs(self, panel: np.ndarray, cm: np.ndarray, g: np.ndarray, exclude, loo: bool = False, carriers=None,
               classes=None, at_typed=None):
        """(probs (L, 3), held (L or 0, 3), hds (L, 2) or (0, 2) without them) of one sequence
        (``carriers``, ``classes``, ``at_typed``: the panel's, :func:`~snpbag.retrieval.draws.phased_probs`'
        ``typed``)."""
        L, nh = panel.shape
        out = np.zeros((L, 3), dtype=np.float32)
        held = np.full((L if loo else 0, 3), np.nan, dtype=np.float32)
        hds = np.zeros((L if self.gives_hds else 0, 2), dtype=np.float32)
        if L == 0:
            return out, held, hds
        allowed = np.ones(nh, dtype=np.bool_)
        if exclude is not None:
            ex = np.atleast_1d(np.asarray(exclude, dtype=np.int64))
            ex = ex[(ex >= 0) & (ex < nh // 2)]
            allowed[2 * ex] = False
            allowed[2 * ex + 1] = False
        if not allowed.any():
            return out, held, hds
        gi = np.where((g >= 0) & (g <= 2), g, -1).astype(np.int8)
        visible = bool((gi >= 0).any())
        if self.selection == "phased" and visible:  # phase, then the haploid HMM per haplotype
            return phased_probs(panel, cm, gi, allowed=allowed, states=self.states, ne=self.ne, eps=self.eps,
                                loo=loo, carriers=carriers, classes=classes, typed=at_typed)
        n_ref = 0
        if self.selection == "composite" and visible:  # copy from the sequence's composite haplotypes
            n_ref = int(allowed.sum())
            panel = phased_composite(panel, cm, gi, allowed=allowed, states=self.states)
            allowed = np.ones(panel.shape[1], dtype=np.bool_)
        _copy_probs(panel, gi, cm, allowed, n_ref, self.states, self.block, self.margin, self.ne, self.eps,
                    conflict_stride(self.block, self.margin), out, held)
        if self.gives_hds:  # nothing visible: each haplotype at the panel's ALT frequency
            hds[:] = (out[:, 1] / 2 + out[:, 2])[:, None]
        return out, held, hds

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
