"""snpbag.retrieval.genomes: nearest-panel-genome votes against a brute-force definition."""

from __future__ import annotations

import numpy as np
import pytest

from snpbag.config import AugmentConfig, MaskingConfig
from snpbag.retrieval.genomes import NeighbourPanel
from snpbag.errors import InputError


def _brute(panel, g, sites, span, k, exclude):
    exclude = set(np.atleast_1d(exclude).tolist())
    """The definition, one site at a time: stable order (lower row first) among equal distances."""
    P = panel[:, sites]
    n, L = P.shape
    vis = (g >= 0) & (g <= 2)
    out = np.zeros((L, 3))
    for s in range(L):
        d = []
        for i in range(n):
            if i in exclude:
                d.append(np.inf)
                continue
            acc = 0
            for t in range(max(0, s - span), min(L, s + span + 1)):
                if t != s and vis[t] and P[i, t] >= 0:
                    acc += abs(int(P[i, t]) - int(g[t]))
            d.append(acc)
        near = np.argsort(np.array(d), kind="stable")[:min(k, n - len(exclude & set(range(n))))]
        for i in near:
            if P[i, s] >= 0:
                out[s, P[i, s]] += 1
        if out[s].sum():
            out[s] /= out[s].sum()
    return out


@pytest.mark.parametrize("span,k", [(1, 1), (3, 4), (50, 7)])
def test_votes_equal_brute_force(span, k):
    rng = np.random.default_rng(span * 10 + k)
    panel = rng.integers(0, 3, (23, 40)).astype(np.int8)
    panel[rng.random(panel.shape) < 0.05] = -1
    sites = np.sort(rng.choice(40, 25, replace=False))
    g = rng.integers(0, 3, 25).astype(np.int8)
    g[rng.random(25) < 0.5] = 4  # masked tokens: not visible
    g[3] = -1  # missing
    nb = NeighbourPanel(panel, span=span, k=k)
    for exclude in (-1, 0, 5, [1, 2, 22]):
        np.testing.assert_allclose(nb.votes(g, sites, exclude=exclude), _brute(panel, g, sites, span, k, exclude),
                                   err_msg=f"exclude {exclude}")


def test_batch_of_sequences_equals_one_at_a_time():
    rng = np.random.default_rng(4)
    nb = NeighbourPanel(rng.integers(0, 3, (30, 50)).astype(np.int8), span=6, k=5)
    sites = np.arange(10, 45)
    g = rng.integers(0, 5, (4, sites.size)).astype(np.int8)
    exclude = [0, -1, [3, 4], None]
    got = nb.votes(g, sites, exclude=exclude)
    assert got.shape == (4, sites.size, 3)
    for row, e, v in zip(g, exclude, got):
        np.testing.assert_array_equal(v, nb.votes(row, sites, exclude=e))
    assert nb.votes(g[:0], sites).shape == (0, sites.size, 3)


def test_leave_one_out_and_own_site():
    """A genome never votes for itself when excluded; a site's own genotype is not its evidence."""
    rng = np.random.default_rng(1)
    panel = rng.integers(0, 3, (10, 30)).astype(np.int8)
    g = panel[4].copy()
    nb = NeighbourPanel(panel, span=30, k=1)
    sites = np.arange(30)
    own = nb.votes(g, sites)
    assert (own.argmax(axis=1) == g).all()  # nearest is itself (distance 0)
    out = nb.votes(g, sites, exclude=4)
    assert not np.allclose(out, own)
    np.testing.assert_allclose(out, _brute(panel, g, sites, 30, 1, 4))
    g2 = g.copy()
    g2[7] = (g[7] + 1) % 3
    np.testing.assert_array_equal(nb.votes(g, sites)[7], nb.votes(g2, sites)[7])


