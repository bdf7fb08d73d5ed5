"""snpbag king: plink2-identical .kin0, vcftools-equal within-family estimates, exact counts.

The data are a small msprime cohort (high recombination rate, so its SNPs behave like a
genome's) plus relatives built in the test from the founders' haplotypes: two full
siblings (children of founders 0 and 1), a child of founders 2 and 3 and a duplicate of
founder 4. Calls are 2% missing; one indel and three chrX SNPs must be skipped.
"""

from __future__ import annotations

import subprocess
import sys

import msprime
import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from snpbag.errors import InputError, SampleError
from snpbag.kinship import degrees
from snpbag.kinship.kin0 import dtoa_g
from snpbag.kinship.king import (
    GenotypeSource,
    king,
    king_part,
    kinship,
    merge_parts,
    pair_counts,
    row_bounds,
)

from conftest import requires_cuda, requires_tool

N_FOUNDERS = 24


def _haplotypes(seed: int):
    """Founder haplotypes from 400 independent 5-kb loci (a genome's worth of independent genealogies, fast)."""
    H, pos, alleles = [], [], []
    reps = msprime.sim_ancestry(samples=N_FOUNDERS, population_size=10_000, sequence_length=5_000,
                                recombination_rate=1e-8, random_seed=seed, num_replicates=400)
    for k, ts in enumerate(reps):
        ts = msprime.sim_mutations(ts, rate=2e-8, random_seed=seed + k + 1)
        ts = ts.delete_sites([s.id for s in ts.sites() if len(s.mutations) != 1 or s.position < 1])
        H.append(ts.genotype_matrix().T.astype(np.int8))  # (2 * founders, v)
        pos += [k * 5_000 + int(s.position) for s in ts.sites()]
        alleles += [(s.ancestral_state, s.mutations[0].derived_state) for s in ts.sites()]
    return np.concatenate(H, axis=1), pos, alleles


def _relatives(H, rng):
    """Founders plus FS_a, FS_b (children of F0 x F1), K (F2 x F3) and DUP (copy of F4): (n, 2, v)."""
    v = H.shape[1]

    def gamete(p):
        cuts = np.sort(rng.integers(0, v, 6))
        src = np.zeros(v, dtype=np.int64)
        for c in cuts:
            src[c:] ^= 1
        return np.where(src == 0, H[2 * p], H[2 * p + 1])

    G = [H[2 * i:2 * i + 2] for i in range(N_FOUNDERS)]
    names = [f"F{i}" for i in range(N_FOUNDERS)]
    for name, (p, q) in (("FS_a", (0, 1)), ("FS_b", (0, 1)), ("K", (2, 3))):
        G.append(np.stack([gamete(p), gamete(q)]))
        names.append(name)
    G.append(H[8:10].copy())
    names.append("DUP")
    return names, np.stack(G)


