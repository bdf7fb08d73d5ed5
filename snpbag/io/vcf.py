"""Streaming VCF/BCF reading with cyvcf2, in blocks of biallelic SNPs.

Memory is bounded by one block (variants x samples), never by the cohort or file size.
Every input problem a user can cause is turned into a one-line InputError/SampleError
that names the file and the fix, before or while reading.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from snpbag.io.chrom import chrom_key
from snpbag.io.records import ReadCounts, VariantBlock, classify
from snpbag.io.vcftext import TextReader, first_format
from snpbag.errors import InputError, SampleError

log = logging.getLogger(__name__)

#: Read GT-only VCF text with snpbag.io.vcftext instead of htslib (whole-file reads only).
TEXT_READER = True
_REGION = re.compile(r"^(?P<chrom>[^:]+)(?::(?P<start>[\d,]+)?(?:-(?P<end>[\d,]+)?)?)?$")


def parse_region(region: str) -> tuple[str, int | None, int | None]:
    """``CHR``, ``CHR:START-END``, ``CHR:START-`` → (chrom, start, end), 1-based inclusive."""
    m = _REGION.match(region.strip())
    if not m:
        raise InputError(f"--region {region!r}: expected CHR:START-END, e.g. chr22:16000000-17000000")
    start = int(m["start"].replace(",", "")) if m["start"] else None
    end = int(m["end"].replace(",", "")) if m["end"] else None
    if start is not None and end is not None and end < start:
        raise InputError(f"--region {region!r}: END is before START")
    return m["chrom"], start, end


def read_sample_file(path: str | Path) -> list[str]:
    """One sample id per line; blank lines and ``#`` comments ignored."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputError(f"--samples {path}: cannot read ({e.strerror}); give a file with one sample id per line") from e
    ids = [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]
    if not ids:
        raise SampleError(f"--samples {path}: no sample ids in file; give one sample id per line")
    dup = sorted({s for s in ids if ids.count(s) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        raise SampleError(f"--samples {path}: duplicated sample ids {', '.join(dup[:5])}; list each sample once")
    return ids


def _is_bgzf(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(18)
    # gzip magic, FEXTRA flag, and the 'BC' subfield that marks BGZF blocks.
    return len(head) >= 14 and head[:2] == b"\x1f\x8b" and head[3] & 4 and head[12:14] == b"BC"


def _has_index(path: Path) -> bool:
    return any(Path(str(path) + ext).exists() for ext in (".tbi", ".csi")) or (
        path.suffix == ".bcf" and Path(str(path)[:-4] + ".csi").exists()
    )


def _sniff(path: Path) -> None:
    """Refuse files that are not VCF/BCF before htslib prints its own errors."""
    import gzip

    try:
        with open(path, "rb") as f:
            head = f.read(16)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                head = f.read(16)
    except (OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable VCF/BCF ({e}); give a .vcf, .vcf.gz or .bcf file") from e
    if not (head.startswith(b"##fileformat=VCF") or head.startswith(b"BCF")):
        raise InputError(f"{path}: not a VCF/BCF file (no ##fileformat=VCF header); give a .vcf, .vcf.gz or .bcf file")


def _header_duplicates(path: Path) -> list[str]:
    """Sample ids that a text VCF's #CHROM line lists more than once (htslib refuses such a
    header with only "cannot parse VCF header"); [] for BCF or an unreadable header."""
    import gzip

    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rt") if gz else open(path)) as fh:
            line = next((x for x in fh if not x.startswith("##")), "")
    except (OSError, EOFError, UnicodeDecodeError):
        return []
    ids = line.rstrip("\n").split("\t")[9:] if line.startswith("#CHROM") else []
    seen: set[str] = set()
    return [s for s in ids if s in seen or seen.add(s)]


class VcfReader:
    """Open and validate a VCF/BCF; iterate its biallelic SNPs in blocks.

    Parameters
    ----------
    path : VCF (plain or bgzipped) or BCF file.
    region : ``CHR[:START-END]``; needs a bgzipped, tabix/csi-indexed file. The
        chromosome is matched with chrom_key, so ``22`` finds ``chr22``.
    samples : sample ids to keep, in the order given (None: all samples).
    threads : htslib decompression threads; for GT-first VCF text (read by snpbag.io.vcftext),
        threads that inflate BGZF blocks and decode records.

    Raises
    ------
    InputError : missing file, not a VCF/BCF, no GT field, no samples, region problems.
    SampleError : requested samples absent from the file; a sample id listed twice in the header.
    """

    def __init__(self, path: str | Path, *, region: str | None = None, samples: list[str] | None = None,
                 threads: int | None = None):
        import cyvcf2

        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file; check the input path")
        _sniff(self.path)
        self.region = None
        if region is not None:
            if not _is_bgzf(self.path):
                raise InputError(
                    f"{self.path}: --region needs a bgzip-compressed, indexed file; "
                    f"run `bgzip {self.path} && tabix -p vcf {self.path}.gz` (or drop --region)"
                )
            if not _has_index(self.path):
                raise InputError(f"{self.path}: --region needs an index; run `tabix -p vcf {self.path}` "
                                 f"or `bcftools index {self.path}`")
        try:
            vcf = cyvcf2.VCF(str(self.path), threads=threads or None, lazy=True)
        except (OSError, Exception) as e:  # cyvcf2 raises bare Exceptions for bad headers
            dup = _header_duplicates(self.path)
            if dup:
                raise SampleError(f"{self.path}: duplicated sample ids ({', '.join(dup[:5])}); rename them "
                                  "(`bcftools reheader -s`) so every sample is identifiable") from e
            raise InputError(f"{self.path}: cannot open as VCF/BCF ({e}); check the file with `bcftools view -h`") from e
        if not vcf.samples:
            raise InputError(f"{self.path}: the VCF has no sample columns; genotypes are required")
        if not vcf.contains("GT"):
            raise InputError(f"{self.path}: no GT FORMAT field in the header; snpbag needs called genotypes")
        all_samples = list(vcf.samples)
        if samples is not None:
            present = set(all_samples)
            absent = [s for s in samples if s not in present]
            if absent:
                more = f" (and {len(absent) - 5} more)" if len(absent) > 5 else ""
                raise SampleError(f"{self.path}: requested samples absent from the VCF: {', '.join(absent[:5])}{more}; "
                                  "fix the --samples file")
            vcf.set_samples(list(samples))
            # htslib keeps file order; we report and index samples in that order.
            self.samples = list(vcf.samples)
        else:
            self.samples = all_samples
        self._all_samples = all_samples
        self._vcf = vcf
        self.contigs: list[str] = list(vcf.seqnames) if _header_has_contigs(vcf) else []
        self.contig_lengths: dict[str, int] = _header_contig_lengths(vcf)
        self._contig_lookup = {n: i for i, n in enumerate(self.contigs)}
        self.counts = ReadCounts()
        if region is not None:
            chrom, start, end = parse_region(region)
            names = list(vcf.seqnames)
            match = [n for n in names if chrom_key(n) == chrom_key(chrom)]
            if not match:
                raise InputError(f"{self.path}: chromosome {chrom!r} of --region is not in the file "
                                 f"(has {', '.join(names[:6])}{'...' if len(names) > 6 else ''})")
            chrom = match[0]
            self.region = chrom + (f":{start or 1}-{end}" if end else f":{start}" if start else "")
        self._iter = vcf(self.region) if self.region else iter(vcf)
        self.engine = "htslib"
        self._text: TextReader | None = None
        if self.region is None and TEXT_READER and first_format(self.path) == b"GT":
            cols = None
            if samples is not None:
                where = {s: i for i, s in enumerate(all_samples)}
                cols = np.array(sorted(where[s] for s in samples), dtype=np.int64)
                assert [all_samples[i] for i in cols] == self.samples
            self._text = TextReader(self.path, n_all=len(all_samples), columns=cols, threads=threads or 1)
            self.engine = "text"

    @property
    def n_samples(self) -> int:
        return len(self.samples)

    def _contig_index(self, name: str) -> int:
        idx = self._contig_lookup.get(name)
        if idx is None:
            idx = self._contig_lookup[name] = len(self.contigs)
            self.contigs.append(name)
        return idx

    def blocks(self, size: int, *, records=None, pos_min: int = 0, dosage: bool = False,
               info: Sequence[str] = ()) -> Iterator[VariantBlock]:
        """Yield blocks of up to ``size`` biallelic SNPs (the last may be shorter).

        ``records`` (default: the whole file or ``region``) may be another cyvcf2 iterator
        of this file; records with POS < ``pos_min`` (overlapping a region from before
        its start) are skipped, so consecutive regions see every record exactly once.
        ``dosage`` and ``info`` also read each record's ALT dosages (FORMAT/DS where the
        record has it, else the ALT count of its calls; NaN missing) and INFO values as
        floats (NaN where absent), as imputed VCFs are scored.

        Raises
        ------
        InputError : unsorted records, a chromosome split into two runs, two biallelic
            SNPs at the same position, a record without GT, allele indices > 1.
        """
        if records is None and self._text is not None and not dosage and not info:  # compiled (snpbag.io.vcftext)
            yield from self._text.variant_blocks(self, size)
            return
        n = self.n_samples
        gt = np.empty((size, n, 2), dtype=np.int8)
        ph = np.empty((size, n), dtype=bool)
        pos = np.empty(size, dtype=np.int32)
        ctg = np.empty(size, dtype=np.int16)
        alleles = np.empty((size, 2), dtype=object)
        ids = np.empty(size, dtype=object)
        ds = np.empty((size, n), dtype=np.float64) if dosage else None
        inf = {k: np.empty(size, dtype=np.float64) for k in info}
        counts = self.counts
        done_chroms: set[str] = set()
        cur_chrom, last_pos, last_kept = None, 0, -1
        cur_idx = -1
        i = 0
        for rec in self._iter if records is None else records:
            chrom, p = rec.CHROM, rec.POS
            if p < pos_min:
                continue
            counts.records += 1
            if chrom != cur_chrom:
                if chrom in done_chroms:
                    raise InputError(f"{self.path}: records of {chrom} are not contiguous (seen again at {chrom}:{p}); "
                                     "sort with `bcftools sort`")
                if cur_chrom is not None:
                    done_chroms.add(cur_chrom)
                cur_chrom, last_pos, last_kept = chrom, 0, -1
                cur_idx = self._contig_index(chrom)
            if p < last_pos:
                raise InputError(f"{self.path}: unsorted positions ({chrom}:{p} after {chrom}:{last_pos}); "
                                 "sort with `bcftools sort`")
            last_pos = p
            reason = classify(rec.REF, rec.ALT)
            if reason is not None:
                counts.dropped[reason] += 1
                continue
            if p == last_kept:
                raise InputError(f"{self.path}: two biallelic SNPs at {chrom}:{p} (a split multi-allelic site?); "
                                 "join them with `bcftools norm -m+any` or drop one")
            last_kept = p
            self._calls(rec, gt, ph, i)
            pos[i] = p
            ctg[i] = cur_idx
            alleles[i, 0] = rec.REF
            alleles[i, 1] = rec.ALT[0]
            ids[i] = rec.ID or "."
            if ds is not None:
                ds[i] = _dosage(rec, gt[i])
            for k, a in inf.items():
                x = rec.INFO.get(k)
                a[i] = np.nan if x is None else float(x)
            i += 1
            counts.kept += 1
            if i == size:
                yield self._finish(ctg, pos, alleles, ids, gt, ph, i, copy=True, ds=ds, info=inf)
                i = 0
        if i:
            yield self._finish(ctg, pos, alleles, ids, gt, ph, i, copy=False, ds=ds, info=inf)

    def _calls(self, rec, gt: np.ndarray, ph: np.ndarray, i: int) -> None:
        """Row ``i`` of the block from one cyvcf2 record's genotypes."""
        try:
            g = rec.genotype
        except Exception:  # cyvcf2: "couldn't get genotypes for variant"
            g = None
        if g is None:
            raise InputError(f"{self.path}: record {rec.CHROM}:{rec.POS} has no GT; snpbag needs called genotypes")
        a = g.array()  # (n, ploidy + 1) int16, last column = phased
        if a.shape[1] == 3:
            gt[i] = a[:, :2]
            ph[i] = a[:, 2].astype(bool)
        elif a.shape[1] == 2:  # every sample haploid
            gt[i, :, 0] = a[:, 0]
            gt[i, :, 1] = -2
            ph[i] = True  # haploid calls count as phased (cyvcf2 is inconsistent here)
        else:
            raise InputError(f"{self.path}: record {rec.CHROM}:{rec.POS} has ploidy {a.shape[1] - 1}; "
                             "snpbag supports ploidy <= 2")

    def _finish(self, ctg, pos, alleles, ids, gt, ph, i, *, copy, ds=None, info=None) -> VariantBlock:
        g = gt[:i].copy() if copy else gt[:i]
        p = ph[:i].copy()
        # A fully missing haploid-coded call '.' comes back as (-1, -2): make it (-1, -1).
        # Haploid calls are phased by convention (a single allele has no phase to lose).
        fill = g[:, :, 1] == -2
        if fill.any():
            p[fill] = True
            g[:, :, 1][fill & (g[:, :, 0] == -1)] = -1
        if g.size and g.max() > 1:
            bad = int(np.flatnonzero((g > 1).any(axis=(1, 2)))[0])
            raise InputError(f"{self.path}: allele index > 1 at biallelic site {self.contigs[ctg[bad]]}:{pos[bad]}; "
                             "fix the GT values (`bcftools norm --check-ref`)")
        return VariantBlock(contig=ctg[:i].copy(), position=pos[:i].copy(), allele=alleles[:i].copy(),
                            id=ids[:i].copy(), genotype=g, phased=p, dosage=None if ds is None else ds[:i].copy(),
                            info={k: a[:i].copy() for k, a in info.items()} if info else None)

    def region_blocks(self, chrom: str, start: int, end: int, size: int) -> list[VariantBlock]:
        """Biallelic SNPs with ``start <= POS <= end`` on ``chrom`` (needs the index)."""
        return list(self.blocks(size, records=self._vcf(f"{chrom}:{start}-{end}"), pos_min=start))

    def next_position(self, chrom: str, start: int) -> int | None:
        """POS of the first record on ``chrom`` at or after ``start`` (None: no more records)."""
        for rec in self._vcf(f"{chrom}:{start}-"):
            if rec.POS >= start:
                return rec.POS
        return None

    def close(self) -> None:
        try:
            self._vcf.close()
        except Exception:  # pragma: no cover - cyvcf2 close is best effort
            pass


def _dosage(rec, gt: np.ndarray) -> np.ndarray:
    """A record's ALT dosages: FORMAT/DS where it has one, else the ALT count of its calls ``gt`` (n, 2)."""
    ds = rec.format("DS")
    if ds is not None:
        return ds[:, 0]
    return np.where((gt < 0).any(1), np.nan, gt.sum(1, dtype=np.float64))


# --- parallel reading ---------------------------------------------------------------------
#: Indexed inputs at least this large are parsed by worker processes in genomic regions
#: when more than one thread is allowed: htslib's VCF text parsing is the bottleneck
#: (~100 µs per record at 3,000 samples) and it does not parallelise inside one process.
PARALLEL_MIN_BYTES = 8 << 20
#: Target genotype bytes (variants x samples x 2) per region: bounds each worker's memory.
REGION_BYTES = 32 << 20
_MIN_REGION_BP, _MAX_REGION_BP = 1_000, 20_000_000


def use_parallel(reader: VcfReader, threads: int) -> bool:
    path = reader.path
    return (reader.engine == "htslib" and threads > 1 and path.stat().st_size >= PARALLEL_MIN_BYTES
            and _is_bgzf(path) and _has_index(path))


def tbi_names(path: Path) -> list[str] | None:
    """Chromosome names in file order, from a .tbi index (None without one)."""
    import gzip
    import struct

    tbi = Path(str(path) + ".tbi")
    if not tbi.exists():
        return None
    try:
        with gzip.open(tbi, "rb") as f:
            head = f.read(36)
            if head[:4] != b"TBI\x01":
                return None
            l_nm = struct.unpack("<i", head[32:36])[0]
            return [n.decode() for n in f.read(l_nm).split(b"\0") if n]
    except (OSError, struct.error, UnicodeDecodeError):
        return None


_WORKER: dict = {}


def _region_task(path: str, samples: list[str] | None, chrom: str, start: int, end: int, size: int):
    key = (path, tuple(samples) if samples else None)
    reader = _WORKER.get(key)
    if reader is None:
        _WORKER.clear()
        reader = _WORKER[key] = VcfReader(path, samples=samples, threads=1)
    before = ReadCounts(reader.counts.records, reader.counts.kept, dict(reader.counts.dropped))
    blocks = reader.region_blocks(chrom, start, end, size)
    c = reader.counts
    delta = ReadCounts(c.records - before.records, c.kept - before.kept,
                       {k: c.dropped[k] - before.dropped[k] for k in c.dropped})
    return blocks, delta


def _concat(blocks: list[VariantBlock]) -> VariantBlock:
    if len(blocks) == 1:
        return blocks[0]
    return VariantBlock(*(np.concatenate([getattr(b, f) for b in blocks]) for f in
                          ("contig", "position", "allele", "id", "genotype", "phased")))


def _take(block: VariantBlock, a: int, b: int) -> VariantBlock:
    return VariantBlock(block.contig[a:b], block.position[a:b], block.allele[a:b], block.id[a:b],
                        block.genotype[a:b], block.phased[a:b])


def parallel_blocks(reader: VcfReader, size: int, *, workers: int) -> Iterator[VariantBlock]:
    """Like ``reader.blocks(size)``, parsing genomic regions in ``workers`` processes.

    The parent walks each chromosome, asks the index where the next record is (so gaps
    cost nothing), and hands out regions sized from the record density seen so far so
    one region holds about REGION_BYTES of genotypes. Results are consumed in genome
    order and re-cut into blocks of exactly ``size`` variants, so the output equals the
    sequential reader's. Chromosomes follow the .tbi's order (header order for .csi).
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor

    if reader.region:
        chrom, start, end = parse_region(reader.region)
        spans = [(chrom, start or 1, end)]
    else:
        names = tbi_names(reader.path) or list(reader._vcf.seqnames)
        spans = [(c, 1, None) for c in names]
    target = max(size, REGION_BYTES // max(2 * reader.n_samples, 1))
    seen_records, seen_bp = 0, 0
    region_bp = 100_000

    def regions():
        for chrom, start, end in spans:
            s = start
            while True:
                nxt = reader.next_position(chrom, s)
                if nxt is None or (end is not None and nxt > end):
                    break
                s = max(s, nxt)
                e = s + region_bp - 1 if end is None else min(s + region_bp - 1, end)
                yield chrom, s, e
                s = e + 1

    samples = reader.samples if len(reader.samples) != len(reader._all_samples) else None
    ctx = multiprocessing.get_context("spawn")  # the parent holds htslib and zarr threads: never fork
    pending: deque = deque()
    buffer: list[VariantBlock] = []
    buffered = 0
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        todo = regions()
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * workers:
                w = next(todo, None)
                if w is None:
                    exhausted = True
                    break
                pending.append((w, pool.submit(_region_task, str(reader.path), samples, *w, size)))
            if not pending:
                break
            (chrom, s, e), fut = pending.popleft()
            blocks, delta = fut.result()
            c = reader.counts
            c.records += delta.records
            c.kept += delta.kept
            for k, v in delta.dropped.items():
                c.dropped[k] += v
            seen_records += delta.records
            seen_bp += e - s + 1
            if seen_records:
                region_bp = int(np.clip(target * seen_bp / seen_records, _MIN_REGION_BP, _MAX_REGION_BP))
            idx = reader._contig_index(chrom)
            for b in blocks:
                b.contig[:] = idx
                buffer.append(b)
                buffered += len(b)
            while buffered >= size:
                whole = _concat(buffer)
                yield _take(whole, 0, size)
                rest = _take(whole, size, len(whole))
                rest = VariantBlock(*(np.array(getattr(rest, f)) for f in
                                      ("contig", "position", "allele", "id", "genotype", "phased")))
                buffer, buffered = ([rest] if len(rest) else []), len(rest)
    if buffered:
        yield _concat(buffer)


def _header_has_contigs(vcf) -> bool:
    return any(h.type == "CONTIG" for h in vcf.header_iter())


def _header_contig_lengths(vcf) -> dict[str, int]:
    """Lengths from ``##contig=<ID=..,length=..>`` lines (htslib reports 0 when absent)."""
    if not _header_has_contigs(vcf):
        return {}
    try:
        lengths = vcf.seqlens
    except Exception:  # pragma: no cover - cyvcf2 raises when the header has no lengths
        return {}
    return {n: int(x) for n, x in zip(vcf.seqnames, lengths) if int(x) > 0}


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
