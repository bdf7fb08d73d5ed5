"""The site vocabulary: the biallelic SNPs a model is bound to, cut into tiles.

A *tile* is a run of up to ``tile_len`` (default 81,920) consecutive vocabulary sites of
one chromosome: the unit a model reads a sequence from. Tiles never span two chromosomes
(VCF contigs).

A model directory carries its vocabulary as two plain files, the site arrays (npz) and
their metadata (JSON), so it can be used without the Zarr store it was trained on; their
names are the model directory's (snpbag.modeldir). The store carries the same
information as ``snpbag_site_*`` / ``snpbag_contig_*`` arrays (docs/store-format.md). In
both, the tiles are stored under ``contig`` names (:data:`ON_DISK`): the file formats keep
their names.
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
#: SiteVocab field -> its key in the model directory's site arrays / vocabulary metadata
ON_DISK = {"tile_chrom": "contig_chrom", "tile_start": "contig_start", "tile_stop": "contig_stop",
           "tile_len": "contig_len", "n_tiles": "n_contigs"}


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


def make_tiles(site_chrom: np.ndarray, *, tile_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tile the sites of each chromosome into runs of ``tile_len`` consecutive sites.

    Sites must be grouped by chromosome (as in a sorted VCF). The last tile of a
    chromosome is shorter; tiles never span two chromosomes.

    Parameters
    ----------
    site_chrom : chromosome index of each site, grouped.
    tile_len : sites per tile (> 0).

    Returns
    -------
    (chrom, start, stop): per tile the chromosome index and the half-open site range.

    Raises
    ------
    InputError : tile_len < 1.
    """
    if tile_len < 1:
        raise InputError(f"--tile-len {tile_len}: must be a positive number of sites")
    site_chrom = np.asarray(site_chrom)
    chroms, starts, stops = [], [], []
    if site_chrom.size:
        breaks = np.flatnonzero(np.diff(site_chrom)) + 1
        bounds = np.concatenate([[0], breaks, [site_chrom.size]])
        for a, b in zip(bounds[:-1], bounds[1:]):
            s = np.arange(a, b, tile_len, dtype=np.int64)
            starts.append(s)
            stops.append(np.minimum(s + tile_len, b))
            chroms.append(np.full(s.size, site_chrom[a], dtype=np.int16))
    if not chroms:
        return np.zeros(0, np.int16), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(chroms), np.concatenate(starts), np.concatenate(stops)


@dataclass
class SiteVocab:
    """Vocabulary sites (in genome order) and the tiles that cover them.

    ``chrom_names`` are as written in the input VCF; ``site_chrom`` and ``tile_chrom``
    index into them. ``variant`` is the row of each site in the store it came from
    (None for a vocabulary loaded from a model directory without a store).
    """

    chrom_names: tuple[str, ...]
    site_chrom: np.ndarray  # int16 (S,)
    position: np.ndarray  # int64 (S,), 1-based
    ref: np.ndarray  # str (S,)
    alt: np.ndarray  # str (S,)
    af: np.ndarray  # float32 (S,), ALT allele frequency in the training cohort
    tile_chrom: np.ndarray  # int16 (T,)
    tile_start: np.ndarray  # int64 (T,), first site
    tile_stop: np.ndarray  # int64 (T,), one past the last site
    tile_len: int
    min_maf: float
    variant: np.ndarray | None = None  # int64 (S,)
    _index: dict | None = field(default=None, repr=False, compare=False)

    @property
    def n_sites(self) -> int:
        return int(self.position.size)

    @property
    def n_tiles(self) -> int:
        return int(self.tile_start.size)

    def tile_sites(self, tile: int) -> slice:
        """Vocabulary-site slice covered by tile ``tile``."""
        if not 0 <= tile < self.n_tiles:
            raise IndexError(f"tile {tile} out of range (vocabulary has {self.n_tiles} tiles)")
        return slice(int(self.tile_start[tile]), int(self.tile_stop[tile]))

    def tile_length(self, tile: int) -> int:
        s = self.tile_sites(tile)
        return s.stop - s.start

    def tile_chrom_name(self, tile: int) -> str:
        return self.chrom_names[int(self.tile_chrom[tile])]

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
        arrays = {
            "site_chrom": self.site_chrom.astype(np.int16), "position": self.position.astype(np.int64),
            "ref": self.ref.astype(str), "alt": self.alt.astype(str), "af": self.af.astype(np.float32),
            ON_DISK["tile_chrom"]: self.tile_chrom.astype(np.int16),
            ON_DISK["tile_start"]: self.tile_start.astype(np.int64),
            ON_DISK["tile_stop"]: self.tile_stop.astype(np.int64),
        }
        if self.variant is not None:
            arrays["variant"] = self.variant.astype(np.int64)
        with open(sites_file, "wb") as f:
            np.savez_compressed(f, **arrays)
        meta = {"format_version": VOCAB_FORMAT_VERSION, "chrom_names": list(self.chrom_names),
                ON_DISK["tile_len"]: int(self.tile_len), "min_maf": float(self.min_maf),
                "n_sites": self.n_sites, ON_DISK["n_tiles"]: self.n_tiles}
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
            tile_chrom=arrays[ON_DISK["tile_chrom"]], tile_start=arrays[ON_DISK["tile_start"]],
            tile_stop=arrays[ON_DISK["tile_stop"]], tile_len=int(meta[ON_DISK["tile_len"]]),
            min_maf=float(meta["min_maf"]),
            variant=arrays.get("variant"),
        )

    def __eq__(self, other) -> bool:  # arrays make the dataclass default unusable
        if not isinstance(other, SiteVocab):
            return NotImplemented
        names = ("site_chrom", "position", "ref", "alt", "af", "tile_chrom", "tile_start", "tile_stop")
        return (
            tuple(self.chrom_names) == tuple(other.chrom_names)
            and self.tile_len == other.tile_len and self.min_maf == other.min_maf
            and all(np.array_equal(np.asarray(getattr(self, n)), np.asarray(getattr(other, n))) for n in names)
        )