def _write_vcf(path, names, G, pos, alleles, missing, *, extras=True):
    """Plain VCF; missing calls './.'. ``extras``: an indel and three chrX SNPs to be skipped."""
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=22,length=2000000>", "##contig=<ID=X,length=1000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(names)]
    n = len(names)
    for k, p in enumerate(pos):
        gts = ["./." if missing[i, k] else f"{G[i, 0, k]}|{G[i, 1, k]}" for i in range(n)]
        lines.append(f"22\t{p}\t.\t{alleles[k][0]}\t{alleles[k][1]}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
        if extras and k == 5:
            lines.append(f"22\t{p}\t.\t{alleles[k][0]}\t{alleles[k][0]}TT\t.\tPASS\t.\tGT\t" + "\t".join(["0/1"] * n))
    if extras:
        for k in range(3):
            lines.append(f"X\t{100 + k}\t.\tA\tG\t.\tPASS\t.\tGT\t" + "\t".join(["0/1"] * n))
    path.write_text("\n".join(lines) + "\n")
    subprocess.run(["bgzip", "-f", str(path)], check=True)
    return path.with_name(path.name + ".gz")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("king")
    rng = np.random.default_rng(7)
    H, pos, alleles = _haplotypes(11)
    names, G = _relatives(H, rng)
    missing = rng.random((len(names), len(pos))) < 0.02
    dosage = np.where(missing, -1, G.sum(axis=1))  # (n, v)
    vcf = _write_vcf(d / "cohort.vcf", names, G, pos, alleles, missing)
    clean = _write_vcf(d / "clean.vcf", names, G, pos, alleles, np.zeros_like(missing), extras=False)
    return {"dir": d, "vcf": vcf, "clean": clean, "names": names, "dosage": dosage}


@pytest.fixture(scope="module")
def default_run(cohort):
    out = cohort["dir"] / "snp"
    king(cohort["vcf"], out=out, block_size=2048)
    return out.with_suffix(".kin0")


def _table(path):
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def _naive(dosage, i, j):
    """Slow reference: the five KING counts of one pair, straight from the definition."""
    a, b = dosage[i], dosage[j]
    both = (a >= 0) & (b >= 0)
    a, b = a[both], b[both]
    hethet = int(np.sum((a == 1) & (b == 1)))
    ibs0 = int(np.sum(((a == 0) & (b == 2)) | ((a == 2) & (b == 0))))
    het_i = int(np.sum((a == 1) & (b != 1)))
    het_j = int(np.sum((b == 1) & (a != 1)))
    return int(both.sum()), hethet, ibs0, het_i, het_j


# --- plink2 / vcftools agreement ---------------------------------------------------------


def _plink2(vcf, out, *args):
    subprocess.run(["plink2", "--vcf", str(vcf), "--snps-only", "just-acgt", "--max-alleles", "2", "--threads", "1",
                    "--make-king-table", *args, "--out", str(out)], check=True, capture_output=True)
    return out.with_suffix(".kin0")


@requires_tool("plink2", "bgzip")
def test_kin0_identical_to_plink2(cohort, default_run):
    ref = _plink2(cohort["vcf"], cohort["dir"] / "plink")
    ours = ["\t".join(line.split("\t")[:-1]) for line in default_run.read_text().splitlines()]
    assert ours == ref.read_text().splitlines()  # header, pair order and every string
    header, rows = _table(default_run)
    assert header[-1] == "INFTYPE" and len(rows) == 28 * 27 // 2


@requires_tool("plink2", "bgzip")
def test_counts_identical_to_plink2(cohort):
    out = cohort["dir"] / "counts"
    king(cohort["vcf"], out=out, counts=True, block_size=5)
    ref = _plink2(cohort["vcf"], cohort["dir"] / "plinkc", "counts", "cols=+ibs1")
    ours = ["\t".join(line.split("\t")[:-1]) for line in out.with_suffix(".kin0").read_text().splitlines()]
    assert ours == ref.read_text().splitlines()


@requires_tool("plink2", "bgzip")
def test_min_kinship_matches_king_table_filter(cohort):
    out = cohort["dir"] / "filt"
    r = king(cohort["vcf"], out=out, min_kinship=0.0442)
    ref = _plink2(cohort["vcf"], cohort["dir"] / "plinkf", "--king-table-filter", "0.0442")
    ours = ["\t".join(line.split("\t")[:-1]) for line in out.with_suffix(".kin0").read_text().splitlines()]
    assert ours == ref.read_text().splitlines()
    assert r.n_written == len(ours) - 1 < r.n_pairs


@requires_tool("plink2")
def test_nan_inf_half_calls_and_haploid_like_plink2(tmp_path):
    """No shared hets → -inf or nan; half-calls missing (plink2 --vcf-half-call missing); haploid = homozygous."""
    rows = [("1", 10, ["0/0", "1/1", "0/0", "0/1", "./.", "0/.", "1"]),
            ("1", 20, ["0/0", "1/1", "0/0", "0/1", "./.", "./1", "0"]),
            ("1", 30, ["0|1", "1|1", "0/0", "1/0", ".|.", "1/1", "1"])]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1>", '##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join("abcdefg")]
    lines += [f"{c}\t{p}\t.\tA\tG\t.\t.\t.\tGT\t" + "\t".join(g) for c, p, g in rows]
    vcf = tmp_path / "edge.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    king(vcf, out=tmp_path / "s", counts=True)
    subprocess.run(["plink2", "--vcf", str(vcf), "--vcf-half-call", "missing", "--make-king-table", "counts",
                    "cols=+ibs1", "--out", str(tmp_path / "p")], check=True, capture_output=True)
    ours = ["\t".join(line.split("\t")[:-1]) for line in (tmp_path / "s.kin0").read_text().splitlines()]
    assert ours == (tmp_path / "p.kin0").read_text().splitlines()
    kin = {line.split("\t")[-1] for line in ours[1:]}
    assert {"nan", "-inf"} <= kin
    assert all(line.endswith("\tNA") for line in (tmp_path / "s.kin0").read_text().splitlines() if "\tnan\t" in line)


@requires_tool("vcftools", "bgzip")
def test_within_estimator_matches_vcftools_relatedness2(cohort):
    """Without missing calls KING within-family == vcftools' RELATEDNESS_PHI; with them the counts still agree."""
    for vcf, tag in ((cohort["clean"], "clean"), (cohort["vcf"], "missing")):
        out = cohort["dir"] / f"within_{tag}"
        king(vcf, out=out, estimator="within", counts=True)
        subprocess.run(["vcftools", "--gzvcf", str(vcf), "--chr", "22", "--remove-indels", "--relatedness2",
                        "--out", str(out)], check=True, capture_output=True)
        ref = {}
        for line in out.with_suffix(".relatedness2").read_text().splitlines()[1:]:
            a, b, aa, aaaa, n1, n2, phi = line.split("\t")
            ref[(a, b)] = (int(aa), int(aaaa), int(n1) + int(n2), float(phi))
        _, rows = _table(out.with_suffix(".kin0"))
        for r in rows:
            hh, ib, h1, h2 = map(int, r[3:7])
            vh, vi, vden, vphi = ref[(r[1], r[0])]
            assert (hh, ib) == (vh, vi)
            if tag == "clean":  # vcftools counts each sample's hets over its own called sites
                assert 2 * hh + h1 + h2 == vden
                assert float(r[7]) == pytest.approx(vphi, rel=1e-5, abs=1e-6)


# --- exact counts --------------------------------------------------------------------------


def test_counts_equal_naive_reference(cohort):
    src = GenotypeSource(cohort["vcf"])
    pc = pair_counts(src, rows=(0, src.n_samples), block_size=4)
    d = cohort["dosage"]
    for i in range(d.shape[0]):
        for j in range(i):
            ns, hh, ib, hi, hj = _naive(d, i, j)
            got = (pc.nsnp[i, j], pc.hethet[i, j], pc.ibs0[i, j], pc.het_row[i, j], pc.het_col[i, j])
            assert got == (ns, hh, ib, hi, hj), (i, j)


class _Dosages:
    """An in-memory GenotypeSource: (v, n) int8 dosages, −1 missing."""

    def __init__(self, d):
        self.d, self.n_samples, self.path = d, d.shape[1], "memory"

    def dosages(self, n, *, chunk, stats):
        for a in range(0, self.d.shape[0], chunk):
            stats.variants += min(chunk, self.d.shape[0] - a)
            yield self.d[a:a + chunk, :n].copy()


def test_carrier_pairs_gemms_and_popcounts_give_the_same_counts():
    """Rare variants go to carrier-pair lists, the rest to GEMMs or popcounts: every split gives the naive counts.

    37 samples (not a multiple of 8), ALT frequencies from singletons to near-fixed (ALT the
    major allele: flipped coding), homozygous carriers, variants with and without missing
    calls, and a pass that starts at row 11.
    """
    rng = np.random.default_rng(3)
    n, v = 37, 700
    p = np.concatenate([rng.uniform(0.003, 0.05, 300), rng.uniform(0.05, 0.95, 300), rng.uniform(0.95, 0.999, 100)])
    d = (rng.random((v, n, 2)) < p[:, None, None]).sum(axis=2).astype(np.int8)
    d[600:, :] = np.where(rng.random((100, n)) < 0.5, 2, d[600:])
    d[:3] = 0  # monomorphic
    d[3, 5] = 1  # a singleton
    d[450:500][rng.random((50, n)) < 0.05] = -1  # missing calls in common variants
    d[10:20][rng.random((10, n)) < 0.05] = -1  # and in rare ones
    src = _Dosages(d)
    want = np.array([[_naive(d.T, i, j) for j in range(n)] for i in range(n)])  # (n, n, 5)
    for rows in ((0, n), (11, n), (11, 20)):
        for limit in (-1, 0, 40, 10**6):
            for chunk, kernel, bs in ((64, "gemm", 8), (512, "gemm", 8), (64, "popcount", 5), (512, "popcount", 8)):
                pc = pair_counts(src, rows=rows, block_size=bs, chunk=chunk, sparse_limit=limit, kernel=kernel)
                got = np.stack([pc.nsnp, pc.hethet, pc.ibs0, pc.het_row, pc.het_col], axis=-1)
                for i in range(*rows):
                    np.testing.assert_array_equal(got[i - rows[0], :i], want[i, :i],
                                                  err_msg=f"{rows} {limit} {kernel} {chunk} {i}")


def test_carrier_pairs_read_where_the_chunk_lies():
    """Carrier-pair lists equal a per-pair reference, read in place (a column slice of a wider,
    8-byte-aligned buffer: later columns ignored) or through a padded copy (any other layout)."""
    from snpbag.kinship.carriers import carrier_pairs

    rng = np.random.default_rng(5)
    buf = np.zeros((60, 48), dtype=np.int8)
    buf[:] = (rng.random((60, 48, 2)) < rng.choice([0.02, 0.1], (60, 1, 1))).sum(axis=2)
    buf[::3] = 2 - buf[::3]  # ALT the major allele: flipped coding
    g = buf[:, :40]
    rows = np.array([0, 3, 4, 9, 10, 21, 30, 31, 59])
    for arr, ncol in ((g, 40), (g, 37), (g, 8), (np.ascontiguousarray(g[:, :37]), 37), (g[::2], 33)):
        for r0 in (0, 5):
            sel = rows[rows < arr.shape[0]]
            x = arr[sel, :ncol].astype(np.int64)
            flip = x.sum(axis=1) > ncol
            x[flip] = 2 - x[flip]
            cp = carrier_pairs(arr, sel, flip, r0=r0, ncol=ncol)
            y = np.zeros((ncol - r0, ncol), dtype=np.int64)
            w = np.zeros((ncol - r0, ncol), dtype=np.int64)
            for v in x:  # both heterozygous: +1 to y; a homozygous carrier: X_i·X_j (2 or 4) to w
                for i in range(r0, ncol):
                    for j in range(i):
                        if v[i] * v[j] == 1:
                            y[i - r0, j] += 1
                        elif v[i] * v[j] > 1:
                            w[i - r0, j] += v[i] * v[j]
            cells = (ncol - r0) * ncol
            np.testing.assert_array_equal(np.bincount(cp.flat, minlength=cells), y.reshape(-1))
            np.testing.assert_array_equal(np.bincount(cp.hom_flat, weights=cp.hom_w, minlength=cells), w.reshape(-1))
            np.testing.assert_array_equal(cp.het, (x == 1).sum(axis=0))
            np.testing.assert_array_equal(cp.x, x.sum(axis=0))
            assert cp.n == sel.size


def test_counts_finished_in_row_bands_equal_one_thread():
    """With threads > 1 a pass's counts are finished in parallel row bands: the same as one thread's."""
    from snpbag.kinship.counts import _bands

    assert _bands(10, 4) == [(0, 10)] and _bands(100, 1) == [(0, 100)]
    assert _bands(100, 2)[0][0] == 0 and _bands(100, 2)[-1][1] == 100 and len(_bands(100, 2)) == 8
    rng = np.random.default_rng(9)
    n, v = 150, 700
    p = rng.choice([0.005, 0.05, 0.5], v)[:, None]  # rare (carrier pairs, some homozygous) and common variants
    d = (rng.random((v, n)) < p).astype(np.int8) + (rng.random((v, n)) < p).astype(np.int8)
    d[rng.random((v, n)) < 0.02] = -1
    for kernel in ("popcount", "gemm"):
        for rows in ((0, n), (40, n)):
            a, b = (pair_counts(_Dosages(d), rows=rows, chunk=128, kernel=kernel, threads=t) for t in (1, 3))
            for f in ("nsnp", "hethet", "ibs0", "het_row", "het_col"):
                for i in range(*rows):
                    np.testing.assert_array_equal(getattr(a, f)[i - rows[0], :i], getattr(b, f)[i - rows[0], :i])


def test_popcount_kernel_equals_gemm_counts():
    """Bit-plane popcounts against the int8 GEMM path on every tile edge case.

    Sample counts around the 2 x 2 unrolling and the tile sides, variant counts around a
    64-bit word and a 512-variant vector, complete and missing calls, several threads.
    """
    from snpbag.kinship import popcount

    rng = np.random.default_rng(5)
    for n, v, bs, threads in ((2, 1, 1, 1), (9, 63, 2, 1), (16, 64, 3, 2), (33, 513, 7, 2), (70, 1100, 256, 3)):
        d = rng.integers(0, 3, (v, n)).astype(np.int8)
        for miss in (0.0, 0.1):
            dm = np.where(rng.random((v, n)) < miss, np.int8(-1), d)
            for rows in ((0, n), (n // 3, n)):
                a, b = (pair_counts(_Dosages(dm), rows=rows, block_size=bs, sparse_limit=-1, kernel=k, threads=threads)
                        for k in ("popcount", "gemm"))
                for i in range(*rows):
                    for f in ("nsnp", "hethet", "ibs0", "het_row", "het_col"):
                        np.testing.assert_array_equal(getattr(a, f)[i - rows[0], :i], getattr(b, f)[i - rows[0], :i],
                                                      err_msg=f"{n} {v} {bs} {miss} {rows} {f} {i}")
    assert popcount.n_words(1) == popcount.n_words(512) == 8 and popcount.n_words(513) == 16


def test_cpu_run_does_not_import_torch(cohort, default_run, tmp_path):
    """The popcount kernel needs numba only: torch (a second or more to import) stays out of a CPU run."""
    code = ("import sys; from snpbag.kinship.king import king; "
            f"king({str(cohort['vcf'])!r}, out={str(tmp_path / 'nt')!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "nt.kin0").read_bytes() == default_run.read_bytes()


def test_kinship_formulas():
    hh, ib, a, b = np.array([50]), np.array([3]), np.array([20]), np.array([30])
    assert kinship(hh, ib, a, b)[0] == 0.5 - (4 * 3 + 20 + 30) / (4 * (50 + 20))
    assert kinship(hh, ib, a, b, estimator="within")[0] == (50 - 6) / (100 + 50)
    assert kinship(hh, ib, a, b)[0] == kinship(hh, ib, b, a)[0]
    with pytest.raises(InputError, match="--estimator 'x'"):
        kinship(hh, ib, a, b, estimator="x")


def test_block_size_and_passes_do_not_change_output(cohort, default_run, tmp_path):
    want = default_run.read_bytes()
    for bs, mem in ((1, 1 << 30), (3, 1 << 30), (16, 5000), (2048, 2000)):
        out = tmp_path / f"b{bs}_{mem}"
        king_part(cohort["vcf"], out=out, block_size=bs, max_memory=mem)
        assert out.with_suffix(".kin0").read_bytes() == want, (bs, mem)


@requires_tool("plink2", "bgzip")
def test_threads_and_carrier_pairs_keep_plink2_bytes(cohort, default_run, tmp_path, monkeypatch):
    """Two threads (read-ahead, parallel formatting) and all-carrier-pair counting: the same bytes."""
    import snpbag.kinship.counts as k
    import snpbag.kinship.kin0 as k0

    clean = tmp_path / "clean"
    king(cohort["clean"], out=clean, threads=1)
    ref = _plink2(cohort["clean"], tmp_path / "plink_clean")
    assert ["\t".join(x.split("\t")[:-1]) for x in clean.with_suffix(".kin0").read_text().splitlines()] == \
        ref.read_text().splitlines()
    monkeypatch.setattr(k0, "WRITE_PAIRS", 50)  # several formatting blocks
    sparse0, pop0 = k.SPARSE_PAIR_CELLS, k.POPCOUNT_PAIR_CELLS
    for tag, vcf, want in (("m", cohort["vcf"], default_run), ("c", cohort["clean"], clean.with_suffix(".kin0"))):
        for threads, cells, kernel in ((2, 1, "popcount"), (1, 1, "gemm"), (2, 1, "gemm"), (1, 1e-9, "popcount"),
                                       (2, 1e-9, "gemm")):
            monkeypatch.setattr(k, "SPARSE_PAIR_CELLS", sparse0 * cells)  # 1e-9: every complete variant
            monkeypatch.setattr(k, "POPCOUNT_PAIR_CELLS", pop0 * cells)  # as carrier pairs
            out = tmp_path / f"{tag}{threads}_{cells}_{kernel}"
            king(vcf, out=out, threads=threads, block_size=7, kernel=kernel)
            assert out.with_suffix(".kin0").read_bytes() == want.read_bytes(), (tag, threads, cells, kernel)


def test_float_matmul_fallback_is_exact(cohort, default_run, tmp_path, monkeypatch):
    """Without torch._int_mm the fp32 path must give the same bytes."""
    import snpbag.kinship.gemm as gemm

    monkeypatch.setattr(gemm, "int8_gemm_ok", lambda device: False)
    king(cohort["vcf"], out=tmp_path / "f", block_size=9, kernel="gemm")
    assert (tmp_path / "f.kin0").read_bytes() == default_run.read_bytes()


def test_cuda_operand_layout_is_exact_on_cpu():
    """The padding/layout used for CUDA's int8 GEMM, checked with the CPU kernel."""
    import torch

    from snpbag.kinship.gemm import cublaslt_operands

    g = torch.Generator().manual_seed(0)
    for v, m, n in ((13, 5, 7), (8, 24, 16), (1, 1, 1), (100, 33, 9)):
        a = torch.randint(-1, 2, (v, m), generator=g, dtype=torch.int8)
        b = torch.randint(-1, 2, (v, n), generator=g, dtype=torch.int8)
        a_op, b_op, mm, nn = cublaslt_operands(a, b)
        assert a_op.shape[0] > 16 and a_op.shape[1] % 8 == 0 and b_op.shape[1] % 8 == 0 and a_op.is_contiguous()
        got = torch._int_mm(a_op, b_op)[:mm, :nn]
        assert torch.equal(got.long(), a.long().T @ b.long())


def test_parts_concatenate_to_the_whole(cohort, default_run, tmp_path):
    out = tmp_path / "p"
    for k in range(1, 5):
        king_part(cohort["vcf"], out=out, part=k, n_parts=4, block_size=8)
    assert (tmp_path / "p.kin0.2").read_text().count("#IID1") == 0
    assert merge_parts(out, 4).read_bytes() == default_run.read_bytes()
    n = 28
    bounds = [row_bounds(n, k, 4) for k in range(1, 5)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(InputError, match="part 5 of 4"):
        row_bounds(n, 5, 4)


def test_store_input_equals_vcf_input(cohort, default_run, tmp_path):
    from snpbag.store.convert import convert

    store = tmp_path / "c.zarr"
    convert(cohort["vcf"], store, min_maf=0.0, threads=1)
    king(store, out=tmp_path / "st", block_size=7)
    assert (tmp_path / "st.kin0").read_bytes() == default_run.read_bytes()


def test_shard_reader_equals_zarr(cohort, tmp_path):
    """The direct shard reader gives zarr's genotypes; a flipped byte is a StoreFormatError."""
    from snpbag.store.convert import convert
    from snpbag.io.dosage import alt_dosage
    from snpbag.store.genotypes import ShardScan, open_store
    from snpbag.errors import StoreFormatError

    store = tmp_path / "c.zarr"
    convert(cohort["vcf"], store, min_maf=0.0, threads=1)
    st = open_store(store)
    reader = ShardScan.open(str(store), st.n_variants, st.n_samples)
    assert reader is not None  # snpbag convert's layout
    for block in (7, 512, 1 << 20):
        want = [(sl, alt_dosage(gt)) for sl, gt in st.iter_variant_blocks(slice(0, st.n_samples), block=block)]
        got = list(ShardScan.open(str(store), st.n_variants, st.n_samples).blocks(block, st.n_samples))
        assert [g[0] for g in got] == [w[0] for w in want]
        for (_, g), (_, w) in zip(got, want):
            np.testing.assert_array_equal(g, w)
        for (sl, g), (wsl, w) in zip(st.iter_dosage_blocks(block=block), want, strict=True):  # the store's method
            assert sl == wsl
            np.testing.assert_array_equal(g, w)
    assert ShardScan.open(str(tmp_path / "absent.zarr"), 1, 1) is None
    shard = next(f for f in (store / "call_genotype" / "c").rglob("0") if f.is_file())
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(StoreFormatError, match="checksum"):
        list(ShardScan.open(str(store), st.n_variants, st.n_samples).blocks(512, st.n_samples))
    with pytest.raises(StoreFormatError, match="checksum"):  # raised in the reading thread, re-raised here
        king(store, out=tmp_path / "bad", threads=2)
    assert not list(tmp_path.glob("bad*")) and not list(tmp_path.glob(".bad*"))


def test_store_jobs_equal_streamed_dosages(cohort, tmp_path, monkeypatch):
    """Chunks decoded as pool jobs (threads > 1) are the streamed chunks; counts equal one thread's."""
    from snpbag.store.convert import convert
    from snpbag.kinship.counts import pair_counts
    from snpbag.kinship.source import GenotypeSource, ScanStats

    store = tmp_path / "c.zarr"
    from snpbag.store import schema

    monkeypatch.setattr(schema, "VARIANT_CHUNK", 256)  # several outer chunks (and non-autosomes in one)
    convert(cohort["vcf"], store, min_maf=0.0, threads=1)
    src = GenotypeSource(store)
    n = src.n_samples
    assert src._store.variant_chunk == 256 and src._store.n_variants > 1000
    assert src._store.dosage_block_jobs(n, block=7) is None  # 7 does not divide the chunk: streamed
    for chunk, n_take in ((64, n), (256, n), (7, n), (64, n - 5)):
        want_stats, got_stats = ScanStats(), ScanStats()
        want = list(src.dosages(n_take, chunk=chunk, stats=want_stats))
        jobs = list(src.dosage_jobs(n_take, chunk=chunk, stats=got_stats))
        got = [d for job in reversed(jobs) for d in reversed(job())][::-1]  # any order, any thread
        assert len(got) == len(want) and (got_stats.variants, got_stats.non_autosomal) == (
            want_stats.variants, want_stats.non_autosomal)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    s1, s2 = ScanStats(), ScanStats()
    one = pair_counts(src, rows=(3, n), chunk=64, threads=1, stats=s1)
    two = pair_counts(src, rows=(3, n), chunk=64, threads=2, stats=s2)
    assert (s1.variants, s1.non_autosomal, s1.ibs0_expected_sum) == (s2.variants, s2.non_autosomal,
                                                                      s2.ibs0_expected_sum)
    for f in ("hethet", "ibs0", "het_row", "het_col", "nsnp"):
        a, b = getattr(one, f), getattr(two, f)
        for i in range(3, n):
            np.testing.assert_array_equal(a[i - 3, :i], b[i - 3, :i])


# --- relationships --------------------------------------------------------------------------


def test_symmetry_self_and_relatives(cohort, tmp_path):
    r = king(cohort["vcf"], out=tmp_path / "m", matrix=True, block_size=8, po_ibs0="auto")
    assert r.matrix == tmp_path / "m.king.zarr" and r.n_variants > 1000 and r.n_non_autosomal == 3
    g = zarr.open_group(str(r.matrix), mode="r")
    K = g["kinship"][:]
    names = [str(s) for s in g["sample_id"][:]]
    assert names == cohort["names"]
    assert tuple(g["kinship"].metadata.dimension_names) == ("samples", "samples_2")
    np.testing.assert_array_equal(K, K.T)
    np.testing.assert_array_equal(np.diag(K), 0.5)
    ix = {s: i for i, s in enumerate(names)}
    assert K[ix["DUP"], ix["F4"]] == 0.5  # a duplicate is kinship 0.5 despite its own missing calls
    for child, parents in (("FS_a", ("F0", "F1")), ("FS_b", ("F0", "F1")), ("K", ("F2", "F3"))):
        for p in parents:
            assert K[ix[child], ix[p]] == pytest.approx(0.25, abs=0.04)
    assert K[ix["FS_a"], ix["FS_b"]] == pytest.approx(0.25, abs=0.07)
    founders = [ix[f"F{i}"] for i in range(5, N_FOUNDERS)]
    assert abs(np.median(K[np.ix_(founders, founders)][np.tril_indices(len(founders), -1)])) < 0.03
    _, rows = _table(tmp_path / "m.kin0")
    by_pair = {(a, b): row for a, b, *row in rows}
    assert by_pair[("DUP", "F4")][-1] == "Dup/MZ"
    assert by_pair[("K", "F2")][-1] == "PO" and by_pair[("K", "F2")][2] == "0"  # parent-child: no IBS0
    assert by_pair[("FS_b", "FS_a")][-1] == "FS"
    d = cohort["dosage"]  # the PO/FS cut: a tenth of mean(2p²q²) over all samples' calls
    p = np.where(d > 0, d, 0).sum(axis=0) / (2.0 * (d >= 0).sum(axis=0))
    assert r.po_ibs0 == pytest.approx(0.1 * np.mean(2 * p**2 * (1 - p) ** 2), rel=1e-12)
    for (a, b), row in by_pair.items():  # the matrix holds the printed kinship
        if row[-2] not in ("nan", "-inf"):
            assert K[ix[a], ix[b]] == pytest.approx(float(row[-2]), abs=1e-6)


def test_po_ibs0_cut(cohort, default_run, tmp_path):
    """INFTYPE's PO/FS cut: KING's 0.008 by default, a given value, or 'auto' (same counts)."""
    from snpbag.cli import main

    header, rows = _table(default_run)
    first = [r for r in rows if r[-1] in ("PO", "FS")]
    assert first and all((float(r[4]) < degrees.PO_IBS0) == (r[-1] == "PO") for r in first)
    fs = {(r[0], r[1]): float(r[4]) for r in first}[("FS_b", "FS_a")]  # the siblings' IBS0
    r = king(cohort["vcf"], out=tmp_path / "hi", po_ibs0=fs * 1.01)
    assert r.po_ibs0 == fs * 1.01
    _, hi = _table(tmp_path / "hi.kin0")
    assert {(x[0], x[1]): x[-1] for x in hi}[("FS_b", "FS_a")] == "PO"  # siblings below the cut
    cut = lambda rows: [x[:-1] for x in rows]  # noqa: E731  only INFTYPE may differ
    assert cut(hi) == cut(rows)
    auto = king(cohort["vcf"], out=tmp_path / "auto", po_ibs0="auto")
    assert 0 < auto.po_ibs0 < fs and auto.po_ibs0 != degrees.PO_IBS0
    res = CliRunner().invoke(main, ["king", str(cohort["vcf"]), "--out", str(tmp_path / "cli"), "--po-ibs0", "auto"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli.kin0").read_bytes() == (tmp_path / "auto.kin0").read_bytes()
    for bad in (-0.1, 1.5, float("nan"), "sometimes"):
        with pytest.raises(InputError, match="--po-ibs0"):
            king(cohort["vcf"], out=tmp_path / "e", po_ibs0=bad)


def test_degree_rules():
    cut = degrees.KING_CUTOFFS
    k = np.array([0.5, cut[0], 0.25, 0.25, cut[1], 0.1, cut[2], 0.05, cut[3], 0.0, -1.0, np.nan, -np.inf])
    ibs0 = np.array([0, 0, 0.001, 0.02, 0, 0, 0, 0, 0, 0, 0, 0, 0.0])
    assert degrees.labels(degrees.classify(k, ibs0, po_ibs0=0.008)).tolist() == [
        "Dup/MZ", "PO", "PO", "FS", "2nd", "2nd", "3rd", "3rd", "UN", "UN", "UN", "NA", "UN"]
    assert degrees.degree(k).tolist() == [0, 1, 1, 1, 2, 2, 3, 3, -1, -1, -1, -2, -1]
    with pytest.raises(ValueError, match="four decreasing"):
        degrees.classify(k, ibs0, po_ibs0=0.008, cutoffs=(0.1, 0.2, 0.05, 0.01))
    assert degrees.po_threshold(0.012) == pytest.approx(0.0012)


# --- formatting -----------------------------------------------------------------------------


def test_dtoa_g_spells_numbers_like_plink2():
    cases = [(0.5, "0.5"), (1.0, "1"), (0.0, "0"), (-0.0, "0"), (0.0114379, "0.0114379"), (-2.14103, "-2.14103"),
             (1.5e-05, "1.5e-05"), (123456789.0, "1.23457e+08"), (float("nan"), "nan"), (float("-inf"), "-inf"),
             (0.1234565, "0.123456"), (0.1234575, "0.123458"), (2.5e-300, "2.5e-300"), (1 / 3, "0.333333")]
    for x, s in cases:  # a list: -0.0 and 0.0 are one dict key
        assert dtoa_g(x) == s, x


# --- errors and CLI -------------------------------------------------------------------------


def test_errors(cohort, tmp_path, default_run):
    vcf = cohort["vcf"]
    with pytest.raises(InputError, match="--estimator 'kin'"):
        king(vcf, out=tmp_path / "e", estimator="kin")
    with pytest.raises(InputError, match="--block-size 0"):
        king(vcf, out=tmp_path / "e", block_size=0)
    with pytest.raises(InputError, match="--threads 0"):
        king(vcf, out=tmp_path / "e", threads=0)
    with pytest.raises(InputError, match="--min-kinship nan"):
        king(vcf, out=tmp_path / "e", min_kinship=float("nan"))
    with pytest.raises(InputError, match="already exists"):
        king(vcf, out=default_run.with_suffix(""))
    with pytest.raises(InputError, match="--kernel 'fast'"):
        king(vcf, out=tmp_path / "e", kernel="fast")
    with pytest.raises(InputError, match="--kernel popcount runs on the CPU only"):
        king(vcf, out=tmp_path / "e", kernel="popcount", device="cuda")
    with pytest.raises(InputError, match="--matrix needs the whole run"):
        king_part(vcf, out=tmp_path / "e", part=1, n_parts=2, matrix=True)
    with pytest.raises(InputError, match="no such file"):
        king(tmp_path / "absent.vcf.gz", out=tmp_path / "e")
    hdr = "##fileformat=VCFv4.2\n##contig=<ID=X>\n##FORMAT=<ID=GT,Number=1,Type=String,Description=\"GT\">\n"
    x_only = tmp_path / "x.vcf"
    x_only.write_text(hdr + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\n"
                      "X\t5\t.\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\n")
    with pytest.raises(InputError, match="no autosomal biallelic SNPs"):
        king(x_only, out=tmp_path / "e")
    one = tmp_path / "one.vcf"
    one.write_text(hdr + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\n1\t5\t.\tA\tG\t.\t.\t.\tGT\t0/1\n")
    with pytest.raises(InputError, match="at least 2 samples"):
        king(one, out=tmp_path / "e")
    dup = tmp_path / "dup.vcf"
    dup.write_text(hdr + "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\ta\n")
    with pytest.raises((SampleError, InputError), match="dup"):
        king(dup, out=tmp_path / "e")
    assert not list(tmp_path.glob("e.*")) and not list(tmp_path.glob(".e.*"))  # nothing half-written


def test_cli(cohort, default_run, tmp_path):
    from snpbag.cli import main

    res = CliRunner().invoke(main, ["king", str(cohort["vcf"]), "--out", str(tmp_path / "cli")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli.kin0").read_bytes() == default_run.read_bytes()
    res = CliRunner().invoke(main, ["king", str(cohort["vcf"]), "--out", str(tmp_path / "cli"), "--block-size", "0"])
    assert res.exit_code == 2 and "snpbag: error: --block-size 0" in res.output


def test_cli_parallel_parts_and_the_slurm_array_script(cohort, default_run, tmp_path):
    """`--parallel K N` writes part K; the parts concatenate (cat) into the single-run file.
    slurm/king.sbatch, run as array tasks 1..3 (SLURM's variables set by hand), does the same."""
    from pathlib import Path

    from snpbag.cli import main

    for k in (1, 2, 3):
        res = CliRunner().invoke(main, ["king", str(cohort["vcf"]), "--out", str(tmp_path / "cli"),
                                        "--parallel", str(k), "3"])
        assert res.exit_code == 0, res.output
    assert not (tmp_path / "cli.kin0").exists()
    parts = b"".join((tmp_path / f"cli.kin0.{k}").read_bytes() for k in (1, 2, 3))
    assert parts == default_run.read_bytes()
    res = CliRunner().invoke(main, ["king", str(cohort["vcf"]), "--out", str(tmp_path / "bad"), "--parallel", "4", "3"])
    assert res.exit_code == 2 and "part 4 of 3 (--parallel K N): need 1 <= K <= N" in res.output

    script = Path(__file__).resolve().parents[1] / "slurm" / "king.sbatch"
    snpbag = Path(sys.executable).with_name("snpbag")
    env = {"PATH": "/usr/bin:/bin", "SNPBAG": str(snpbag), "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "3",
           "SLURM_CPUS_PER_TASK": "1"}
    for k in (1, 2, 3):
        r = subprocess.run(["bash", str(script), str(cohort["vcf"]), str(tmp_path / "sl")],
                           env={**env, "SLURM_ARRAY_TASK_ID": str(k)}, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert b"".join((tmp_path / f"sl.kin0.{k}").read_bytes() for k in (1, 2, 3)) == default_run.read_bytes()
    r = subprocess.run(["bash", str(script), str(cohort["vcf"]), str(tmp_path / "s0")],
                       env={**env, "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_ID": "0"}, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "the array must start at 1" in r.stderr
    r = subprocess.run(["bash", str(script), str(cohort["vcf"]), str(tmp_path / "s0")], env={"PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True)
    assert r.returncode != 0 and "run as a job array" in r.stderr


@requires_cuda
def test_cuda_equals_cpu(cohort, default_run, tmp_path):
    king(cohort["vcf"], out=tmp_path / "gpu", device="cuda", block_size=8)
    assert (tmp_path / "gpu.kin0").read_bytes() == default_run.read_bytes()


def test_cuda_absent_is_an_input_error(cohort, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(InputError, match="--device cuda"):
        king(cohort["vcf"], out=tmp_path / "g", device="cuda")


def test_po_probability_crosses_at_kings_relative_cut():
    """P(PO | degree 1) from IBS0 counts: two Poisson rates (full siblings n·u/4, parent–offspring n·u/40) whose
    crossing sits next to `--po-ibs0 auto`'s cut 0.1·u, so the two agree on every count away from it."""
    from snpbag.kinship import degrees

    u, n = 0.04, 90_000
    cut = degrees.po_threshold(u) * n  # 360 opposite homozygotes
    k = np.arange(0, 1200)
    p = degrees.po_probability(k, np.full(len(k), n), u)
    crossing = k[np.argmin(np.abs(p - 0.5))]
    assert abs(crossing - 0.0977 * u * n) <= 1 and abs(crossing - cut) < 0.03 * cut
    assert p[0] > 1 - 1e-12 and p[int(n * u / 4)] < 1e-12 and (np.diff(p) <= 0).all()
    assert ((p >= 0.5) == (k < cut))[np.abs(k - cut) > 10].all()
    assert np.isnan(degrees.po_probability(np.array([3]), np.array([0]), u)).all()
