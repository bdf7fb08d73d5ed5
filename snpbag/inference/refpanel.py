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
from snpbag.store.convert import convert

log = logging.getLogger(__name__)

#: The states of each selection for ``--ref`` (``--state-selection``): the pair HMM's K
#: from the K / block / margin sweep (tools/bench/copying_sweep.py); the haploid HMM of
#: ``phased`` takes every panel haplotype up to Beagle's 1,600 states (docs/benchmarks.md).
SELECTION_STATES = {"conflicts": 128, "composite": 128, "phased": 1600}

#: ``phased`` imputes over the panel's own haplotypes, averaged over phase draws, up to this
#: many (beyond: ``SELECTION_STATES["phased"]`` composite states, decoded phase alone): on a
#: 3,200-haplotype panel they beat 1,600 composite states in every MAF bin, with INFO/R2
#: calibrated where the composites' was over-confident, at 1.0-1.3x their CPU
#: (docs/benchmarks.md, "INFO/R2 against a calibrated model").
PHASED_PANEL_STATES = 3200

#: The haploid HMM's switch and error settings for ``phased`` over the panel's defaults
#: (the pair HMM's selections keep those): with the phase draws, a larger Ne and a smaller ε
#: than the pair model's raise r², and a larger Ne than this leaves INFO/R2 under-confident
#: (docs/benchmarks.md, "Phase draws"; chosen with the pair phaser, and kept with the
#: haploid one of :data:`~snpbag.retrieval.haploid.PHASE_OPTIONS`: Ne 6·10⁴ there lost
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
        convert(path, store, min_maf=0.0, threads=threads)
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
        self.rows = np.arange(store.n_samples, dtype=np.int64)
        self.options = dict(REF_OPTIONS if options is None else options)
        if self.options.get("selection") == "phased" and self.n_haplotypes <= PHASED_PANEL_STATES:
            self.options["states"] = max(int(self.options["states"]), self.n_haplotypes)
        self.gmap = None if genetic_map is None else read_genetic_map(genetic_map)
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
        h = np.concatenate([self.store.read_haplotypes(int(c), self.rows) for c in tiles], axis=1)
        missing = int((h < 0).any(axis=2).sum())
        if missing:
            raise InputError(f"--ref {self.ref}: {missing:,} missing calls on chromosome {name}; a reference panel "
                             "needs complete phased haplotypes: fill and phase it first (Beagle, SHAPEIT)")
        het = h[:, :, 0] != h[:, :, 1]
        first = int(voc.tile_start[tiles[0]])
        cm = np.empty(h.shape[1], dtype=np.float64)
        for c in tiles.tolist():
            sl = voc.tile_sites(c)
            local = slice(sl.start - first, sl.stop - first)
            cm[local] = genetic_positions(voc.position[sl], chrom=name, genetic_map=self.gmap)
            if het[:, local].any():
                phased = self.store.read_phased(np.arange(sl.start, sl.stop), self.rows)  # None: not recorded
                unphased = 0 if phased is None else int((het[:, local] & ~phased).sum())
                if unphased:
                    raise InputError(f"--ref {self.ref}: {unphased:,} unphased heterozygous calls on chromosome "
                                     f"{name}; a reference panel must be phased: phase it first (Beagle, SHAPEIT)")
        return HaplotypePanel(h, cm, sample_ids=np.asarray(self.store.sample_ids), store_rows=self.rows,
                              **self.options)
