"""The site vocabulary: the biallelic SNPs a model is bound to, tiled into contigs.

A model directory carries its vocabulary as two plain files, the site arrays (npz) and
their metadata (JSON), so it can be used without the Zarr store it was trained on; their
names are the model directory's (snpbag.modeldir). The store carries the same
information as ``snpbag_site_*`` / ``snpbag_contig_*`` arrays (docs/store-format.md).
numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag.io.chrom import chrom_key
from snpbag.errors import CheckpointError, InputError

VOCAB_FORMAT_VERSION = 1


def select_sites(af: np.ndarray, *, min_maf: float) -> np.ndarray:
    """Indices of variants whose minor allele frequency is at least ``min_maf``.

    Parameters
    ----------
    af : ALT allele frequency per variant among called alleles (NaN when nothing is called).
    min_maf : threshold on min(af, 1 - af); NaN frequencies are never selected.

    Returns
    -------
    int64 array of variant indices, increasing.

    Notes
    -----
    A site exactly at the threshold (60 ALT alleles of 6,000 at min_maf 0.01) is kept:
    the comparison allows 4 ulps of the input dtype for the rounding in ``alt / called``
    and ``1 - af``.
    """
    af = np.asarray(af)
    if af.dtype.kind != "f":
        af = af.astype(np.float64)
    maf = np.minimum(af, 1 - af)
    with np.errstate(invalid="ignore"):
        keep = maf >= min_maf - 4 * np.finfo(af.dtype).eps
    return np.flatnonzero(keep).astype(np.int64)


def tile_contigs(site_chrom: np.ndarray, *, contig_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile the sites of each chromosome into runs of ``contig_len`` consecutive sites.

    Sites must be grouped by chromosome (as in a sorted VCF). The last contig of a
    chromosome is shorter; contigs never span two chromosomes.

    Parameters
    ----------
    site_chrom : chromosome index of each site, grouped.
    contig_len : sites per contig (> 0).

    Returns
    -------
    (chrom, start, stop): per contig the chromosome index and the half-open site range.

    Raises
    ------
    InputError : contig_len < 1.
    """
    if contig_len < 1:
        raise InputError(f"--contig-len {contig_len}: must be a positive number of sites")
    site_chrom = np.asarray(site_chrom)
    chroms, starts, stops = [], [], []
    if site_chrom.size:
        breaks = np.flatnonzero(np.diff(site_chrom)) + 1
        bounds = np.concatenate([[0], breaks, [site_chrom.size]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            s = np.arange(a, b, contig_len, dtype=np.int64)
            starts.append(s)
            stops.append(np.minimum(s + contig_len, b))
            chroms.append(np.full(s.size, site_chrom[a], dtype=np.int16))
    if not chroms:
        return np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(chroms), np.concatenate(starts), np.concatenate(stops)


@dataclass
class SiteVocab:
    """Vocabulary sites (in genome order) and the contigs that tile them.

    ``chrom_names`` are as written in the input VCF; ``site_chrom`` and ``contig_chrom``
    index into them. ``variant`` is the row of each site in the store it came from
    (None for a vocabulary loaded from a model directory without a store).
    """

    chrom_names: tuple[str, ...]
    site_chrom: np.ndarray  # int16 (S,)
    position: np.ndarray  # int64 (S,), 1-based
    ref: np.ndarray  # str (S,)
    alt: np.ndarray  # str (S,)
    af: np.ndarray  # float32 (S,), ALT allele frequency in the training cohort
    contig_chrom: np.ndarray  # int16 (C,)
    contig_start: np.ndarray  # int64 (C,), first site
    contig_stop: np.ndarray  # int64 (C,), one past the last site
    contig_len: int
    min_maf: float
    variant: np.ndarray | None = None  # int64 (S,)
    _index: dict | None = field(default=None, repr=False, compare=False)

    @property
    def n_sites(self) -> int:
        return int(self.position.size)

    @property
    def n_contigs(self) -> int:
        return int(self.contig_start.size)

    def contig_sites(self, contig_idx: int) -> slice:
        """Vocabulary-site slice covered by contig ``contig_idx``."""
        if not 0 <= contig_idx < self.n_contigs:
            raise IndexError(f"contig {contig_idx} out of range (vocabulary has {self.n_contigs} contigs)")
        return slice(int(self.contig_start[contig_idx]), int(self.contig_stop[contig_idx]))

    def contig_length(self, contig_idx: int) -> int:
        s = self.contig_sites(contig_idx)
        return s.stop - s.start

    def contig_chrom_name(self, contig_idx: int) -> str:
        return self.chrom_names[int(self.contig_chrom[contig_idx])]

    def chrom(self) -> np.ndarray:
        """Chromosome name of every site (as in the input)."""
        return np.asarray(self.chrom_names, dtype=object)[self.site_chrom]

    def index_of(self, chrom, position, ref, alt) -> np.ndarray:
        """Vocabulary index of each (chrom, position, ref, alt); -1 where absent.

        Chromosomes are matched with :func:`snpbag.io.chrom.chrom_key`, so ``chr22``
        finds sites stored as ``22``. Alleles must match exactly (no strand flips).
        """
        if self._index is None:
            keys = [chrom_key(n) for n in self.chrom_names]
            self._index = {
                (keys[c], int(p), r, a): i
                for i, (c, p, r, a) in enumerate(zip(self.site_chrom.tolist(), self.position.tolist(),
                                                      self.ref.tolist(), self.alt.tolist()))
            }
        chrom = np.broadcast_to(np.asarray(chrom, dtype=object), np.shape(position))
        get = self._index.get
        return np.fromiter(
            (get((chrom_key(str(c)), int(p), str(r), str(a)), -1) for c, p, r, a in zip(chrom, position, ref, alt)),
            dtype=np.int64, count=len(position),
        )

    def save(self, sites_file: str | Path, meta_file: str | Path) -> None:
        """Write the site arrays (npz) to ``sites_file`` and the metadata (JSON) to ``meta_file``.

        The caller names the files and is responsible for atomicity (a model directory is
        written as a whole through :func:`snpbag.fileio.atomic_output`).
        """
        arrays = dict(
            site_chrom=self.site_chrom.astype(np.int16), position=self.position.astype(np.int64),
            ref=self.ref.astype(str), alt=self.alt.astype(str), af=self.af.astype(np.float32),
            contig_chrom=self.contig_chrom.astype(np.int16), contig_start=self.contig_start.astype(np.int64),
            contig_stop=self.contig_stop.astype(np.int64),
        )
        if self.variant is not None:
            arrays["variant"] = self.variant.astype(np.int64)
        with open(sites_file, "wb") as f:
            np.savez_compressed(f, **arrays)
        meta = dict(format_version=VOCAB_FORMAT_VERSION, chrom_names=list(self.chrom_names),
                    contig_len=int(self.contig_len), min_maf=float(self.min_maf),
                    n_sites=self.n_sites, n_contigs=self.n_contigs)
        Path(meta_file).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, sites_file: str | Path, meta_file: str | Path) -> SiteVocab:
        """Read a vocabulary written by :meth:`save`.

        Raises
        ------
        CheckpointError : files missing, unreadable or of another format version.
        """
        meta_file = Path(meta_file)
        try:
            meta = json.loads(meta_file.read_text())
            with np.load(sites_file, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(f"{meta_file.parent}: cannot read site vocabulary ({e}); "
                                  "re-export the model directory") from e
        if meta.get("format_version") != VOCAB_FORMAT_VERSION:
            raise CheckpointError(
                f"{meta_file}: vocabulary format {meta.get('format_version')} is not {VOCAB_FORMAT_VERSION}; "
                "re-export the model with this snpbag version"
            )
        return cls(
            chrom_names=tuple(meta["chrom_names"]), site_chrom=arrays["site_chrom"], position=arrays["position"],
            ref=arrays["ref"].astype(object), alt=arrays["alt"].astype(object), af=arrays["af"],
            contig_chrom=arrays["contig_chrom"], contig_start=arrays["contig_start"],
            contig_stop=arrays["contig_stop"], contig_len=int(meta["contig_len"]), min_maf=float(meta["min_maf"]),
            variant=arrays.get("variant"),
        )

    def __eq__(self, other) -> bool:  # arrays make the dataclass default unusable
        if not isinstance(other, SiteVocab):
            return NotImplemented
        names = ("site_chrom", "position", "ref", "alt", "af", "contig_chrom", "contig_start", "contig_stop")
        return (
            tuple(self.chrom_names) == tuple(other.chrom_names)
            and self.contig_len == other.contig_len and self.min_maf == other.min_maf
            and all(np.array_equal(np.asarray(getattr(self, n)), np.asarray(getattr(other, n))) for n in names)
        )
