"""``snpbag impute --ref``: imputation straight from a phased reference panel, no training.

The panel (a VCF/BCF, or a ``snpbag convert`` store read in place) gives both the site
vocabulary the input is matched onto and the haplotypes of the copying model
(:class:`~snpbag.retrieval.haplotypes.HaplotypePanel`). Nothing is written but the
imputation outputs. Haplotypes are read one chromosome at a time, so memory holds one
chromosome of the panel, whatever the number of chromosomes: a VCF of one chromosome (the
usual panel file) is parsed straight into memory (:class:`PanelInMemory`), a VCF of several
is converted to a store in a temporary directory that goes when the job ends. Writing and
reading back a compressed store was two thirds of reading a one-chromosome panel
(docs/benchmarks.md).

A VCF panel keeps every biallelic SNP (``min_maf=0``: every panel site is imputed, as
Beagle does); a store keeps the vocabulary it was converted with.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.io.genmap import genetic_positions, read_genetic_map
from snpbag.io.vcf import VcfReader, cpu_count, parallel_blocks, tbi_names, use_parallel
from snpbag.retrieval.haplotypes import PANEL_SELECTIONS, HaplotypePanel
from snpbag.retrieval.states import check_selection
from snpbag.store import schema
from snpbag.store.convert import allele_frequency, convert, refuse_empty
from snpbag.store.kernels import panel_counts
from snpbag.store.vocab import SiteVocab, make_tiles, select_sites

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


@dataclass
class PanelInMemory:
    """A one-chromosome panel VCF parsed into memory: the vocabulary a store converted with
    :func:`panel_store`'s rules would have (:attr:`vocab`), its sample ids, and the calls at
    the vocabulary's sites (``genotype``, (sites, samples, 2) int8, −1 missing, read-only:
    the panel's haplotypes are a view of it). Phasing flags are kept only as each site's
    count of unphased heterozygous calls (``unphased``), all that ``--ref`` asks of them."""

    vocab: SiteVocab
    sample_ids: np.ndarray
    genotype: np.ndarray
    unphased: np.ndarray  # int64 (sites,)

    @property
    def n_samples(self) -> int:
        return int(self.sample_ids.size)


def read_panel(path: Path, *, threads: int | None = None) -> PanelInMemory | None:
    """The panel VCF/BCF at ``path`` in memory if it holds one chromosome, else None (known
    from a .tbi index up front, else when a second chromosome's first record is read).
    Every biallelic SNP with a called allele is a site, in tiles of the default length, as
    :func:`~snpbag.store.convert.convert` with ``min_maf=0`` would make them.

    Raises
    ------
    InputError : an unreadable VCF, or one without a biallelic SNP.
    """
    names = tbi_names(path)
    if names is not None and len(names) > 1:
        return None
    threads = threads or cpu_count()
    reader = VcfReader(path, threads=threads)
    try:
        size = schema.variant_chunk_for(reader.n_samples, requested=schema.VARIANT_CHUNK)
        source = parallel_blocks(reader, size, workers=threads) if use_parallel(reader, threads) else reader.blocks(size)
        parts, chrom = [], None
        for block in source:
            chrom = block.contig[0] if chrom is None and len(block) else chrom
            if (block.contig != chrom).any():
                source.close()  # a second chromosome: the temporary store it is
                return None
            counts = np.empty((3, len(block)), dtype=np.int64)  # unphased heterozygotes, ALT, called
            panel_counts(block.genotype, block.phased, counts[1], counts[2], counts[0])
            block.phased = None  # the flags' memory goes with the block; their counts stay
            parts.append((block, *counts))
        refuse_empty(reader, sum(len(b) for b, *_ in parts))
    finally:
        reader.close()
    contig, position, allele = (np.concatenate([getattr(b, f) for b, *_ in parts]) for f in ("contig", "position", "allele"))
    unphased, alt, called = (np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))
    af = allele_frequency(alt, called)
    site = select_sites(af, min_maf=0.0)
    tile_chrom, tile_start, tile_stop = make_tiles(contig[site], tile_len=schema.TILE_LEN)
    vocab = SiteVocab(chrom_names=tuple(reader.contigs), site_chrom=contig[site].astype(np.int16),
                      position=position[site].astype(np.int64), ref=allele[site, 0].astype(object),
                      alt=allele[site, 1].astype(object), af=af[site].astype(np.float32), tile_chrom=tile_chrom,
                      tile_start=tile_start, tile_stop=tile_stop, tile_len=schema.TILE_LEN, min_maf=0.0,
                      variant=site)
    # the sites' calls copied block by block into one array, each block freed once copied: the
    # pages of np.empty are touched only as they are filled, so memory holds one panel and a block
    genotype = np.empty((site.size, reader.n_samples, 2), dtype=np.int8)
    at = np.full(contig.size, -1, dtype=np.int64)
    at[site] = np.arange(site.size)
    start = 0
    while parts:
        block = parts.pop(0)[0]
        rows = at[start:start + len(block)]
        genotype[rows[rows >= 0]] = block.genotype[rows >= 0]
        start += len(block)
        del block
    genotype.flags.writeable = False
    return PanelInMemory(vocab, np.asarray(reader.samples, dtype=str), genotype, unphased[site])


@contextmanager
def panel_store(ref: str | Path, *, threads: int | None = None) -> Iterator[object]:
    """The panel as a store: a ``.zarr`` directory as is, a one-chromosome VCF/BCF in memory
    (:func:`read_panel`), any other VCF/BCF converted to a temporary store (every biallelic
    SNP, default tiles) that is removed on exit.

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
    log.info("reading the reference panel %s", path)
    panel = read_panel(path, threads=threads)
    if panel is not None:
        yield panel
        return
    with tempfile.TemporaryDirectory(prefix="snpbag-ref-") as tmp:
        store = Path(tmp) / "panel.zarr"
        log.info("%s holds several chromosomes: converting it to a temporary store", path)
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
        first, stop = int(voc.tile_start[tiles[0]]), int(voc.tile_stop[tiles[-1]])
        memory = isinstance(self.store, PanelInMemory)
        if memory:  # the whole panel is this chromosome: its calls as they are
            h = self.store.genotype[first:stop]
        else:  # site-major (sites, genomes, 2), the store's layout and the panel's rows: no transpose
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
            if memory:
                unphased = int(self.store.unphased[sl].sum())
            else:
                het = h[local, :, 0] != h[local, :, 1]
                phased = None
                if het.any():  # None: not recorded
                    phased = self.store.read_phased(np.arange(sl.start, sl.stop), self.rows, by_site=True)
                unphased = 0 if phased is None else int((het & ~phased).sum())
            if unphased:
                raise InputError(f"--ref {self.ref}: {unphased:,} unphased heterozygous calls on chromosome "
                                 f"{name}; a reference panel must be phased: phase it first (Beagle, SHAPEIT)")
        # the genome-major view HaplotypePanel takes: its transpose back to site-major is free
        return HaplotypePanel(h.transpose(1, 0, 2), cm, sample_ids=np.asarray(self.store.sample_ids),
                              store_rows=self.rows, **self.options)
