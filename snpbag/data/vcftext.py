"""A fast reader for GT-only VCF text, the layout of phased panels and simulations.

htslib parses every sample field of every record (~100 µs per record at 3,000 samples,
docs/benchmarks.md); plink2 is far cheaper because it parses the text itself. For
records whose FORMAT is exactly ``GT`` and whose sample fields are all 3 bytes
(``a|b``/``a/b``, single-character alleles), each field plus its tab is one 32-bit
word, so numpy decodes a batch of records with a few word operations. Any other record
(haploid or multi-digit calls, other FORMAT fields) falls back to a per-field parser
with cyvcf2's semantics. Records are consumed by :meth:`VcfReader.blocks`, which
applies the same filters and checks as for cyvcf2 records; the round-trip tests compare
this reader with cyvcf2 on random VCFs."""

from __future__ import annotations

import gzip
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from snpbag.errors import InputError

_BAD = 99
_PIPE, _SLASH, _TAB = ord("|"), ord("/"), ord("\t")
_CHUNK = 1 << 22


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


class _Genotypes:
    __slots__ = ("_rec",)

    def __init__(self, rec: TextRecord):
        self._rec = rec

    def array(self) -> np.ndarray:
        return self._rec._parse()


class TextRecord:
    """The subset of cyvcf2.Variant that VcfReader.blocks uses, parsed lazily."""

    __slots__ = ("CHROM", "POS", "_fields", "_reader")

    def __init__(self, chrom: str, pos: int, fields: list[bytes], reader: TextReader):
        self.CHROM, self.POS, self._fields, self._reader = chrom, pos, fields, reader

    @property
    def ID(self) -> str | None:
        v = self._fields[2]
        return None if v == b"." else v.decode()

    @property
    def REF(self) -> str:
        return self._fields[3].decode()

    @property
    def ALT(self) -> list[str]:
        v = self._fields[4]
        return [] if v == b"." else v.decode().split(",")

    def fixed_gt(self) -> bytes | None:
        """Sample columns plus a trailing tab when FORMAT is GT and every field is 3 bytes
        (``a|b``), i.e. what :func:`decode_fixed` can decode; None otherwise."""
        if self._fields[8] != b"GT":
            return None
        s = self._fields[9]
        if s[-1:] == b"\r":
            s = s[:-1]
        return s + b"\t" if len(s) == 4 * self._reader.n_all - 1 else None

    @property
    def genotype(self) -> _Genotypes:
        return _Genotypes(self)

    def _parse(self) -> np.ndarray:
        """(n, 3) int16: allele, allele (−2 = haploid fill), phased — like cyvcf2's array().

        Only records that :func:`decode_fixed` cannot decode come here (per-field parsing).
        """
        return self._parse_slow(self._fields[8], self._fields[9].rstrip(b"\r\n"))

    def _parse_slow(self, fmt: bytes, s: bytes) -> np.ndarray:
        r = self._reader
        keys = fmt.split(b":")
        where = f"{r.path}: record {self.CHROM}:{self.POS}"
        if keys[0] != b"GT":
            raise InputError(f"{where} has no GT; snpbag needs called genotypes")
        fields = s.split(b"\t")
        if len(fields) != r.n_all:
            raise InputError(f"{where} has {len(fields)} sample columns, the header has {r.n_all}; fix the file")
        if r.columns is not None:
            fields = [fields[i] for i in r.columns]
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


# A sample field "a|b\t" read as one little-endian uint32. Clearing bit 0 of bytes 0 and 2
# maps '0'/'1' alleles onto one value, so the common case is two word comparisons.
_CLEAR_ALLELE_BITS = np.uint32(0xFFFEFFFE)
_WORD_PIPE = np.uint32(0x30 | _PIPE << 8 | 0x30 << 16 | _TAB << 24)
_WORD_SLASH = np.uint32(0x30 | _SLASH << 8 | 0x30 << 16 | _TAB << 24)
# Rare rows (missing calls, odd bytes): 16-bit lookups on (allele, separator) and (allele, tab).
_L_FIRST = np.full(1 << 16, _BAD, dtype=np.int8)
_L_PHASE = np.zeros(1 << 16, dtype=bool)
_L_SECOND = np.full(1 << 16, _BAD, dtype=np.int8)
for _c, _v in ((ord("0"), 0), (ord("1"), 1), (ord("."), -1)):
    for _sep in (_PIPE, _SLASH):
        _L_FIRST[_c | _sep << 8] = _v
        _L_PHASE[_c | _sep << 8] = _sep == _PIPE
    _L_SECOND[_c | _TAB << 8] = _v


