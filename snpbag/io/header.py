"""The VCF header read from its text, without htslib.

:func:`read_header` takes the sample ids, the ``##contig`` lines (with their lengths) and
the FORMAT and INFO ids from a plain, gzipped or bgzipped VCF or a BCF. htslib refuses
some headers (duplicated sample ids) with unhelpful messages, so checks that must name
the fix run on this text first. Headers are written by :mod:`snpbag.io.vcfwrite`.
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_ID = re.compile(r"^##(contig|FORMAT|INFO)=<ID=([^,>]+)(.*)>\s*$")
_LENGTH = re.compile(r"[,<]length=(\d+)")


@dataclass(frozen=True)
class VcfHeader:
    """What snpbag reads from a VCF header."""

    samples: list[str]
    contigs: dict[str, int | None]  # ``##contig`` ids in header order: length, None where not given
    formats: tuple[str, ...]  # FORMAT ids
    infos: tuple[str, ...]  # INFO ids

    def duplicated_samples(self) -> list[str]:
        """Sample ids given more than once, each once, in header order."""
        seen: set[str] = set()
        dup: list[str] = []
        for s in self.samples:
            if s in seen and s not in dup:
                dup.append(s)
            seen.add(s)
        return dup


def read_header(path: str | Path) -> VcfHeader | None:
    """The header of a VCF (plain, gzip or BGZF) or BCF, from its text; None where it cannot be read so."""
    lines = _header_lines(Path(path))
    return None if lines is None else parse_header(lines)


def parse_header(lines: Iterable[str]) -> VcfHeader | None:
    """A :class:`VcfHeader` from header lines (None without a ``#CHROM`` line)."""
    contigs: dict[str, int | None] = {}
    ids: dict[str, list[str]] = {"FORMAT": [], "INFO": []}
    for line in lines:
        if line.startswith("#CHROM"):
            return VcfHeader(samples=line.rstrip("\r\n").split("\t")[9:], contigs=contigs,
                             formats=tuple(ids["FORMAT"]), infos=tuple(ids["INFO"]))
        m = _ID.match(line)
        if m is None:
            continue
        kind, name, rest = m.groups()
        if kind == "contig":
            length = _LENGTH.search(rest)
            contigs[name] = int(length.group(1)) if length else None
        else:
            ids[kind].append(name)
    return None


def _header_lines(path: Path) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        opener = gzip.open if gz else open
        with opener(path, "rb") as f:
            head = f.read(5)
            if head.startswith(b"BCF"):
                (l_text,) = struct.unpack("<I", f.read(4))
                return f.read(l_text).rstrip(b"\0").decode(errors="replace").splitlines()
            lines = [(head + f.readline()).decode(errors="replace")]
            for raw in f:
                lines.append(raw.decode(errors="replace"))
                if raw.startswith(b"#CHROM") or not raw.startswith(b"#"):
                    break
            return lines
    except (OSError, EOFError, struct.error):
        return None
