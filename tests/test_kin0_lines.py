"""The compiled .kin0 writer (snpbag.kinship.lines) against a per-pair Python writer on dtoa_g: the same bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest

from snpbag.kinship import degrees, kin0, lines
from snpbag.kinship.counts import PairCounts
from snpbag.kinship.estimators import kinship
from snpbag.kinship.kin0 import dtoa_g


def _values(rng) -> np.ndarray:
    x = np.concatenate([rng.uniform(-1, 1, 20000), rng.uniform(-1e7, 1e7, 2000) * rng.random(2000) ** 8,
                        10 ** rng.uniform(-300, 300, 2000), 10 ** rng.uniform(-9, 9, 2000),
                        [0, -0.0, np.nan, np.inf, -np.inf, 0.99999949999999, 9.9999949999999e-5, 999999.49999999,
                         99999.949999999, 0.5, 1.0, 1e-300, 5e-324, 1.7976931348623157e308, -2.5e-300]])
    return np.concatenate([x, -x, np.round(x, 6), np.round(x, 7) + 5e-7, np.round(x, 3)])


def test_put_g_spells_every_number_like_dtoa_g():
    buf = np.zeros(32, dtype=np.uint8)
    for v in _values(np.random.default_rng(1)):
        end = lines.put_g(buf, 0, float(v))
        assert bytes(buf[:end]).decode() == dtoa_g(v), v


def _counts(rng, r0: int, r1: int, *, nsnp: int | None, edge: bool) -> PairCounts:
    shape = (r1 - r0, r1)
    n = np.full(shape, nsnp, dtype=np.int32) if nsnp else rng.integers(0, 3000, shape).astype(np.int32)
    hh = (rng.random(shape) * 0.3 * n).astype(np.int32)
    a = (rng.random(shape) * 0.3 * n).astype(np.int32)
    b = (rng.random(shape) * 0.3 * n).astype(np.int32)
    ib = (rng.random(shape) * 0.1 * n).astype(np.int32)
    if edge:  # nan (0/0), -inf, large negative kinships; related pairs of every degree
        hh.flat[::7] = 0
        a.flat[::7] = 0
        b.flat[::11] = 0
        ib.flat[::13] = 0
        hh.flat[::17] = n.flat[::17] // 2
        ib.flat[::19] = n.flat[::19] // 3  # counts stay <= NSNP, as real counts do
        hh.flat[::23] = 0
        a.flat[::23] = 1
        b.flat[::29] = 1
    return PairCounts(rows=(r0, r1), hethet=hh, ibs0=ib, het_row=a, het_col=b, nsnp=n)


def _write(pc, ids, threads: int, **kw) -> tuple[bytes, tuple[int, int]]:
    fh = io.BytesIO()
    res = kin0.write_pairs(fh, pc, ids, threads=threads, **kw)
    return fh.getvalue(), res


def _reference(pc, ids, *, estimator, counts, min_kinship, po_ibs0) -> tuple[bytes, tuple[int, int]]:
    """The lines one pair at a time, as plink2 prints them: the oracle of the compiled writer."""
    r0, r1 = pc.rows
    out, seen, written = [], 0, 0
    for i in range(r0, r1):
        for j in range(i):
            seen += 1
            r = i - r0
            hh, ib, ns = pc.hethet[r, j], pc.ibs0[r, j], pc.nsnp[r, j]
            h1, h2 = pc.het_col[r, j], pc.het_row[r, j]  # plink2's HET1_HOM2: IID2 het, IID1 hom
            kin = float(kinship(np.array([hh]), np.array([ib]), np.array([h2]), np.array([h1]),
                                estimator=estimator)[0])
            if min_kinship is not None and kin < min_kinship:  # plink2 keeps nan
                continue
            written += 1
            with np.errstate(divide="ignore", invalid="ignore"):
                recip = np.float64(1.0) / np.float64(ns)
                p_hh, p_ib = float(recip * np.float64(hh)), float(recip * np.float64(ib))
            cols = [ids[i], ids[j], str(int(ns))]
            cols += [str(int(x)) for x in (hh, ib, h1, h2)] if counts else [dtoa_g(p_hh), dtoa_g(p_ib)]
            label = degrees.classify(np.array([kin]), np.array([p_ib]), po_ibs0=po_ibs0)[0]
            out.append("\t".join(cols + [dtoa_g(kin), degrees.LABELS[label]]) + "\n")
    return "".join(out).encode(), (seen, written)


@pytest.mark.parametrize("estimator", ["between", "within"])
@pytest.mark.parametrize("counts", [False, True])
@pytest.mark.parametrize("min_kinship", [None, 0.0442, -1.0])
@pytest.mark.parametrize("nsnp", [5000, 300000, None])
def test_compiled_lines_equal_reference_lines(monkeypatch, estimator, counts, min_kinship, nsnp):
    rng = np.random.default_rng(hash((estimator, counts, min_kinship, nsnp)) % 2**32)
    monkeypatch.setattr(kin0, "WRITE_PAIRS", 300)  # several blocks (and threads)
    ids = [f"S{i}" for i in range(60)]
    ids[7] = "a_much_longer_sample_identifier_than_16_bytes"
    for r0, r1, edge, names in ((0, 60, True, ids), (13, 41, False, ids), (20, 60, True, [f"s{i}" for i in range(60)]),
                                (0, 2, True, ids[:2])):
        pc = _counts(rng, r0, r1, nsnp=nsnp, edge=edge)
        kw = dict(estimator=estimator, counts=counts, min_kinship=min_kinship, po_ibs0=0.008)
        want, res = _reference(pc, names, **kw)
        assert res[1] > 0 or min_kinship is not None
        for threads in (1, 3):
            got, res2 = _write(pc, names, threads, **kw)
            assert res2 == res
            assert got == want, (r0, r1, threads)


def test_proportion_table_beyond_its_size(monkeypatch):
    """Counts past the proportion table (and a pass whose first row pair has another NSNP) are formatted directly."""
    monkeypatch.setattr(lines, "LUT_SIZE", 10)
    rng = np.random.default_rng(3)
    pc = _counts(rng, 0, 40, nsnp=5000, edge=False)
    pc.nsnp[39, 0] = 4999
    kw = dict(estimator="between", counts=False, min_kinship=None, po_ibs0=0.02)
    ids = [f"i{k}" for k in range(40)]
    assert _write(pc, ids, 1, **kw) == _reference(pc, ids, **kw)
