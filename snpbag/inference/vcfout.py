"""Write imputed genotypes as a bgzipped, tabix-indexed VCF plus a sites-only info file.

The model produces probabilities sample-major (a batch of samples x a run of sites) but
a VCF is written site-major, so results go first to a quantised on-disk buffer (uint16
thousandths, 4 bytes per genotype) and the VCF is then emitted a chunk of sites at a
time: memory stays bounded by one chunk whatever the cohort size. Text is formatted
with fixed-width numpy byte arrays, not per-value Python formatting.

One rule ties the FORMAT fields together (docs/imputation.md): GP is the model's
(P0, P1, P2) rounded to thousandths so that the printed values sum to exactly 1;
DS = GP1 + 2*GP2 computed from the printed GP; GT = argmax of the printed GP (unphased)
unless haplotype dosages are supplied, in which case GT is phased from HDS. INFO/AF and
INFO/R2 are recomputed from the printed values, so anyone can check them from the VCF.
The info file adds ER2 at typed sites: the r² between each typed call and its
leave-one-out dose (the dose predicted with that call hidden), minimac's empirical R2.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shlex
import shutil
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import njit

from snpbag.io.bgzf import index_path
from snpbag.io.chrom import chrom_key
from snpbag.io.vcfwrite import header_text, write_vcf
from snpbag.errors import InputError
from snpbag.fileio import atomic_output
from snpbag.inference.sitematch import ModelSites
from snpbag import __version__

log = logging.getLogger(__name__)

__all__ = ["OutputSites", "ImputedVcfWriter", "WriteSummary", "dose_r2", "info_path_for", "parse_format",
           "round_gp", "write_imputed_vcf", "INFO_COLUMNS"]

FORMAT_FIELDS = ("GT", "DS", "HDS", "GP")
_WIDTH = {"GT": 3, "DS": 5, "HDS": 11, "GP": 17}
_FORMAT_HEADER = {
    "GT": '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype: argmax of GP, or phased from HDS when present">',
    "DS": '##FORMAT=<ID=DS,Number=A,Type=Float,Description="Estimated ALT dose: GP1 + 2*GP2 of the printed GP">',
    "HDS": '##FORMAT=<ID=HDS,Number=2,Type=Float,Description="Estimated ALT dose of each haplotype">',
    "GP": '##FORMAT=<ID=GP,Number=G,Type=Float,Description="Estimated genotype probabilities P(0/0),P(0/1),P(1/1); '
          'rounded to 0.001, summing to 1">',
}
_INFO_HEADER = (
    '##INFO=<ID=AF,Number=A,Type=Float,Description="Estimated ALT allele frequency: mean DS / 2">',
    '##INFO=<ID=R2,Number=1,Type=Float,Description="Estimated squared correlation between DS and the true ALT dose '
    '(Beagle DR2 formula on GP)">',
    '##INFO=<ID=IMP,Number=0,Type=Flag,Description="Imputed: the site was not in the input">',
    '##INFO=<ID=TYPED,Number=0,Type=Flag,Description="Typed: the site was in the input">',
)
#: Columns of the info file (docs/imputation.md, "The info file").
INFO_COLUMNS = ("chrom", "pos", "id", "ref", "alt", "af", "maf", "r2", "type", "in_vcf", "er2")
_Q = 1000  # probabilities are stored and printed in thousandths
_LUT = np.array([list(f"{v // _Q}.{v % _Q:03d}".encode()) for v in range(2 * _Q + 1)], dtype=np.uint8)  # (2001, 5)
_MIN_R2_DEN = 1e-8  # as Beagle's R2Estimator


def parse_format(fmt: str | None) -> tuple[str, ...]:
    """``"DS,GP"`` → ``("GT", "DS", "GP")``: known fields, GT always first, order otherwise kept."""
    parts = [p.strip().upper() for p in (fmt or "").split(",") if p.strip()]
    bad = [p for p in parts if p not in FORMAT_FIELDS]
    if bad:
        raise InputError(f"--format {fmt}: unknown field(s) {', '.join(bad)}; choose from {','.join(FORMAT_FIELDS)}")
    return ("GT",) + tuple(dict.fromkeys(p for p in parts if p != "GT"))


def info_path_for(path: str | Path) -> Path:
    """``imputed.vcf.gz`` → ``imputed.info.tsv`` (the sites-only companion file)."""
    path = Path(path)
    name = path.name
    for suffix in (".vcf.gz", ".vcf.bgz"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".info.tsv")
    return path.with_name(name + ".info.tsv")


@njit(cache=True, nogil=True)
def _round_rows(p, out):  # pragma: no cover - compiled
    """out (n, 3) int32 = :func:`round_gp` of the rows of p (n, 3) float64. Returns 0, or 1
    for a value not finite or below −1e-6, or 2 for a row that sums to 0 or less (checked
    first, for every row: nothing is written then)."""
    n = p.shape[0]
    for i in range(n):
        a, b, c = p[i, 0], p[i, 1], p[i, 2]
        if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)) or a < -1e-6 or b < -1e-6 or c < -1e-6:
            return 1
    for i in range(n):
        if max(p[i, 0], 0.0) + max(p[i, 1], 0.0) + max(p[i, 2], 0.0) <= 0:
            return 2
    for i in range(n):
        a, b, c = max(p[i, 0], 0.0), max(p[i, 1], 0.0), max(p[i, 2], 0.0)
        f = _Q / (a + b + c)
        x0, x1, x2 = a * f, b * f, c * f
        q0, q1, q2 = np.floor(x0), np.floor(x1), np.floor(x2)
        r0, r1, r2 = x0 - q0, x1 - q1, x2 - q2
        k0, k1, k2 = np.int32(q0), np.int32(q1), np.int32(q2)
        short = _Q - (k0 + k1 + k2)  # 0, 1 or 2 units to hand out (three remainders sum below 3)
        if short == 1:  # to the largest remainder, the first on ties
            if r0 >= r1 and r0 >= r2:
                k0 += 1
            elif r1 >= r2:
                k1 += 1
            else:
                k2 += 1
        elif short >= 2:  # to all but the smallest remainder, the last on ties
            k0 += 1
            k1 += 1
            k2 += 1
            if r2 <= r1 and r2 <= r0:
                k2 -= 1
            elif r1 <= r0:
                k1 -= 1
            else:
                k0 -= 1
        out[i, 0], out[i, 1], out[i, 2] = k0, k1, k2
    return 0


def round_gp(gp: np.ndarray) -> np.ndarray:
    """Genotype probabilities (..., 3) → int thousandths (..., 3) that sum to exactly 1000.

    Each row is normalised, scaled by 1000 and floored; the units still missing go to
    the largest remainders (Hamilton's method), so no value moves by 0.001 or more and
    the printed GP sum to 1 exactly. Ties go to the lower genotype. Compiled row by row
    (:func:`_round_rows`): the same arithmetic vectorised over whole batches took 4 % of the
    10 Mb benchmark's CPU.
    """
    p = np.asarray(gp, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"genotype probabilities need a last axis of 3, got shape {p.shape}")
    rows = np.ascontiguousarray(p.reshape(-1, 3))
    out = np.empty(rows.shape, dtype=np.int32)
    code = _round_rows(rows, out)
    if code == 1:
        raise ValueError("genotype probabilities must be finite and non-negative")
    if code == 2:
        raise ValueError("genotype probabilities sum to 0 for some genotype")
    return out.reshape(p.shape)


def dose_r2(gp: np.ndarray) -> np.ndarray:
    """Beagle's dose R² per site from genotype probabilities (sites, samples, 3).

    ``d = P1 + 2*P2`` (dose), ``e = P1 + 4*P2`` (expected squared true dose);
    ``R2 = [Σd² - (Σd)²/n] / [Σe - (Σd)²/n]``, 0 when the denominator is < 1e-8
    (monomorphic). The ratio is the variance of the estimated doses over the variance of
    the true doses implied by the probabilities, i.e. the squared correlation between
    estimated and true dose when the probabilities are calibrated.
    """
    gp = np.asarray(gp, dtype=np.float64)
    n = gp.shape[1]
    d = gp[..., 1] + 2 * gp[..., 2]
    e = gp[..., 1] + 4 * gp[..., 2]
    sd = d.sum(1)
    num = np.maximum((d * d).sum(1) - sd * sd / n, 0.0)
    den = e.sum(1) - sd * sd / n
    out = np.zeros(gp.shape[0])
    ok = den >= _MIN_R2_DEN
    out[ok] = num[ok] / den[ok]
    return out


@dataclass
class OutputSites:
    """The rows of the output VCF, in the orientation they are printed in.

    ``swapped`` marks rows whose printed REF/ALT are the model's ALT/REF, so model
    probabilities are reversed before printing. Typed calls are in printed orientation.
    """

    chrom: np.ndarray  # object (R,)
    pos: np.ndarray  # int64 (R,)
    id: np.ndarray  # object (R,)
    ref: np.ndarray  # object (R,)
    alt: np.ndarray  # object (R,)
    swapped: np.ndarray  # bool (R,)
    typed_rows: np.ndarray  # int64 (T,), increasing
    typed_calls: np.ndarray  # int8 (T, N, 2), -1 missing
    calls_phased: bool = False
    contig_lengths: dict | None = None

    def __len__(self) -> int:
        return int(self.pos.size)

    def part(self, rows: slice) -> OutputSites:
        """The rows ``rows`` (a step-1 slice) as output sites of their own, e.g. one chromosome."""
        if rows == slice(0, len(self)):
            return self
        lo, hi = np.searchsorted(self.typed_rows, [rows.start, rows.stop])
        return OutputSites(chrom=self.chrom[rows], pos=self.pos[rows], id=self.id[rows], ref=self.ref[rows],
                           alt=self.alt[rows], swapped=self.swapped[rows], typed_rows=self.typed_rows[lo:hi] - rows.start,
                           typed_calls=self.typed_calls[lo:hi], calls_phased=self.calls_phased,
                           contig_lengths=self.contig_lengths)

    @classmethod
    def from_targets(cls, targets, model, *, orientation: str = "input") -> OutputSites:
        """Rows of a :class:`~snpbag.inference.sitematch.TargetGenotypes` for printing.

        ``orientation="input"`` prints typed sites with the user's REF/ALT (a swapped or
        strand-flipped site reads as in the input); ``"model"`` prints every site as the
        model stores it. Untyped sites always use the model's alleles; chromosome names
        follow the input (``chr22`` stays ``chr22``).
        """

        if orientation not in ("input", "model"):
            raise InputError(f"orientation {orientation!r}: choose 'input' or 'model'")
        model = ModelSites.coerce(model)
        idx = targets.site_index
        chrom = np.array([targets.chrom_names.get(chrom_key(str(c)), str(c)) for c in model.chrom[idx]], object)
        ref = model.ref[idx].astype(object)
        alt = model.alt[idx].astype(object)
        ids = np.full(idx.size, ".", dtype=object)
        swapped = np.zeros(idx.size, bool)
        t = targets.typed_rows
        ids[t] = [i if i else "." for i in targets.input_id]
        calls = targets.calls
        if orientation == "input" and t.size:
            ref[t], alt[t] = targets.input_ref, targets.input_alt
            swapped[t] = targets.swapped
            if targets.swapped.any():
                calls = calls.copy()
                s = calls[targets.swapped]
                calls[targets.swapped] = np.where(s >= 0, 1 - s, s)
        return cls(chrom=chrom, pos=model.pos[idx].astype(np.int64), id=ids, ref=ref, alt=alt, swapped=swapped,
                   typed_rows=t.astype(np.int64), typed_calls=calls, calls_phased=bool(targets.phased),
                   contig_lengths=dict(targets.contig_lengths))


@dataclass
class WriteSummary:
    path: Path
    info_path: Path
    n_sites: int
    n_written: int
    n_typed: int
    n_filtered: int
    min_r2: float | None
    loo_concordance: float | None = None  # typed calls equal to their leave-one-out best guess

    def line(self) -> str:
        filt = f"; {self.n_filtered:,} imputed sites with R2 < {self.min_r2} dropped" if self.min_r2 is not None else ""
        return (f"wrote {self.path} ({self.n_written:,} of {self.n_sites:,} sites, {self.n_typed:,} typed{filt}) "
                f"and {self.info_path.name}")


class ImputedVcfWriter:
    """Collect model probabilities batch by batch, then write the VCF site by site.

    Use as a context manager: an exception inside the block discards everything
    (no output appears); a clean exit calls :meth:`close`. Each (site, sample) must be
    given exactly once through :meth:`add`.

    Parameters
    ----------
    path : output ``.vcf.gz`` (a ``.tbi`` and ``<prefix>.info.tsv`` are written beside it).
    sites : the output rows (:class:`OutputSites`).
    samples : sample ids, in column order.
    fmt : FORMAT fields, e.g. ``"GT,DS,GP"``; GT is always written first.
    min_r2 : drop imputed (not typed) sites whose printed R2 is below this.
    replace_typed : print model results at typed sites too (default: keep the input calls).
    command : recorded as ``##snpbag_command`` (default: this process's argv).
    header_lines : extra ``##`` lines (e.g. the model directory).
    tmp_dir : where the probability buffer lives (default: beside the output).
    """

    #: Sites formatted per step (None: about 8 MB of text per step).
    chunk_sites: int | None = None

    def __init__(self, path, sites: OutputSites, samples, *, fmt: str = "GT,DS,GP", min_r2: float | None = None,
                 replace_typed: bool = False, command: str | None = None, header_lines=(), info_path=None,
                 overwrite: bool = False, tmp_dir=None):
        self.path = Path(path)
        if not self.path.name.endswith((".vcf.gz", ".vcf.bgz")):
            raise InputError(f"--output {path}: must end in .vcf.gz (the output is bgzipped and indexed)")
        self.info_path = Path(info_path) if info_path else info_path_for(self.path)
        if not overwrite:
            for p in (self.path, index_path(self.path), self.info_path):
                if p.exists():
                    raise InputError(f"{p}: output already exists; remove it or choose another --output")
        if min_r2 is not None and not 0.0 <= min_r2 <= 1.0:
            raise InputError(f"--min-r2 {min_r2}: must be between 0 and 1")
        self.fields = parse_format(fmt)
        self.sites, self.samples = sites, [str(s) for s in samples]
        self.min_r2, self.replace_typed, self.overwrite = min_r2, replace_typed, overwrite
        self.command = command if command is not None else shlex.join(sys.argv)
        self.header_lines = tuple(header_lines)
        R, N = len(sites), len(self.samples)
        if R == 0 or N == 0:
            raise InputError(f"{self.path}: nothing to write ({R} sites, {N} samples)")
        if sites.typed_calls.shape != (sites.typed_rows.size, N, 2):
            raise ValueError(f"typed_calls shape {sites.typed_calls.shape} does not match {sites.typed_rows.size} "
                             f"typed rows x {N} samples")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.buf-", dir=tmp_dir or self.path.parent))
        # the buffer goes when the writer does, even if neither close() nor abort() is called
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._dir), True)
        try:  # (P1, P2) in thousandths; P0 = 1000 - P1 - P2.
            self._gp = np.memmap(self._dir / "gp.u16", dtype=np.uint16, mode="w+", shape=(R, N, 2))
        except OSError as e:
            self._cleanup()
            raise InputError(f"{self._dir}: cannot create the {4 * R * N / 2**30:.1f} GiB probability buffer "
                             f"({e.strerror}); free disk space or choose another directory") from e
        self._hds: np.memmap | None = None
        self._filled = np.zeros(R, dtype=np.int64)
        self._hds_batches = 0
        # per typed row: n, Σx, Σy, Σx², Σy², Σxy (x: leave-one-out dose, y: call), best guess == call
        self._er2_sums = np.zeros((sites.typed_rows.size, 7))
        self._held_batches = 0
        self._batches = 0
        self._closed = False

    # -- collecting -----------------------------------------------------------------
    def add(self, gp, *, sites=slice(None), samples=slice(None), hds=None, held_out=None) -> None:
        """Store probabilities of a batch, in the model's orientation.

        Parameters
        ----------
        gp : (n_batch_samples, n_batch_sites, 3) P(0/0), P(0/1), P(1/1) of the model's ALT.
        sites : row slice or index array (rows of ``OutputSites``).
        samples : sample slice or index array.
        hds : optional (n_batch_samples, n_batch_sites, 2) per-haplotype ALT probabilities.
        held_out : optional (n_batch_samples, n_batch_sites, 3) leave-one-out probabilities
            (model orientation), read at typed sites only (NaN: none): the info file's ER2.
        """
        rows = np.arange(len(self.sites))[sites]
        cols = np.arange(len(self.samples))[samples]
        gp = np.asarray(gp)
        if gp.shape != (cols.size, rows.size, 3):
            raise ValueError(f"gp has shape {gp.shape}; expected ({cols.size}, {rows.size}, 3)")
        q = round_gp(gp)  # (B, L, 3)
        sw = self.sites.swapped[rows]
        if sw.any():
            q[:, sw] = q[:, sw, ::-1]
        self._put(self._gp, rows, cols, sites, samples, q[..., 1:].transpose(1, 0, 2))
        if hds is not None:
            h = np.array(hds, dtype=np.float64)  # a copy: the caller keeps its array
            if h.shape != (cols.size, rows.size, 2):
                raise ValueError(f"hds has shape {h.shape}; expected ({cols.size}, {rows.size}, 2)")
            if sw.any():
                h[:, sw] = 1.0 - h[:, sw]
            if self._hds is None:
                self._hds = np.memmap(self._dir / "hds.u16", dtype=np.uint16, mode="w+", shape=self._gp.shape)
            hq = np.rint(np.clip(h, 0.0, 1.0) * _Q).astype(np.uint16)
            self._put(self._hds, rows, cols, sites, samples, hq.transpose(1, 0, 2))
            self._hds_batches += 1
        if held_out is not None:
            self._add_held_out(np.asarray(held_out, dtype=np.float64), rows, cols)
            self._held_batches += 1
        self._batches += 1
        np.add.at(self._filled, rows, cols.size)

    def _add_held_out(self, held, rows, cols) -> None:
        """Accumulate, per typed row, the sums for r²(typed call, leave-one-out dose)."""
        if held.shape != (cols.size, rows.size, 3):
            raise ValueError(f"held_out has shape {held.shape}; expected ({cols.size}, {rows.size}, 3)")
        typed = self.sites.typed_rows
        k = np.minimum(np.searchsorted(typed, rows), max(typed.size - 1, 0))
        hit = typed.size > 0 and (typed[k] == rows)
        if not np.any(hit):
            return
        k, local = k[hit], np.flatnonzero(hit)
        x = (held[:, local, 1] + 2 * held[:, local, 2]).T  # (t, n) dose in the model's orientation
        best = np.argmax(np.nan_to_num(held[:, local]), -1).T  # (t, n) most probable genotype
        sw = self.sites.swapped[rows[local]]
        x[sw] = 2.0 - x[sw]
        best[sw] = 2 - best[sw]
        calls = self.sites.typed_calls[k][:, cols]  # (t, n, 2), printed orientation
        ok = (calls >= 0).all(-1) & np.isfinite(x)
        y = np.where(ok, calls.sum(-1), 0).astype(np.float64)
        x = np.where(ok, x, 0.0)
        np.add.at(self._er2_sums, k, np.stack([ok.sum(1), x.sum(1), y.sum(1), (x * x).sum(1), (y * y).sum(1),
                                               (x * y).sum(1), (ok & (best == y)).sum(1)], 1))

    def _er2(self, a: int, b: int) -> np.ndarray:
        """ER2 of rows a:b: NaN at untyped rows, without leave-one-out doses, or where
        the calls or the doses do not vary."""
        out = np.full(b - a, np.nan)
        if not self._held_batches:
            return out
        lo, hi = np.searchsorted(self.sites.typed_rows, [a, b])
        n, sx, sy, sxx, syy, sxy, _ = self._er2_sums[lo:hi].T
        vx, vy = n * sxx - sx * sx, n * syy - sy * sy
        ok = (n >= 2) & (vx > 1e-9 * np.maximum(n * n, 1)) & (vy > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = np.where(ok, (n * sxy - sx * sy) ** 2 / (vx * vy), np.nan)
        out[self.sites.typed_rows[lo:hi] - a] = r2
        return out

    @staticmethod
    def _put(buf, rows, cols, sites, samples, values) -> None:
        if isinstance(sites, slice) and isinstance(samples, slice):
            buf[sites, samples] = values
        else:
            buf[rows[:, None], cols[None, :]] = values

    # -- writing --------------------------------------------------------------------
    def _header(self) -> str:

        today = _dt.date.today().strftime("%Y%m%d")
        lengths = self.sites.contig_lengths or {}
        return header_text(
            self.samples, contigs=[(c, lengths.get(c)) for c in dict.fromkeys(self.sites.chrom.tolist())],
            head=[f"##filedate={today}", f"##source=snpbag {__version__}", f"##snpbag_command={self.command}"],
            tail=[*_INFO_HEADER, *(_FORMAT_HEADER[f] for f in self.fields), *self.header_lines])

    def _chunk(self, a: int, b: int):
        """Format rows a:b. Returns (kept row mask, record bytes, af, r2) for the chunk."""
        s = self.sites
        q = np.asarray(self._gp[a:b], dtype=np.int32)  # (C, N, 2)
        q1, q2 = q[..., 0], q[..., 1]
        q0 = _Q - q1 - q2
        phased = self._hds is not None
        if phased:
            h = np.asarray(self._hds[a:b], dtype=np.int32)
            al0, al1 = (h[..., 0] > _Q // 2).astype(np.int32), (h[..., 1] > _Q // 2).astype(np.int32)
        else:
            cls = np.argmax(np.stack([q0, q1, q2], -1), -1)
            al0, al1 = (cls == 2).astype(np.int32), (cls >= 1).astype(np.int32)
        lo, hi = np.searchsorted(s.typed_rows, [a, b])
        typed = np.zeros(b - a, bool)
        typed[s.typed_rows[lo:hi] - a] = True
        if hi > lo and not self.replace_typed:
            r = s.typed_rows[lo:hi] - a
            c = s.typed_calls[lo:hi].astype(np.int32)  # (k, N, 2)
            called = (c >= 0).all(-1)
            dose = c.sum(-1)
            for arr, val in ((q0, dose == 0), (q1, dose == 1), (q2, dose == 2)):
                sub = arr[r]
                sub[called] = np.where(val, _Q, 0)[called]
                arr[r] = sub
            c0, c1 = c[..., 0], c[..., 1]
            if phased and not s.calls_phased:
                # unphased input het: order its alleles by the model's haplotype dosages
                het = called & (c0 != c1)
                first_alt = h[r][..., 0] > h[r][..., 1]
                c0 = np.where(het, first_alt, c0)
                c1 = np.where(het, ~first_alt, c1)
            elif not phased:
                c0, c1 = np.minimum(c0, c1), np.maximum(c0, c1)
            for arr, val in ((al0, c0), (al1, c1)):
                sub = arr[r]
                sub[called] = val[called]
                arr[r] = sub
            if phased:  # a kept call is certain: its haplotype dosages are its alleles
                for k in (0, 1):
                    sub = h[r, :, k]
                    sub[called] = _Q * (al0 if k == 0 else al1)[r][called]
                    h[r, :, k] = sub
        ds = q1 + 2 * q2  # thousandths, 0..2000
        n = ds.shape[1]
        af = ds.sum(1) / (2.0 * _Q * n)
        r2 = np.round(dose_r2(np.stack([q0, q1, q2], -1) / _Q), 3)
        keep = np.ones(b - a, bool)
        if self.min_r2 is not None:
            keep = typed | (r2 >= self.min_r2)
        rows = np.flatnonzero(keep)
        if rows.size == 0:
            return keep, b"", af, r2, typed
        width = 1 + sum(_WIDTH[f] for f in self.fields) + len(self.fields) - 1
        out = np.empty((rows.size, n, width), dtype=np.uint8)
        out[..., 0] = ord("\t")
        col = 1
        for k, f in enumerate(self.fields):
            if k:
                out[..., col] = ord(":")
                col += 1
            if f == "GT":
                out[..., col] = 48 + al0[rows]
                out[..., col + 1] = ord("|" if phased else "/")
                out[..., col + 2] = 48 + al1[rows]
            elif f == "DS":
                out[..., col:col + 5] = _LUT[ds[rows]]
            elif f == "GP":
                for j, arr in enumerate((q0, q1, q2)):
                    out[..., col + 6 * j:col + 6 * j + 5] = _LUT[arr[rows]]
                out[..., col + 5] = out[..., col + 11] = ord(",")
            elif f == "HDS":
                if self._hds is None:
                    raise InputError("--format HDS: this model gives no haplotype dosages; drop HDS from --format")
                out[..., col:col + 5] = _LUT[h[rows][..., 0]]
                out[..., col + 5] = ord(",")
                out[..., col + 6:col + 11] = _LUT[h[rows][..., 1]]
            col += _WIDTH[f]
        fmt = ":".join(self.fields)
        parts = []
        for k, i in enumerate(rows.tolist()):
            g = a + i
            info = f"AF={af[i]:.5f};R2={r2[i]:.3f};{'TYPED' if typed[i] else 'IMP'}"
            fixed = f"{s.chrom[g]}\t{s.pos[g]}\t{s.id[g]}\t{s.ref[g]}\t{s.alt[g]}\t.\tPASS"
            parts.append(f"{fixed}\t{info}\t{fmt}".encode())
            parts.append(out[k].tobytes())
            parts.append(b"\n")
        return keep, b"".join(parts), af, r2, typed

    def _records(self, info_f, counts: dict):
        info_f.write("#" + "\t".join(INFO_COLUMNS) + "\n")
        R, N = len(self.sites), len(self.samples)
        step = self.chunk_sites or max(1, min(4096, (8 << 20) // max(1, N * 40)))
        s = self.sites
        for a in range(0, R, step):
            b = min(R, a + step)
            keep, text, af, r2, typed = self._chunk(a, b)
            counts["written"] += int(keep.sum())
            counts["filtered"] += int((~keep).sum())
            counts["typed"] += int(typed.sum())
            er2 = [f"{v:.3f}" if np.isfinite(v) else "." for v in self._er2(a, b)]
            info_f.write("".join(
                f"{s.chrom[a + i]}\t{s.pos[a + i]}\t{s.id[a + i]}\t{s.ref[a + i]}\t{s.alt[a + i]}\t{af[i]:.5f}\t"
                f"{min(af[i], 1 - af[i]):.5f}\t{r2[i]:.3f}\t{'TYPED' if typed[i] else 'IMP'}\t{int(keep[i])}\t{er2[i]}\n"
                for i in range(b - a)
            ))
            yield text

    def close(self) -> WriteSummary:
        """Write the VCF, its index and the info file (atomically); free the buffer."""
        if self._closed:
            raise RuntimeError("writer already closed")
        try:
            N = len(self.samples)
            bad = np.flatnonzero(self._filled != N)
            if bad.size:
                raise ValueError(f"{bad.size} output sites did not get exactly {N} samples (first: row {bad[0]}, "
                                 f"{self._filled[bad[0]]} samples); each (site, sample) must be added once")
            if self._hds is not None and self._hds_batches != self._batches:
                raise ValueError("haplotype dosages were given for some batches only")
            if self._held_batches not in (0, self._batches):
                raise ValueError("leave-one-out probabilities were given for some batches only")
            if "HDS" in self.fields and self._hds is None:
                raise InputError("--format HDS: this model gives no haplotype dosages; drop HDS from --format")
            self._gp.flush()
            counts = {"written": 0, "filtered": 0, "typed": 0}
            with atomic_output(self.info_path, overwrite=self.overwrite) as tmp_info, open(tmp_info, "w") as f:
                write_vcf(self.path, self._header(), self._records(f, counts), overwrite=self.overwrite)
        finally:
            self._release()
        n_loo = self._er2_sums[:, 0].sum()
        loo = float(self._er2_sums[:, 6].sum() / n_loo) if self._held_batches and n_loo else None
        summary = WriteSummary(self.path, self.info_path, len(self.sites), counts["written"], counts["typed"],
                               counts["filtered"], self.min_r2, loo)
        log.info(summary.line())
        return summary

    def abort(self) -> None:
        """Discard the buffer; nothing is written."""
        self._release()

    def _release(self) -> None:
        self._closed = True
        self._gp = self._hds = None  # drop memmaps before deleting their files
        self._cleanup()

    def __enter__(self) -> ImputedVcfWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()


def write_imputed_vcf(path, sites: OutputSites, samples, gp, *, hds=None, **options) -> WriteSummary:
    """One-shot writer for probabilities already in memory.

    ``gp`` is (n_samples, n_sites, 3) in the model's orientation (``hds``: (n_samples,
    n_sites, 2)); options as for :class:`ImputedVcfWriter`.
    """
    w = ImputedVcfWriter(path, sites, samples, **options)
    try:
        w.add(gp, hds=hds)
    except BaseException:
        w.abort()
        raise
    return w.close()
