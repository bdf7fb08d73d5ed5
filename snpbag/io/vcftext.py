"""A fast reader for GT-first VCF text, the layout of phased panels and simulations.

htslib parses every sample field of every record (~100 µs per record at 3,000 samples,
docs/benchmarks.md); plink2 is far cheaper because it parses the text itself. This
reader does too, without Python work per record: BGZF blocks are inflated by
:func:`snpbag.io.bgzf.read_text` (in threads), line ends are found with memchr,
and compiled loops (:mod:`snpbag.io.vcfparse`) read the fixed columns of a
whole piece of text, replay the record filter of :meth:`VcfReader.blocks` and decode
the calls of a block of records, releasing the GIL so that blocks decode in parallel.
Records the loops do not understand (:mod:`~snpbag.io.vcfparse` lists them) go through
:func:`parse_calls`, the per-field parser with cyvcf2's semantics, which also raises the
user's errors; the round-trip tests compare this reader with cyvcf2 on random VCFs.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.errors import InputError
from snpbag.io.bgzf import read_text
from snpbag.io.records import DROP_REASONS, VariantBlock, classify
from snpbag.io.dosage import alt_dosage

_LINES = 4096  # records per call of the compiled scan
_EMPTY = np.zeros(0, dtype=np.uint8)
# single-base alleles as str, so a block's REF/ALT need no per-record decoding
_BASES = np.array([chr(i) for i in range(256)], dtype=object)


def first_format(path: str | Path) -> bytes | None:
    """FORMAT column of the first record of a VCF text file (None: BCF, no records)."""
    try:
        with _open(Path(path)) as f:
            if f.read(3) == b"BCF":
                return None
            f.seek(0)
            for line in f:
                if not line.startswith(b"#"):
                    fields = line.split(b"\t", 9)
                    return fields[8] if len(fields) > 9 else None
    except (OSError, EOFError):
        return None
    return None


def _open(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def parse_calls(fmt: bytes, s: bytes, *, n_all: int, columns: np.ndarray | None, where: str) -> np.ndarray:
    """(n, 3) int16: allele, allele (−2 = haploid fill), phased — like cyvcf2's ``genotype.array()``.

    The reference parser of one record's sample columns ``s`` (FORMAT ``fmt``), used for
    the records the compiled loops call odd. ``where`` names the record in errors.

    Raises
    ------
    InputError : no GT, a wrong number of sample columns, ploidy above 2, a malformed call.
    """
    keys = fmt.split(b":")
    if keys[0] != b"GT":
        raise InputError(f"{where} has no GT; snpbag needs called genotypes")
    fields = s.rstrip(b"\r\n").split(b"\t")
    if len(fields) != n_all:
        raise InputError(f"{where} has {len(fields)} sample columns, the header has {n_all}; fix the file")
    if columns is not None:
        fields = [fields[i] for i in columns]
    out = np.empty((len(fields), 3), dtype=np.int16)
    try:
        for i, f in enumerate(fields):
            gt = f.split(b":", 1)[0]
            phased = b"|" in gt
            parts = gt.replace(b"|", b"/").split(b"/")
            if len(parts) == 1:
                out[i] = (-1 if parts[0] == b"." else int(parts[0]), -2, 1)
            elif len(parts) == 2:
                out[i] = (-1 if parts[0] == b"." else int(parts[0]), -1 if parts[1] == b"." else int(parts[1]),
                          phased)
            else:
                raise InputError(f"{where} has ploidy {len(parts)}; snpbag supports ploidy <= 2")
    except ValueError as e:
        raise InputError(f"{where}: malformed GT ({e}); check the file with `bcftools view`") from e
    return out


def finished_calls(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(gt (n, 2) int8, phased (n,)) of :func:`parse_calls`' array, as a finished block holds them.

    A missing haploid call (−1, −2) becomes (−1, −1); haploid calls are phased.
    """
    g = a[:, :2].astype(np.int8)  # wraps like the int8 block it lands in
    p = a[:, 2].astype(bool)
    fill = g[:, 1] == -2
    p[fill] = True
    g[fill & (g[:, 0] == -1), 1] = -1
    return g, p


