"""``snpbag impute --ref``: imputation straight from a phased reference panel, no training.

The panel (a VCF/BCF, converted to a store in a temporary directory that goes when the job
ends, or a ``snpbag convert`` store read in place) gives both the site vocabulary the
input is matched onto and the haplotypes of the copying model
(:class:`~snpbag.retrieval.haplotypes.HaplotypePanel`). Nothing is written but the
imputation outputs. Haplotypes are read one chromosome at a time, so memory holds one
chromosome of the panel, whatever the number of chromosomes.

A VCF panel keeps every biallelic SNP (``min_maf=0``: every panel site is imputed, as
Beagle does); a store keeps the vocabulary it was converted with.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.io.genmap import genetic_positions, read_genetic_map
from snpbag.retrieval.haplotypes import PANEL_SELECTIONS, HaplotypePanel
from snpbag.retrieval.states import check_selection
from snpbag.store import schema
from snpbag.store.convert import convert

log = logging.getLogger(__name__)

#: The states of each selection for ``--ref`` (``--state-selection``): the pair HMM's K
#: from the K / block / margin sweep (tools/bench/copying_sweep.py); the haploid HMM of
#: ``phased`` matches Beagle's 1,600 composite states to each phased haplotype, and takes every
#: panel haplotype up to twice that (:func:`~snpbag.retrieval.draws.phased_probs`; docs/benchmarks.md).
SELECTION_STATES = {"conflicts": 128, "composite": 128, "phased": 1600}

#: The haploid HMM's switch and error settings for ``phased`` over the panel's defaults
#: (the pair HMM's selections keep those): with the phase draws, a larger Ne and a smaller ε
#: than the pair model's raise r², and a larger Ne than this leaves INFO/R2 under-confident
#: (docs/benchmarks.md, "Phase draws"; chosen with the pair phaser, and kept with the
#: haploid one of :data:`~snpbag.retrieval.draws.PHASE_OPTIONS`: Ne 6·10⁴ there lost
#: the lead over Beagle in the 2–5 % bin at a 5 % array).
HAPLOID_HMM: dict[str, float] = {"ne": 8e4, "eps": 1e-4}

#: The copying model's settings for ``--ref``: block and margin from the same sweep.
REF_OPTIONS = {"selection": "phased", "states": SELECTION_STATES["phased"], "block": 128, "margin": 64,
               **HAPLOID_HMM}


def ref_options(selection: str | None = None) -> dict:
    """:data:`REF_OPTIONS` with another state selection and its states (None: as they are)."""
    if selection is None:
        return dict(REF_OPTIONS)
    check_selection(selection, "--state-selection", PANEL_SELECTIONS)
    pair = {k: v for k, v in REF_OPTIONS.items() if k not in HAPLOID_HMM}
    return pair | {"selection": selection, "states": SELECTION_STATES[selection]} | (
        HAPLOID_HMM if selection == "phased" else {})


#: Samples per genotype chunk of the temporary panel store: it is written and read whole,
#: once, so one chunk per shard (a codec call per 16-sample chunk, the store default, was
#: most of the conversion's and the read's CPU on a 20,000-genome panel; docs/benchmarks.md).
PANEL_SAMPLE_CHUNK = schema.SAMPLE_SHARD


@contextmanager
def panel_store(ref: str | Path, *, threads: int | None = None) -> Iterator[object]:
    """The panel as a store: a ``.zarr`` directory as is, a VCF/BCF converted to a
    temporary store (every biallelic SNP, default tiles) that is removed on exit.

    Raises
    ------
    InputError : no such file, or an unreadable panel VCF.
    StoreFormatError : a directory that is not a snpbag store.
    """
    from snpbag.store.genotypes import open_store

    path = Path(ref)
    if not path.exists():
        raise InputError(f"--ref {ref}: no such file or store; give a phased panel VCF/BCF or a `snpbag convert` store")
    if path.is_dir():
        yield open_store(path)
        return
    with tempfile.TemporaryDirectory(prefix="snpbag-ref-") as tmp:
        store = Path(tmp) / "panel.zarr"
        log.info("converting the reference panel %s to a temporary store", path)
        convert(path, store, min_maf=0.0, threads=threads, sample_chunk=PANEL_SAMPLE_CHUNK)
        yield open_store(store)


class ChromosomePanels:
    """The copying model of a panel store, one chromosome in memory at a time.

    :meth:`for_tile` returns the panel of the tile's chromosome and the vocabulary index of
    that chromosome's first site (panel site 0), reading the chromosome when the previous
    call was on another one.

    Raises
    ------
    InputError : (on reading a chromosome) missing calls or unphased heterozygous calls.
    """

    def __init__(self, store, ref: str | Path, *, genetic_map: str | Path | None = None,
                 options: dict | None = None):
        self.store, self.ref, self.vocab = store, str(ref), store.vocab
        self.options = dict(REF_OPTIONS if options is None else options)
        self.gmap = None if genetic_map is None else read_genetic_map(genetic_map)
        self.rows = np.arange(store.n_samples, dtype=np.int64)
        self._chrom, self._panel, self._first = None, None, 0

    @property
    def n_haplotypes(self) -> int:
        return 2 * int(self.rows.size)

    def for_tile(self, tile: int) -> tuple[HaplotypePanel, int]:
        chrom = int(self.vocab.tile_chrom[tile])
        if chrom != self._chrom:
            self._panel = None  # free the previous chromosome first
            tiles = np.flatnonzero(self.vocab.tile_chrom == chrom)
            self._panel, self._first = self._read(tiles), int(self.vocab.tile_start[tiles[0]])
            self._chrom = chrom
        return self._panel, self._first

    def _read(self, tiles: np.ndarray) -> HaplotypePanel:
        voc, name = self.vocab, self.vocab.chrom_names[int(self.vocab.tile_chrom[tiles[0]])]
        first = int(voc.tile_start[tiles[0]])
        # site-major (sites, genomes, 2), the store's layout and the panel's rows: no transpose
        parts = [self.store.read_sites(np.arange(sl.start, sl.stop), self.rows, by_site=True)
                 for sl in (voc.tile_sites(int(c)) for c in tiles)]
        h = parts[0] if len(parts) == 1 else np.concatenate(parts)
        del parts
        if h.size and h.min() < 0:
            missing = int((h < 0).any(axis=2).sum())
            raise InputError(f"--ref {self.ref}: {missing:,} missing calls on chromosome {name}; a reference panel "
                             "needs complete phased haplotypes: fill and phase it first (Beagle, SHAPEIT)")
        cm = np.empty(h.shape[0], dtype=np.float64)
        for c in tiles.tolist():
            sl = voc.tile_sites(c)
            local = slice(sl.start - first, sl.stop - first)
            cm[local] = genetic_positions(voc.position[sl], chrom=name, genetic_map=self.gmap)
            het = h[local, :, 0] != h[local, :, 1]
            if het.any():
                phased = self.store.read_phased(np.arange(sl.start, sl.stop), self.rows, by_site=True)  # None: not recorded
                unphased = 0 if phased is None else int((het & ~phased).sum())
                if unphased:
                    raise InputError(f"--ref {self.ref}: {unphased:,} unphased heterozygous calls on chromosome "
                                     f"{name}; a reference panel must be phased: phase it first (Beagle, SHAPEIT)")
        # the genome-major view HaplotypePanel takes: its transpose back to site-major is free
        return HaplotypePanel(h.transpose(1, 0, 2), cm, sample_ids=np.asarray(self.store.sample_ids),
                              store_rows=self.rows, **self.options)
