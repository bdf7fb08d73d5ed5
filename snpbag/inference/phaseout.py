"""Write a phased VCF: the input's own text, with phased GT, FORMAT/PP and FORMAT/IMP.

The output is the input file again, record for record and sample for sample (``--samples``
keeps the chosen columns): a record that was phased gets its GT rewritten with ``|`` and two
FORMAT fields inserted right after GT (after GT, so a sample field that drops trailing
fields keeps its meaning); every other byte of the record — the other FORMAT fields, INFO,
IDs — is the input's. Records that were not phased (multi-allelic, indels, SNPs the panel
lacks) are copied unchanged. The header gains the two FORMAT definitions:

* ``PP`` — probability that the phase of this heterozygous call relative to the sample's
  previous heterozygous call is right (``.`` where it does not apply: homozygous calls, the
  first heterozygote of a chromosome, samples kept as given);
* ``IMP`` — 1 where the call was missing in the input and was filled by phasing, else 0.

The text is read again from the input (not re-serialised by htslib), so nothing is
reformatted; that is also why BCF input is refused by :func:`snpbag.inference.phase.phase`.
"""

from __future__ import annotations

import gzip
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from snpbag import __version__
from snpbag.io.bgzf import write_vcf_bgzf
from snpbag.io.records import classify

PP_HEADER = ('##FORMAT=<ID=PP,Number=1,Type=Float,Description="Probability that the phase of this heterozygous '
             'call relative to the previous heterozygous call of the sample is right (snpbag phase)">')
IMP_HEADER = ('##FORMAT=<ID=IMP,Number=1,Type=Integer,Description="1: the call was missing in the input and was '
              'filled by snpbag phase; 0: the input call">')
_GT = np.array([b"0|0", b"0|1", b"1|0", b"1|1"], dtype=object)
_CHUNK = 2048  # records per written chunk


@dataclass
class PhasedWrite:
    path: Path
    n_records: int = 0
    n_phased: int = 0
    passed: dict = field(default_factory=dict)  # reason -> records copied unphased

    def line(self) -> str:
        other = ", ".join(f"{v:,} {k}" for k, v in self.passed.items() if v)
        return (f"wrote {self.path} ({self.n_records:,} records: {self.n_phased:,} phased"
                f"{'; passed through unphased: ' + other if other else ''})")


def _lines(path: Path, region: str | None):
    """(header lines, record lines) of a VCF as bytes, records restricted to ``region``."""
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    fh = gzip.open(path, "rb") if gz else open(path, "rb")
    header = []
    first = None
    for line in fh:
        if not line.startswith(b"#"):
            first = line
            break
        header.append(line)
    if region is None:
        def records():
            try:
                if first is not None:
                    yield first
                yield from fh
            finally:
                fh.close()
        return header, records()
    fh.close()
    import pysam  # the index reader (a declared dependency)

    def fetched():
        with pysam.TabixFile(str(path)) as tbx:
            for line in tbx.fetch(region=region):
                yield line.encode() + b"\n"
    return header, fetched()


def _header(header: list[bytes], columns: np.ndarray | None, extra: tuple[str, ...]) -> bytes:
    """The input's header with PP/IMP definitions (if absent), the command and ``extra``
    lines before #CHROM; #CHROM restricted to ``columns``."""
    out = list(header[:-1])
    have = {b"PP": False, b"IMP": False}
    for line in out:
        for k in have:
            if line.startswith(b"##FORMAT=<ID=" + k + b","):
                have[k] = True
    new = [h for k, h in ((b"PP", PP_HEADER), (b"IMP", IMP_HEADER)) if not have[k]]
    new += [f"##source=snpbag {__version__}", f"##snpbag_command={shlex.join(sys.argv)}", *(f"##{x}" for x in extra)]
    chrom = header[-1].rstrip(b"\r\n").split(b"\t")
    if columns is not None:
        chrom = chrom[:9] + [chrom[9 + c] for c in columns]
    return b"".join(out) + "".join(x + "\n" for x in new).encode() + b"\t".join(chrom) + b"\n"


def _pp_text(pp: np.ndarray) -> list[bytes]:
    return [b"." if v != v else b"%.3f" % v for v in pp.tolist()]