@dataclass
class TextBatch:
    """The kept biallelic SNP records of one piece of text (offsets into ``buf``)."""

    buf: np.ndarray  # uint8: a piece of text
    tabs: np.ndarray  # (k, 9) int64: the first nine tabs of each record's line
    s1: np.ndarray  # (k,) int64: end of the sample columns (before "\r\n" or "\n")
    line_end: np.ndarray  # (k,) int64: the newline
    simple: np.ndarray  # (k,) bool: REF and ALT single bases
    contig: np.ndarray  # (k,) int16
    position: np.ndarray  # (k,) int32

    def __len__(self) -> int:
        return int(self.position.size)


@dataclass
class TextBlock:
    """Up to ``size`` consecutive kept records: slices ``(batch, lo, hi)`` of batches, decoded on demand."""

    parts: list
    contig: np.ndarray  # (v,) int16
    position: np.ndarray  # (v,) int32
    error: InputError | None = None  # found after these records: raised once they are decoded

    def __len__(self) -> int:
        return int(self.position.size)


class TextReader:
    """Biallelic SNP records of a VCF (plain, gzip or BGZF) in blocks, filtered like VcfReader.blocks.

    Parameters
    ----------
    path : the VCF.
    n_all : sample columns in the header.
    columns : sample columns to keep (increasing), None for all.
    threads : > 1 inflates BGZF blocks in that many threads and decodes blocks in a
        pool of that many threads (:meth:`variant_blocks`).
    """

    def __init__(self, path: Path, *, n_all: int, columns: np.ndarray | None, threads: int = 1):
        self.path, self.n_all, self.columns, self.threads = Path(path), n_all, columns, threads
        self.n = n_all if columns is None else int(columns.size)
        self.column = np.full(n_all, -1, dtype=np.int64)  # sample column -> output index
        self.column[np.arange(n_all) if columns is None else columns] = np.arange(self.n)

    # --- records ---------------------------------------------------------------------------
    def batches(self, reader) -> Iterator[TextBatch]:
        """Kept records of each piece of text; ``reader`` (a VcfReader) gets the counts and contigs.

        Raises
        ------
        InputError : as VcfReader.blocks, plus malformed lines (fewer than 10 columns, bad POS).
        """
        from snpbag.io.vcfparse import newline_bounds

        f = _Filter(self, reader)
        rest: list[np.ndarray] = []
        for piece in read_text(self.path, threads=self.threads):
            first, last = newline_bounds(piece)
            if first < 0:
                rest.append(piece)
                continue
            start = 0  # the piece starts a line unless text is left over from the last one
            if rest:  # the line that spans pieces
                line = np.concatenate([*rest, piece[:first + 1]])
                yield from f.batch(line, 0, line.size)
                rest = []
                start = first + 1
            if last + 1 < piece.size:
                rest = [piece[last + 1:]]
            yield from f.batch(piece, start, last + 1)
        if rest:
            line = np.concatenate([*rest, np.array([10], dtype=np.uint8)])
            yield from f.batch(line, 0, line.size)

    def blocks(self, reader, size: int) -> Iterator[TextBlock]:
        """Kept records in blocks of ``size`` (the last may be shorter), not yet decoded.

        A record error ends the blocks with one carrying it (``error``) after the records
        before it, so that decoding those first reports a bad call there in file order.
        """
        parts, have = [], 0
        try:
            for b in self.batches(reader):
                lo = 0
                while lo < len(b):
                    hi = min(len(b), lo + size - have)
                    parts.append((b, lo, hi))
                    have += hi - lo
                    lo = hi
                    if have == size:
                        yield _block(parts)
                        parts, have = [], 0
        except InputError as e:
            yield _block(parts, error=e)
            return
        if have:
            yield _block(parts)

    # --- decoding ---------------------------------------------------------------------------
    def dosages(self, block: TextBlock, contigs: list[str], out: np.ndarray | None = None) -> np.ndarray:
        """ALT dosages (v, n) int8 of a block (into ``out`` when given), as alt_dosage gives them from its calls.

        Raises
        ------
        InputError : a record without GT or with malformed calls; an allele index above 1.
        """
        from snpbag.io.vcfparse import decode_dosages

        v = len(block)
        out = np.empty((v, self.n), dtype=np.int8) if out is None else out
        ok, high = np.empty(v, dtype=bool), np.empty(v, dtype=bool)
        r = 0
        for b, lo, hi in block.parts:
            t = b.tabs[lo:hi]
            decode_dosages(b.buf, t[:, 7] + 1, t[:, 8], t[:, 8] + 1, b.s1[lo:hi], self.n_all, self.column,
                           out, r, ok[r:r + hi - lo], high[r:r + hi - lo])
            for i in np.flatnonzero(~ok[r:r + hi - lo]):
                g, _ = finished_calls(self._slow(b, lo + int(i), contigs))
                high[r + i] = bool((g > 1).any())
                out[r + i] = alt_dosage(g)
            r += hi - lo
        if block.error is not None:  # calls before the error are checked (as they are read), not alleles > 1
            raise block.error
        self._check_high(block.contig, block.position, high, contigs)
        return out

    def _part_calls(self, b: TextBatch, lo: int, hi: int, gt, ph, high, r: int, contigs: list[str]) -> None:
        """Rows ``r:r + hi - lo`` of a block's arrays from records ``lo:hi`` of a batch."""
        from snpbag.io.vcfparse import decode_calls

        t = b.tabs[lo:hi]
        ok = np.empty(hi - lo, dtype=bool)
        gt16 = gt.reshape(gt.shape[0], -1).view(np.uint16)
        decode_calls(b.buf, t[:, 7] + 1, t[:, 8], t[:, 8] + 1, b.s1[lo:hi], self.n_all, self.column,
                     gt, gt16, ph, r, ok, high[r:r + hi - lo])
        for i in np.flatnonzero(~ok):
            gt[r + i], ph[r + i] = finished_calls(self._slow(b, lo + int(i), contigs))
            high[r + i] = bool((gt[r + i] > 1).any())

    def _slow(self, b: TextBatch, k: int, contigs: list[str]) -> np.ndarray:
        t = b.tabs[k]
        where = f"{self.path}: record {contigs[b.contig[k]]}:{b.position[k]}"
        return parse_calls(b.buf[t[7] + 1:t[8]].tobytes(), b.buf[t[8] + 1:b.line_end[k]].tobytes(),
                           n_all=self.n_all, columns=self.columns, where=where)

    def _check_high(self, contig: np.ndarray, position: np.ndarray, high: np.ndarray, contigs: list[str]) -> None:
        if high.any():
            bad = int(np.flatnonzero(high)[0])
            raise InputError(f"{self.path}: allele index > 1 at biallelic site "
                             f"{contigs[contig[bad]]}:{position[bad]}; "
                             "fix the GT values (`bcftools norm --check-ref`)")

    @staticmethod
    def _part_alleles_ids(b: TextBatch, lo: int, hi: int, alleles: np.ndarray, ids: np.ndarray, r: int) -> None:
        """REF/ALT and ID ("." for none) of records ``lo:hi`` of a batch into rows ``r:``."""
        t, buf = b.tabs[lo:hi], b.buf
        simple = b.simple[lo:hi]
        alleles[r:r + hi - lo, 0] = _BASES[buf[t[:, 2] + 1]]
        alleles[r:r + hi - lo, 1] = _BASES[buf[t[:, 3] + 1]]
        for k in np.flatnonzero(~simple):
            alleles[r + k, 0] = buf[t[k, 2] + 1:t[k, 3]].tobytes().decode()
            alleles[r + k, 1] = buf[t[k, 3] + 1:t[k, 4]].tobytes().decode().split(",")[0]
        dot = (t[:, 2] - t[:, 1] == 2) & (buf[t[:, 1] + 1] == ord("."))
        ids[r:r + hi - lo] = "."
        for k in np.flatnonzero(~dot):
            ids[r + k] = buf[t[k, 1] + 1:t[k, 2]].tobytes().decode() or "."

    def variant_blocks(self, reader, size: int) -> Iterator:
        """VcfReader.blocks for this reader: VariantBlocks of ``size`` records (the last may be shorter).

        Each batch of records is decoded into the block's arrays as it arrives (by a thread
        pool when threads > 1, while the next text is read), so the text is freed early.
        """
        from concurrent.futures import ThreadPoolExecutor


        n = self.n
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="snpbag-decode") if self.threads > 1 else None

        def new():
            return dict(gt=np.empty((size, n, 2), dtype=np.int8), ph=np.empty((size, n), dtype=bool),
                        high=np.empty(size, dtype=bool), alleles=np.empty((size, 2), dtype=object),
                        ids=np.empty(size, dtype=object), contig=[], position=[], jobs=[])

        def done(st, v: int) -> VariantBlock:
            for fut in st["jobs"]:
                fut.result()
            contig, position = np.concatenate(st["contig"]), np.concatenate(st["position"])
            self._check_high(contig, position, st["high"][:v], reader.contigs)
            return VariantBlock(contig=contig, position=position, allele=st["alleles"][:v], id=st["ids"][:v],
                                genotype=st["gt"][:v], phased=st["ph"][:v])

        st, have = new(), 0
        try:
            for b in self.batches(reader):
                lo = 0
                while lo < len(b):
                    hi = min(len(b), lo + size - have)
                    self._part_alleles_ids(b, lo, hi, st["alleles"], st["ids"], have)
                    st["contig"].append(b.contig[lo:hi])
                    st["position"].append(b.position[lo:hi])
                    args = (b, lo, hi, st["gt"], st["ph"], st["high"], have, reader.contigs)
                    if pool is None:
                        self._part_calls(*args)
                    else:
                        st["jobs"].append(pool.submit(self._part_calls, *args))
                    have += hi - lo
                    lo = hi
                    if have == size:
                        yield done(st, have)
                        st, have = new(), 0
            if have:
                yield done(st, have)
        except InputError:
            for fut in st["jobs"]:  # a bad call before the error is reported first, as it comes first
                fut.result()
            raise
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)


