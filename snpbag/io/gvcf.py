"""Recognising a gVCF, so that a refusal can name it and its fix.

A gVCF (GATK HaplotypeCaller ``-ERC GVCF``, ``bcftools call -g``, DeepVariant) records
reference blocks with the symbolic ALT ``<NON_REF>`` or ``<*>`` and adds that allele to every
variant record too (``C,<NON_REF>``), so none of its records is a biallelic SNP.
"""

from __future__ import annotations

from pathlib import Path

from snpbag.errors import InputError

GVCF_ALTS = ("<NON_REF>", "<*>")
#: Records read from the start of the file to judge it.
SNIFF_RECORDS = 1000


def gvcf_evidence(path: str | Path, *, records: int = SNIFF_RECORDS) -> str | None:
    """Why ``path`` looks like a gVCF, or None: symbolic ``<NON_REF>``/``<*>`` alleles on
    most of its first ``records`` records, or GATK's ``##GVCFBlock`` header lines."""
    import cyvcf2

    try:
        vcf = cyvcf2.VCF(str(path), lazy=True)
    except Exception:  # noqa: BLE001 - an unreadable file is no gVCF; the caller reports it
        return None
    try:
        seen = marked = 0
        alts: set[str] = set()
        for v in vcf:
            seen += 1
            found = [a for a in v.ALT if a in GVCF_ALTS]
            marked += bool(found)
            alts.update(found)
            if seen >= records:
                break
        if seen and 2 * marked > seen:
            return f"ALT {'/'.join(sorted(alts))} on {marked} of the first {seen} records"
        if "\n##GVCFBlock" in vcf.raw_header:
            return "##GVCFBlock header lines"
        return None
    finally:
        vcf.close()


def refuse_gvcf(path: str | Path) -> None:
    """Raise InputError naming the gVCF and how to make a VCF of it, when ``path`` is one.

    Raises
    ------
    InputError : ``path`` looks like a gVCF (see :func:`gvcf_evidence`).
    """
    why = gvcf_evidence(path)
    if why is None:
        return
    raise InputError(
        f"{path}: a gVCF ({why}): its reference blocks and <NON_REF>/<*> alleles hold no biallelic SNPs; "
        "joint-genotype the gVCFs into a VCF (GATK GenotypeGVCFs, or `bcftools merge --gvcf REF.fa | "
        "bcftools call -m`), or keep one sample's variant calls with "
        f"`bcftools view --trim-alt-alleles {path} -Oz -o OUT.vcf.gz` and convert OUT.vcf.gz"
    )