def _rewrite(fields: list[bytes], cols: list[int], hap: np.ndarray, pp: np.ndarray, filled: np.ndarray,
             mine: np.ndarray) -> bytes:
    """One phased record: ``hap`` (N, 2), ``pp`` (N,), ``filled`` (N,) and ``mine`` (N,):
    the samples whose GT is replaced (others keep their GT text, PP '.', IMP 0)."""
    fmt = fields[8].rstrip(b"\r\n").split(b":")
    keep = [k for k in range(1, len(fmt)) if fmt[k] not in (b"PP", b"IMP")]  # a rephased snpbag output
    new_fmt = b":".join([b"GT", b"PP", b"IMP", *(fmt[k] for k in keep)])
    gt = _GT[2 * hap[:, 0].astype(np.int64) + hap[:, 1]]
    ppt = _pp_text(np.where(mine, pp, np.nan))
    imp = np.where(mine & filled, b"1", b"0")
    out = fields[:8] + [new_fmt]
    last = len(fields) - 1
    for i, c in enumerate(cols):
        s = fields[9 + c]
        if 9 + c == last:
            s = s.rstrip(b"\r\n")
        sub = s.split(b":")
        g = gt[i] if mine[i] else sub[0]
        rest = [sub[k] for k in keep if k < len(sub)]
        out.append(b":".join([g, ppt[i], imp[i], *rest]))
    return b"\t".join(out) + b"\n"


def write_phased_vcf(input, output, target, *, rows: np.ndarray, result, phase_samples: np.ndarray,
                     skip: np.ndarray, region: str | None = None, header_lines=()) -> PhasedWrite:
    """Write ``output`` (bgzipped, indexed, atomically) from ``input``'s text.

    target : the :class:`~snpbag.inference.phase.SnpCalls` read from ``input``;
    rows : its SNP rows that were phased (increasing); result : the
    :class:`~snpbag.retrieval.phasing.Phased` of those rows (samples × rows);
    phase_samples : (N,) bool, the samples whose GT is replaced; skip : (N, rows) bool,
    calls left as given (half-missing calls).
    """
    path, out = Path(input), Path(output)
    header, records = _lines(path, target.region)
    all_ids = header[-1].rstrip(b"\r\n").split(b"\t")[9:]
    where = {s.decode(): i for i, s in enumerate(all_ids)}
    cols = [where[s] for s in target.samples]
    columns = None if cols == list(range(len(all_ids))) else np.array(cols)
    row_of = np.full(len(target), -1, np.int64)
    row_of[rows] = np.arange(rows.size)
    summary = PhasedWrite(out, passed={"multiallelic": 0, "indel": 0, "other": 0, "not_in_panel": 0})
    haps, pp, filled = result.haplotypes, result.pp, result.filled
    mine_all = phase_samples[:, None] & ~skip  # (N, P)

    def chunks():
        yield _header(header, columns, tuple(header_lines))
        k = 0  # the next biallelic SNP of target, in file order
        buf = []
        for line in records:
            fields = line.split(b"\t")
            summary.n_records += 1
            reason = classify(fields[3].decode(), fields[4].decode().split(","))
            j = -1
            if reason is None:
                if k >= len(target) or int(fields[1]) != target.pos[k]:
                    raise AssertionError(f"record {fields[0]!r}:{fields[1]!r} is not SNP {k} read before")
                j = int(row_of[k])
                k += 1
            if j >= 0:
                buf.append(_rewrite(fields, cols, haps[:, j], pp[:, j], filled[:, j], mine_all[:, j]))
                summary.n_phased += 1
            else:
                key = "not_in_panel" if reason is None else reason if reason in summary.passed else "other"
                summary.passed[key] += 1
                if columns is not None:
                    fields[-1] = fields[-1].rstrip(b"\r\n")
                    line = b"\t".join(fields[:9] + [fields[9 + c] for c in cols]) + b"\n"
                buf.append(line)
            if len(buf) >= _CHUNK:
                yield b"".join(buf)
                buf = []
        yield b"".join(buf)

    write_vcf_bgzf(chunks(), out)
    return summary
