"""Chromosome names: ``chr22`` and ``22`` name the same chromosome everywhere."""

from __future__ import annotations

_ALIASES = {"M": "MT", "X": "X", "Y": "Y", "MT": "MT"}
AUTOSOMES = tuple(str(i) for i in range(1, 23))


def chrom_key(name: str) -> str:
    """Canonical key used to compare chromosome names across files.

    ``chr22``, ``CHR22`` and ``22`` → ``22``; ``chrM``/``MT`` → ``MT``; ``chrX`` → ``X``.
    Names that are not human chromosomes are returned unchanged (minus a ``chr`` prefix).
    """
    n = name.strip()
    if n[:3].lower() == "chr":
        n = n[3:]
    up = n.upper()
    return _ALIASES.get(up, n)


def is_autosome(name: str) -> bool:
    return chrom_key(name) in AUTOSOMES


def same_chrom(a: str, b: str) -> bool:
    return chrom_key(a) == chrom_key(b)