def decode_fixed(raws: list[bytes], n_all: int, columns: np.ndarray | None):
    """Decode records from :meth:`TextRecord.fixed_gt` in one vectorised pass.

    Returns (alleles (k, n, 2) int8, phased (k, n) bool, ok (k,) bool); rows with any
    unexpected field (haploid, multi-digit, malformed) have ok False and must be parsed
    one by one.
    """
    w = np.frombuffer(b"".join(raws), dtype="<u4").reshape(len(raws), n_all)
    if columns is not None:
        w = w[:, columns]
    m = w & _CLEAR_ALLELE_BITS
    phased = m == _WORD_PIPE
    ok = (phased | (m == _WORD_SLASH)).all(axis=1)
    a = np.empty((*w.shape, 2), dtype=np.int8)
    a[:, :, 0] = w & 1
    a[:, :, 1] = (w >> 16) & 1
    rare = np.flatnonzero(~ok)
    if rare.size:
        lo, hi = w[rare] & 0xFFFF, w[rare] >> 16
        first, second = _L_FIRST.take(lo), _L_SECOND.take(hi)
        a[rare, :, 0], a[rare, :, 1], phased[rare] = first, second, _L_PHASE.take(lo)
        ok[rare] = (first != _BAD).all(axis=1) & (second != _BAD).all(axis=1)
    return a, phased, ok


class TextReader:
    """Iterate TextRecords of a VCF (plain or bgzipped), decompressing in a thread.

    Parameters
    ----------
    path : the VCF.
    n_all : sample columns in the header.
    columns : sample columns to keep (increasing), None for all.
    threads : > 1 decompresses in a background thread (zlib releases the GIL).
    """

    def __init__(self, path: Path, *, n_all: int, columns: np.ndarray | None, threads: int = 1):
        self.path, self.n_all, self.columns, self.threads = Path(path), n_all, columns, threads

    def _chunks(self) -> Iterator[bytes]:
        with _open(self.path) as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    def _threaded_chunks(self) -> Iterator[bytes]:
        q: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()

        def produce():
            try:
                for c in self._chunks():
                    while not stop.is_set():
                        try:
                            q.put(c, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(None)
            except BaseException as e:  # surfaced in the consumer
                q.put(e)

        t = threading.Thread(target=produce, name="snpbag-inflate", daemon=True)
        t.start()
        try:
            while (c := q.get()) is not None:
                if isinstance(c, BaseException):
                    raise InputError(f"{self.path}: cannot decompress ({c}); check the file with `bgzip -t`") from c
                yield c
        finally:
            stop.set()
            t.join()

    def __iter__(self) -> Iterator[TextRecord]:
        rest = b""
        chunks = self._threaded_chunks() if self.threads > 1 else self._chunks()
        for chunk in chunks:
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from self._records(lines)
        if rest:
            yield from self._records([rest])

    def _records(self, lines: list[bytes]) -> Iterator[TextRecord]:
        for line in lines:
            if not line or line[:1] == b"#":
                continue
            fields = line.split(b"\t", 9)
            if len(fields) < 10:
                raise InputError(f"{self.path}: malformed record with {len(fields)} columns "
                                 f"({line[:60].decode(errors='replace')!r}); check the file with `bcftools view`")
            try:
                pos = int(fields[1])
            except ValueError:
                raise InputError(f"{self.path}: bad POS {fields[1][:20]!r} on {fields[0].decode(errors='replace')}; "
                                 "check the file with `bcftools view`") from None
            yield TextRecord(fields[0].decode(), pos, fields, self)