def _block(parts: list, error: InputError | None = None) -> TextBlock:
    if len(parts) == 1:
        b, lo, hi = parts[0]
        return TextBlock(parts, b.contig[lo:hi].copy(), b.position[lo:hi].copy(), error)
    return TextBlock(parts, np.concatenate([b.contig[lo:hi] for b, lo, hi in parts] or [np.zeros(0, np.int16)]),
                     np.concatenate([b.position[lo:hi] for b, lo, hi in parts] or [np.zeros(0, np.int32)]), error)


class _Filter:
    """The state of VcfReader.blocks' record checks, carried across pieces of text."""

    def __init__(self, text: TextReader, reader):

        self.text, self.reader, self.path = text, reader, text.path
        self.reasons = {r: i + 1 for i, r in enumerate(DROP_REASONS)}
        self.state = np.array([-1, 0, -1, 0, 0], dtype=np.int64)  # chrom id, last POS, last kept, records, kept
        self.done = np.zeros(16, dtype=bool)
        self.ids: dict[str, int] = {}  # chromosome name -> id
        self.names: list[str] = []
        self.prev_chrom = _EMPTY  # bytes of the last record's CHROM
        self.prev_id = -1
        self.contig_of = np.full(16, -1, dtype=np.int64)  # chromosome id -> index in reader.contigs

    def batch(self, buf: np.ndarray, a: int, b: int) -> Iterator[TextBatch]:
        """The kept records of the lines in ``buf[a:b]`` (which ends with a newline)."""
        from snpbag.io.vcfparse import find_lines

        starts = np.empty(_LINES, dtype=np.int64)
        ends = np.empty(_LINES, dtype=np.int64)
        while a < b:
            k, a = find_lines(buf, a, b, starts, ends)
            if k:
                yield from self._lines(buf, starts[:k].copy(), ends[:k].copy())

    def _lines(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> Iterator[TextBatch]:
        from snpbag.io.vcfparse import (ERR_DUPLICATE, ERR_NOT_CONTIGUOUS, ERR_UNSORTED, filter_records,
                                          scan_records)

        k = starts.size
        tabs = np.empty((k, 9), dtype=np.int64)
        ntab = np.empty(k, dtype=np.int8)
        pos = np.empty(k, dtype=np.int64)
        same = np.empty(k, dtype=bool)
        simple = np.empty(k, dtype=bool)
        scan_records(buf, starts, ends, self.prev_chrom, tabs, ntab, pos, same, simple)
        if self.prev_id < 0:
            same[0] = False  # the first record starts a run, even with an empty CHROM
        # a malformed line stops the batch there: the records before it are checked first
        error = None
        short = np.flatnonzero(ntab < 9)
        stop = int(short[0]) if short.size else k
        for i in np.flatnonzero(pos[:stop] < 0):
            i = int(i)
            field = buf[tabs[i, 0] + 1:tabs[i, 1]].tobytes()
            try:
                pos[i] = int(field)
            except ValueError:
                chrom = buf[starts[i]:tabs[i, 0]].tobytes().decode(errors="replace")
                error = InputError(f"{self.path}: bad POS {field[:20]!r} on {chrom}; "
                                   "check the file with `bcftools view`")
                stop = i
                break
        if error is None and stop < k:
            line = buf[starts[stop]:ends[stop]].tobytes()
            error = InputError(f"{self.path}: malformed record with {int(ntab[stop]) + 1} columns "
                               f"({line[:60].decode(errors='replace')!r}); check the file with `bcftools view`")
        if stop:
            yield from self._checked(buf, starts[:stop], ends[:stop], tabs[:stop], pos[:stop], same[:stop],
                                     simple[:stop], classify, (ERR_NOT_CONTIGUOUS, ERR_UNSORTED, ERR_DUPLICATE),
                                     filter_records)
        if error is not None:
            raise error

    def _checked(self, buf, starts, ends, tabs, pos, same, simple, classify, codes, filter_records):
        k = starts.size
        # chromosome ids: a name per run of equal CHROM
        runs = np.flatnonzero(~same)
        run_ids = []
        for i in runs:
            name = buf[starts[i]:tabs[i, 0]].tobytes().decode()
            cid = self.ids.get(name)
            if cid is None:
                cid = self.ids[name] = len(self.names)
                self.names.append(name)
            run_ids.append(cid)
        if len(self.names) > self.done.size:
            self.done = np.concatenate([self.done, np.zeros(len(self.names), dtype=bool)])
        chrom = np.empty(k, dtype=np.int64)
        edges = [*runs.tolist(), k]
        if edges[0] > 0:
            chrom[:edges[0]] = self.prev_id
        for cid, r0, r1 in zip(run_ids, edges[:-1], edges[1:]):
            chrom[r0:r1] = cid
        self.prev_id = int(chrom[-1])
        self.prev_chrom = buf[starts[-1]:tabs[-1, 0]].copy()
        reason = np.zeros(k, dtype=np.int64)
        for i in np.flatnonzero(~simple):
            ref = buf[tabs[i, 2] + 1:tabs[i, 3]].tobytes().decode()
            alt = buf[tabs[i, 3] + 1:tabs[i, 4]].tobytes()
            r = classify(ref, [] if alt == b"." else alt.decode().split(","))
            reason[i] = 0 if r is None else self.reasons[r]
        keep = np.zeros(k, dtype=bool)
        dropped = np.zeros(len(self.reasons), dtype=np.int64)
        changes = np.empty(k, dtype=np.int64)
        before = self.state[3:5].copy()
        code, at, nch = filter_records(chrom, pos, reason, 0, self.state, self.done, keep, dropped, changes)
        reader = self.reader
        counts = reader.counts
        counts.records += int(self.state[3] - before[0])
        counts.kept += int(self.state[4] - before[1])
        for name, i in self.reasons.items():
            counts.dropped[name] += int(dropped[i - 1])
        error = None
        if code:
            name, p = self.names[chrom[at]], int(pos[at])
            not_contiguous, unsorted, duplicate = codes
            if code == not_contiguous:
                msg = f"records of {name} are not contiguous (seen again at {name}:{p}); sort with `bcftools sort`"
            elif code == unsorted:
                msg = f"unsorted positions ({name}:{p} after {name}:{int(self.state[1])}); sort with `bcftools sort`"
            else:
                msg = (f"two biallelic SNPs at {name}:{p} (a split multi-allelic site?); "
                       "join them with `bcftools norm -m+any` or drop one")
            error = InputError(f"{self.path}: {msg}")
        if self.contig_of.size < len(self.names):
            self.contig_of = np.concatenate([self.contig_of, np.full(len(self.names), -1, dtype=np.int64)])
        for i in changes[:nch]:
            self.contig_of[chrom[i]] = reader._contig_index(self.names[chrom[i]])
        idx = np.flatnonzero(keep)  # records after an error are not kept
        big = idx[pos[idx] > np.iinfo(np.int32).max]
        if big.size:
            i = int(big[0])
            error = InputError(f"{self.path}: POS {int(pos[i])} on {self.names[chrom[i]]} is beyond 2^31 - 1, "
                               "which VCF does not allow; fix the file")
            idx = idx[idx < i]
        if idx.size:  # the records before an error go on first, so that errors come in file order
            yield self._batch(buf, ends, tabs, pos, simple, chrom, idx)
        if error is not None:
            raise error

    def _batch(self, buf, ends, tabs, pos, simple, chrom, idx) -> TextBatch:
        t = tabs[idx]
        s1 = ends[idx].copy()
        cr = buf[s1 - 1] == 13
        s1[cr] -= 1
        return TextBatch(buf=buf, tabs=t, s1=s1, line_end=ends[idx], simple=simple[idx],
                     contig=self.contig_of[chrom[idx]].astype(np.int16), position=pos[idx].astype(np.int32))
