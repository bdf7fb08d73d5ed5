"""Genetic maps: base-pair positions → centimorgans, per chromosome.

Read from a PLINK ``.map`` (``chrom id cM bp``, as shipped with Beagle for its ``map=``) or
a HapMap-style file (``chrom bp rate cM`` with a header, the 1000 Genomes/SHAPEIT maps).
Two readers of genetic distance use it: the haplotype-mosaic augmentation
(:mod:`~snpbag.data.augment`: crossovers per Morgan) and the haplotype-copying retrieval
(:mod:`~snpbag.retrieval.haplotypes`: switch probabilities from cM distances, where 1 cM/Mb
is off by an order of magnitude either way around hotspots and centromeres).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snpbag.io.chrom import chrom_key
from snpbag.errors import InputError


class GeneticMap:
    """Piecewise-linear map from base pairs to centimorgans, per chromosome.

    Positions outside a chromosome's map are extrapolated at that chromosome's mean rate
    (so flanks still recombine); chromosomes absent from the map raise.
    """

    def __init__(self, maps: dict[str, tuple[np.ndarray, np.ndarray]], *, source: str = "<memory>") -> None:
        self.source = source
        self._maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for chrom, (bp, cm) in maps.items():
            bp = np.asarray(bp, dtype=np.float64)
            cm = np.asarray(cm, dtype=np.float64)
            order = np.argsort(bp, kind="stable")
            bp, cm = bp[order], cm[order]
            if bp.size == 0 or np.any(np.diff(cm) < -1e-9):
                raise InputError(f"{source}: genetic map of chromosome {chrom} is empty or decreasing in cM")
            self._maps[chrom_key(chrom)] = (bp, cm)

    @property
    def chromosomes(self) -> list[str]:
        return list(self._maps)

    def cm(self, chrom: str, position: np.ndarray) -> np.ndarray:
        """Genetic position (cM) of base-pair positions on ``chrom``.

        Raises
        ------
        InputError : the map has no entry for ``chrom``.
        """
        key = chrom_key(chrom)
        if key not in self._maps:
            raise InputError(
                f"{self.source}: no genetic map for chromosome {chrom}; maps cover {self.chromosomes}"
            )
        bp, cm = self._maps[key]
        x = np.asarray(position, dtype=np.float64)
        out = np.interp(x, bp, cm)
        mean_rate = (cm[-1] - cm[0]) / (bp[-1] - bp[0]) if bp[-1] > bp[0] else 0.0
        lo, hi = x < bp[0], x > bp[-1]
        out[lo] = cm[0] - (bp[0] - x[lo]) * mean_rate
        out[hi] = cm[-1] + (x[hi] - bp[-1]) * mean_rate
        return out


def read_genetic_map(path: str | Path) -> GeneticMap:
    """Read a genetic map in PLINK ``.map`` format (as shipped with Beagle: ``chrom id cM bp``)
    or HapMap format (``chrom position rate cM`` with a header line, as in the 1000 Genomes
    and SHAPEIT maps; a 3-column ``pos rate cM`` SHAPEIT map needs a chrom column added).

    Parameters
    ----------
    path : whitespace-separated text file, optionally gzip-compressed.

    Returns
    -------
    GeneticMap

    Raises
    ------
    InputError : unreadable file or unrecognised layout.
    """
    import gzip

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    per: dict[str, tuple[list[float], list[float]]] = {}
    layout = None
    try:
        with opener(path, "rt") as f:
            for lineno, line in enumerate(f, start=1):
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                if len(parts) < 4:
                    raise InputError(
                        f"{path}:{lineno}: expected 4 columns (PLINK chrom id cM bp, or HapMap chrom bp rate cM)"
                    )
                if layout is None:  # HapMap files start with a header line, PLINK ones do not
                    try:
                        float(parts[2]), float(parts[3])
                        layout = "plink"
                    except ValueError:
                        layout = "hapmap"
                        continue
                try:
                    if layout == "plink":
                        bp, cm = float(parts[3]), float(parts[2])
                    else:
                        bp, cm = float(parts[1]), float(parts[3])
                except ValueError:
                    raise InputError(f"{path}:{lineno}: non-numeric map entry {line.strip()!r}") from None
                lists = per.setdefault(parts[0], ([], []))
                lists[0].append(bp)
                lists[1].append(cm)
    except OSError as e:
        raise InputError(f"{path}: cannot read genetic map ({e}); check the path given as the map "
                         "(data.augment.genetic_map, model.genetic_map)") from e
    if not per:
        raise InputError(f"{path}: genetic map has no entries")
    return GeneticMap({c: (np.asarray(b), np.asarray(m)) for c, (b, m) in per.items()}, source=str(path))


def genetic_positions(
    position: np.ndarray, *, chrom: str | None = None, rate: float = 1.0, genetic_map: GeneticMap | None = None
) -> np.ndarray:
    """Genetic position in cM of each site: from ``genetic_map`` when given (needs
    ``chrom``), else ``position * rate / 1e6`` (uniform ``rate`` cM/Mb)."""
    if genetic_map is not None:
        if chrom is None:
            raise ValueError("genetic_positions: chrom is required with a genetic map")
        return genetic_map.cm(chrom, position)
    return np.asarray(position, dtype=np.float64) * (rate / 1e6)