def test_save_load_and_errors(tmp_path):
    rng = np.random.default_rng(2)
    nb = NeighbourPanel(rng.integers(0, 3, (5, 8)).astype(np.int8), span=2, k=3, sample_ids=list("abcde"))
    nb.save(tmp_path / "panel.npz")
    back = NeighbourPanel.load(tmp_path / "panel.npz")
    np.testing.assert_array_equal(back.dosage, nb.dosage)
    assert (back.span, back.k, back.row_of("c"), back.row_of("z")) == (2, 3, 2, -1)
    g = np.array([0, 1, 2, 4, 4, 1, 0, 2], dtype=np.int8)
    np.testing.assert_array_equal(back.votes(g, np.arange(8)), nb.votes(g, np.arange(8)))
    everyone = back.votes(g, np.arange(8), exclude=np.arange(5))
    assert not everyone.any()  # nobody left to vote: no evidence
    with pytest.raises(InputError, match="need a"):
        NeighbourPanel(np.zeros((1, 4), dtype=np.int8))
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.npz: not a snpbag neighbour panel"):
        NeighbourPanel.load(tmp_path / "bad.npz")


# --- wiring: dataset, model, train -> export -> impute ------------------------------------------


def test_dataset_items_vote_without_their_own_genome(tmp_path):
    """Every item's votes are the panel's with its own genome (or a synthetic genome's
    sources) excluded; validation genomes outside the panel exclude nobody."""
    from snpbag.data.dataset import TileDataset
    from snpbag.store.genotypes import open_store
    from tiny_data import tiny_store

    store = open_store(tiny_store(tmp_path, n_samples=24))
    rows = np.arange(0, 24, 2)  # the "training" genomes
    panel = NeighbourPanel.from_store(store, rows, span=40, k=1)
    np.testing.assert_array_equal(panel.rows_of_store([0, 1, 2, 22, 23]), [0, -1, 1, 11, -1])
    differs = 0
    for samples in (rows, np.arange(1, 24, 2)):
        ds = TileDataset(store, samples=samples, training=False, seq_len=64, masking=None, retrieval=panel)
        items = list(ds)
        assert items and all(it["retrieval"].shape == (len(it["genotype"]), 3) for it in items)
        for it in items:
            own = panel.rows_of_store([it["sample"]])
            want = panel.votes(it["genotype"], it["site_index"], exclude=own)
            np.testing.assert_array_equal(it["retrieval"], want)
            # k=1, every site visible: without the exclusion a genome mostly copies itself
            differs += not np.array_equal(want, panel.votes(it["genotype"], it["site_index"]))
            assert own[0] >= 0 or np.array_equal(want, panel.votes(it["genotype"], it["site_index"]))
    assert differs > 0
    aug = TileDataset(store, samples=rows, training=True, seq_len=64,
                      masking=MaskingConfig(min_rate=0.5, max_rate=0.5),
                      augment=AugmentConfig(enabled=True, panel_size=4), batch_size=2, retrieval=panel, seed=1)
    it = next(iter(aug))
    assert it["sample"] == -1 and it["retrieval"].shape == (64, 3)


def test_retrieval_model_needs_votes_and_uses_them():
    import torch

    from snpbag.config import preset
    from snpbag.data.batch import collate
    from snpbag.errors import ConfigError
    from snpbag.model.builders import build_model

    cfg = preset("tiny", n_layers=1, d_model=16, n_heads=2, window=8, block_size=8, n_sites=30, retrieval_k=3)
    model = build_model(cfg).eval()
    rng = np.random.default_rng(0)
    item = {"genotype": rng.integers(0, 5, 12), "site_index": np.arange(12), "position": np.arange(12) * 10,
            "target": np.full(12, -100), "tile": 0, "sample": 0, "offset": 0,
            "retrieval": rng.dirichlet(np.ones(3), 12).astype(np.float32)}
    batch = collate([item])
    assert batch.retrieval.dtype == torch.float32 and batch.retrieval.shape == (1, 12, 3)
    with torch.no_grad():
        a = model(batch).logits
        b = model(batch.replace(retrieval=torch.flip(batch.retrieval, dims=[-1]))).logits
        assert not torch.allclose(a, b)
        with pytest.raises(ConfigError, match="reads a retrieval input"):
            model(batch.replace(retrieval=None))
