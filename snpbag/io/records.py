"""What a VCF record becomes in snpbag: blocks of biallelic SNPs, and why other records are dropped.

Shared by the htslib reader (:mod:`snpbag.io.vcf`) and the text reader
(:mod:`snpbag.io.vcftext`), so both classify records the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_ACGT = frozenset("ACGT")
DROP_REASONS = ("multiallelic", "indel", "mnp", "symbolic", "no_alt")


@dataclass
class VariantBlock:
    """Up to ``size`` consecutive biallelic SNPs with their calls."""

    contig: np.ndarray  # int16 (v,), index into VcfReader.contigs
    position: np.ndarray  # int32 (v,)
    allele: np.ndarray  # object (v, 2): REF, ALT
    id: np.ndarray  # object (v,)
    genotype: np.ndarray  # int8 (v, n, 2); -1 missing, -2 ploidy fill (haploid call)
    phased: np.ndarray  # bool (v, n)
    dosage: np.ndarray | None = None  # float64 (v, n) where asked for: FORMAT/DS, else GT's ALT count; NaN missing
    info: dict[str, np.ndarray] | None = None  # float64 (v,) per INFO key asked for; NaN where absent

    def __len__(self) -> int:
        return int(self.position.size)


@dataclass
class ReadCounts:
    records: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


def classify(ref: str, alts: list[str]) -> str | None:
    """None for a biallelic SNP, else the reason the record is not one (DROP_REASONS)."""
    if not alts or alts == ["."]:
        return "no_alt"
    if len(alts) > 1:
        return "multiallelic"
    alt = alts[0]
    if alt.startswith("<") or alt in ("*", "<*>", "<NON_REF>") or "[" in alt or "]" in alt:
        return "symbolic"
    if len(ref) != len(alt):
        return "indel"
    if len(ref) > 1:
        return "mnp"
    if ref.upper() not in _ACGT or alt.upper() not in _ACGT:
        return "symbolic"
    return None
