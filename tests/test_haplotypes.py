"""snpbag.retrieval.haplotypes: the pair-copying HMM against a dense brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.retrieval.haplotypes import HaplotypePanel
from snpbag.errors import InputError


def _brute(haps, cm, g, ne, eps, allowed, *, silent=None):
    """Forward-backward over all ordered pairs of allowed haplotypes with the dense K²×K²
    transition matrix; hidden sites interpolate the flanking visible posteriors in cM.
    ``silent``: a visible site whose genotype emits nothing (its leave-one-out posterior)."""
    H = haps[:, allowed]  # (L, K) alleles of the allowed haplotypes
    L, K = H.shape
    vis = np.flatnonzero((g >= 0) & (g <= 2))
    out = np.zeros((L, 3))
    if vis.size == 0:
        p = H.mean(1)
        return np.stack([(1 - p) ** 2, 2 * p * (1 - p), p ** 2], 1)
    dose = (H[:, :, None] + H[:, None, :]).reshape(L, K * K)  # pair (i, j) -> i*K + j
    emit = np.where(dose[vis] == g[vis, None], 1 - eps, eps / 2)
    if silent is not None:
        emit[np.searchsorted(vis, silent)] = 1.0
    m = vis.size
    trans = []
    for t in range(1, m):
        rho = 1 - np.exp(-0.04 * ne * (cm[vis[t]] - cm[vis[t - 1]]) / K)
        A = (1 - rho) * np.eye(K) + rho / K
        trans.append(np.kron(A, A))
    alpha = np.zeros((m, K * K))
    alpha[0] = emit[0] / emit[0].sum()
    for t in range(1, m):
        a = (alpha[t - 1] @ trans[t - 1]) * emit[t]
        alpha[t] = a / a.sum()
    beta = np.ones((m, K * K))
    for t in range(m - 2, -1, -1):
        b = trans[t] @ (emit[t + 1] * beta[t + 1])
        beta[t] = b / b.sum()
    post = alpha * beta
    post /= post.sum(1, keepdims=True)

    def gp(t, s):
        return np.array([post[t][dose[s] == d].sum() for d in range(3)])

    for s in range(L):
        right = np.searchsorted(vis, s)
        if right < m and vis[right] == s:
            out[s] = gp(right, s)
            continue
        left = right - 1
        if left < 0:
            out[s] = gp(right, s)
        elif right >= m:
            out[s] = gp(left, s)
        else:
            span = cm[vis[right]] - cm[vis[left]]
            w = (cm[s] - cm[vis[left]]) / span if span > 0 else 0.5
            out[s] = (1 - w) * gp(left, s) + w * gp(right, s)
    return out


def _panel(rng, n=4, L=30):
    h = rng.integers(0, 2, (n, L, 2)).astype(np.int8)
    cm = np.cumsum(rng.random(L) * 0.05)
    return h, cm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_block_equals_the_dense_definition(seed):
    rng = np.random.default_rng(seed)
    h, cm = _panel(rng)
    g = h[0].sum(1).astype(np.int8)
    g[rng.random(g.size) < 0.6] = 4  # hidden (mask token)
    g[2] = -1  # missing
    g[0] = 4  # a hidden site before the first visible one
    g[-1] = 4  # and after the last
    ne, eps = 3e3, 0.01
    panel = HaplotypePanel(h, cm, states=8, block=100, margin=1, ne=ne, eps=eps)
    by_site = h.transpose(1, 0, 2).reshape(h.shape[1], -1)
    for exclude in (None, 0, [1, 3]):
        allowed = np.ones(8, dtype=bool)
        for e in np.atleast_1d(exclude if exclude is not None else []):
            allowed[2 * e: 2 * e + 2] = False
        got = panel.votes(g, np.arange(g.size), exclude=exclude)
        np.testing.assert_allclose(got, _brute(by_site, cm, g, ne, eps, allowed), atol=1e-5, err_msg=str(exclude))
        np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 3])
def test_leave_one_out_equals_the_dense_definition_without_that_emission(seed):
    rng = np.random.default_rng(seed)
    h, cm = _panel(rng, L=24)
    g = h[0].sum(1).astype(np.int8)
    g[rng.random(g.size) < 0.5] = 4
    g[5] = 2 - g[5] if g[5] <= 2 else 1  # a visible site that disagrees with its copies
    ne, eps = 3e3, 0.01
    panel = HaplotypePanel(h, cm, states=8, block=100, margin=1, ne=ne, eps=eps)
    by_site = h.transpose(1, 0, 2).reshape(h.shape[1], -1)
    probs, held = panel.votes(g, np.arange(g.size), loo=True)
    np.testing.assert_array_equal(probs, panel.votes(g, np.arange(g.size)))  # the same pass
    allowed = np.ones(8, dtype=bool)
    visible = np.flatnonzero(g <= 2)
    assert np.isnan(held[g > 2]).all() and not np.isnan(held[visible]).any()
    for s in visible:
        want = _brute(by_site, cm, g, ne, eps, allowed, silent=s)[s]
        np.testing.assert_allclose(held[s], want, atol=1e-5, err_msg=str(s))
    # a typed site's own call moves its posterior, not its leave-one-out
    assert abs(held[5] - probs[5]).max() > 0.1
    batch, batch_held = panel.votes(np.stack([g, g]), np.arange(g.size), loo=True)
    np.testing.assert_array_equal(batch_held[1], held)


def test_blocks_with_whole_sequence_margins_equal_one_block():
    """Each block sees every visible site as context, so the stitching of blocks changes nothing."""
    rng = np.random.default_rng(5)
    h, cm = _panel(rng, n=3, L=60)
    g = h[1].sum(1).astype(np.int8)
    g[rng.random(g.size) < 0.5] = 4
    one = HaplotypePanel(h, cm, states=6, block=1000, margin=1).votes(g, np.arange(60))
    many = HaplotypePanel(h, cm, states=6, block=3, margin=1000).votes(g, np.arange(60))
    np.testing.assert_allclose(many, one, atol=1e-6)


def test_copies_a_mosaic_of_two_panel_haplotypes():
    """A target made of haplotype 0 of genome 2 and haplotype 1 of genome 5 is imputed from
    a fifth of its sites; its own genome excluded, the panel still holds both copies."""
    rng = np.random.default_rng(9)
    n, L = 40, 400
    h = rng.integers(0, 2, (n, L, 2)).astype(np.int8)
    truth = h[2, :, 0] + h[5, :, 1]
    target = truth.astype(np.int8).copy()
    hidden = rng.random(L) > 0.2
    target[hidden] = 4
    panel = HaplotypePanel(h, np.arange(L) * 0.001, states=16, block=32, margin=16)
    gp = panel.votes(target, np.arange(L), exclude=7)
    assert (gp.argmax(1)[hidden] == truth[hidden]).mean() > 0.99
    # excluding the genomes it copies from takes the answer away
    worse = panel.votes(target, np.arange(L), exclude=[2, 5])
    assert (worse.argmax(1)[hidden] == truth[hidden]).mean() < 0.8


def test_batch_and_threads_equal_one_at_a_time():
    rng = np.random.default_rng(3)
    h, cm = _panel(rng, n=12, L=80)
    panel = HaplotypePanel(h, cm, states=5, block=7, margin=4)
    sites = np.arange(5, 70)
    g = rng.integers(0, 5, (5, sites.size)).astype(np.int8)
    exclude = [0, -1, [3, 4], None, 11]
    want = np.stack([panel.votes(row, sites, exclude=e) for row, e in zip(g, exclude)])
    for threads in (1, 3):
        np.testing.assert_array_equal(panel.votes(g, sites, exclude=exclude, threads=threads), want)


def test_phased_batches_over_runs_and_scattered_sites_agree():
    """A batch over a run of sites reads a view of the panel and keeps its allele carriers
    for the next batch over the same run; scattered sites read a copy and take their own.
    Both give what a panel of exactly those sites gives, batch after batch."""
    rng = np.random.default_rng(21)
    h, cm = _panel(rng, n=8, L=50)
    g = h[rng.integers(0, 8, 3), :, 0] + h[rng.integers(0, 8, 3), :, 1]
    g[:, rng.random(50) < 0.6] = 4
    panel = HaplotypePanel(h, cm, states=1600, ne=3e3, eps=0.01, selection="phased")
    for sites in (np.arange(10, 40), np.sort(rng.choice(50, 25, replace=False)), np.arange(10, 40), np.arange(5, 45)):
        alone = HaplotypePanel(h[:, sites], cm[sites], states=1600, ne=3e3, eps=0.01, selection="phased")
        want = alone.votes(g[:, sites], np.arange(sites.size), loo=True, hds=True)
        got = panel.votes(g[:, sites], sites, loo=True, hds=True)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("block,margin", [(8, 4), (12, 8), (6, 9), (16, 16)])
def test_strided_conflict_table_equals_the_full_one(block, margin, monkeypatch):
    """Block selection reads the running conflict counts every gcd(block, margin) visible
    sites; the full table (stride 1, one row per visible site) gives the same answer."""
    from snpbag.retrieval import haplotypes

    rng = np.random.default_rng(block * 31 + margin)
    h, cm = _panel(rng, n=40, L=300)
    panel = HaplotypePanel(h, cm, states=6, block=block, margin=margin)
    g = rng.integers(0, 5, (3, 300)).astype(np.int8)  # 3, 4: hidden
    assert haplotypes.conflict_stride(block, margin) > 1
    fast = panel.votes(g, np.arange(300), threads=1)
    monkeypatch.setattr(haplotypes, "conflict_stride", lambda block, margin: 1)
    np.testing.assert_array_equal(panel.votes(g, np.arange(300), threads=1), fast)


def test_no_visible_site_gives_the_panel_genotype_frequencies():
    rng = np.random.default_rng(1)
    h, cm = _panel(rng, n=6, L=10)
    got = HaplotypePanel(h, cm).votes(np.full(10, 4, dtype=np.int8), np.arange(10), exclude=0)
    p = h[1:].reshape(-1, 10, 2).transpose(1, 0, 2).reshape(10, -1).mean(1)
    np.testing.assert_allclose(got, np.stack([(1 - p) ** 2, 2 * p * (1 - p), p * p], 1), atol=1e-6)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    h, cm = _panel(rng, n=7, L=13)
    panel = HaplotypePanel(h, cm, states=9, block=5, margin=2, ne=1234.0, eps=0.02, sample_ids=list("abcdefg"))
    path = tmp_path / "p.npz"
    panel.save(path)
    back = HaplotypePanel.load(path)
    np.testing.assert_array_equal(back.haplotypes, h)
    np.testing.assert_array_equal(back.cm, cm)
    assert (back.states, back.block, back.margin, back.ne, back.eps) == (9, 5, 2, 1234.0, 0.02)
    assert back.row_of("c") == 2 and back.row_of("zz") == -1
    g = rng.integers(0, 5, 13).astype(np.int8)
    np.testing.assert_array_equal(back.votes(g, np.arange(13)), panel.votes(g, np.arange(13)))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a panel")
    with pytest.raises(InputError, match="bad.npz: not a snpbag haplotype panel"):
        HaplotypePanel.load(bad)


@pytest.mark.parametrize("change,match", [
    (lambda h, cm: (np.where(h == 1, -1, h), cm), "no missing calls"),
    (lambda h, cm: (h[:, :, :1], cm), r"\(genomes >= 2, sites, 2\)"),
    (lambda h, cm: (h, cm[:-1]), "genetic positions"),
])
def test_bad_panels_are_refused(change, match):
    rng = np.random.default_rng(0)
    h, cm = change(*_panel(rng))
    with pytest.raises(InputError, match=match):
        HaplotypePanel(h, cm)
    with pytest.raises(InputError, match="margin"):
        HaplotypePanel(*_panel(rng), margin=0)


def test_from_store_refuses_an_unphased_panel(tmp_path):
    """A store of phased calls builds; the same calls unphased stop with the fix named."""
    from snpbag.store.convert import convert
    from snpbag.store.genotypes import open_store

    rng = np.random.default_rng(0)
    n, L = 6, 40
    h = rng.integers(0, 2, (n, L, 2))
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=22,length=100000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t" + "\t".join(f"s{i}" for i in range(n))]
    for sep, name in (("|", "phased"), ("/", "unphased")):
        rows = [f"22\t{100 * (j + 1)}\t.\tA\tG\t.\tPASS\t.\tGT\t" + "\t".join(f"{a}{sep}{b}" for a, b in h[:, j])
                for j in range(L)]
        (tmp_path / f"{name}.vcf").write_text("\n".join(lines + rows) + "\n")
        convert(str(tmp_path / f"{name}.vcf"), str(tmp_path / f"{name}.zarr"), min_maf=0.0, tile_len=64, threads=1)
    st = open_store(tmp_path / "phased.zarr")
    panel = HaplotypePanel.from_store(st, np.arange(n))
    np.testing.assert_array_equal(panel.haplotypes, st.read_sites(np.arange(st.vocab.n_sites)))
    with pytest.raises(InputError, match=r"unphased.zarr: the haplotype panel is not phased \(.* heterozygous calls "
                                         r"unphased\); phase the reference panel first"):
        HaplotypePanel.from_store(open_store(tmp_path / "unphased.zarr"), np.arange(n))
