"""TileDataset, its loaders and sharding, the DataModule, and haplotype-mosaic augmentation.

Stores are made by ``snpbag.store.convert.convert`` from tiny VCFs whose genotypes the test
keeps, so items are compared with the alleles written, not with the store's own reader.
"""

import dataclasses
import functools
import gzip
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from snpbag.config import AugmentConfig, MaskingConfig
from snpbag.data.augment import crossover_sites, synthetic_genomes
from snpbag.data.batch import Batch, collate
from snpbag.store.convert import convert
from snpbag.data.datamodule import GenotypeDataModule, collate_compact, make_loader, n_batches, split_samples, widen
from snpbag.data.dataset import TileDataset
from snpbag.io.genmap import genetic_positions, read_genetic_map
from snpbag.data.masking import genotype_tokens
from snpbag.store.genotypes import open_store
from snpbag.data.tokens import IGNORE_INDEX, MASK, MISSING
from snpbag.errors import ConfigError, SampleError

torch.set_num_threads(1)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
N_SAMPLES = 40  # 3 sample chunks of 16
CHROMS = (("chr21", 30), ("chr22", 50))  # tile_len 16 → tiles of 16,14 | 16,16,16,2 sites


def write_vcf(path: Path, *, n_samples=N_SAMPLES, chroms=CHROMS, seed=0, missing=0.03) -> dict:
    """A phased VCF of random biallelic SNPs; returns the alleles written, per chromosome
    (sites, samples, 2) with -1 for missing."""
    rng = np.random.default_rng(seed)
    head = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={c},length=10000000>" for c, _ in chroms]
    head += ['##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
             + "\t".join(f"S{i:03d}" for i in range(n_samples))]
    truth, lines = {}, []
    for c, n in chroms:
        pos = np.sort(rng.choice(np.arange(10_000, 9_000_000), n, replace=False))
        h = (rng.random((n, n_samples, 2)) < rng.uniform(0.1, 0.9, (n, 1, 1))).astype(np.int8)
        h[rng.random((n, n_samples)) < missing] = -1
        truth[c] = h
        for i, p in enumerate(pos):
            ref, alt = rng.choice(list("ACGT"), 2, replace=False)
            gts = "\t".join(".|." if a < 0 else f"{a}|{b}" for a, b in h[i])
            lines.append(f"{c}\t{p}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t{gts}")
    with gzip.open(path, "wt") as f:
        f.write("\n".join(head + lines) + "\n")
    return truth


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    truth = write_vcf(d / "c.vcf.gz")
    convert(d / "c.vcf.gz", d / "c.zarr", min_maf=0.0, tile_len=16, threads=1)
    return d / "c.zarr", truth


@functools.lru_cache(maxsize=None)
def _vocab(path):
    return open_store(path).vocab


def _alleles(cohort, tile: int) -> np.ndarray:
    """(samples, L, 2) alleles written to the VCF for a tile."""
    path, truth = cohort
    voc = _vocab(path)
    name = voc.tile_chrom_name(tile)
    first = int(np.flatnonzero(voc.site_chrom == voc.site_chrom[voc.tile_start[tile]])[0])
    sl = slice(int(voc.tile_start[tile]) - first, int(voc.tile_stop[tile]) - first)
    return truth[name][sl].transpose(1, 0, 2)


def _keys(items):
    return [(int(it["sample"]), int(it["tile"]), int(it["offset"])) for it in items]


def _batch_keys(batches):
    return [tuple(zip(b.sample.tolist(), b.tile.tolist(), b.offset.tolist())) for b in batches]


# --- items ---------------------------------------------------------------------------------------


def test_items_equal_the_vcf(cohort):
    path, _ = cohort
    ds = TileDataset(path, training=False, masking=None, return_haplotypes=True)
    voc = ds.store.vocab
    items = list(ds)
    assert len(items) == len(ds) == N_SAMPLES * 6
    for it in items:
        c, s = it["tile"], it["sample"]
        ref = _alleles(cohort, c)[s]
        assert np.array_equal(it["haplotypes"], ref)
        assert np.array_equal(it["truth"], genotype_tokens(ref))
        assert np.array_equal(it["genotype"], it["truth"]) and np.all(it["target"] == IGNORE_INDEX)
        sl = voc.tile_sites(c)
        assert np.array_equal(it["site_index"], np.arange(sl.start, sl.stop))
        assert np.array_equal(it["position"], voc.position[sl])
        assert it["offset"] == 0
    assert any((it["truth"] == MISSING).any() for it in items)
    # block reads: any order, runs of nearby rows read as slices
    rows = np.array([35, 3, 20, 4, 39, 0])
    assert np.array_equal(ds._read(2, rows, 1, 9), _alleles(cohort, 2)[rows, 1:9])


def test_store_url(cohort):
    path, _ = cohort
    ds = TileDataset(Path(path).resolve().as_uri(), samples=[5], training=False, masking=None)
    assert ds.store.path.startswith("file://")
    assert [int(it["sample"]) for it in ds] == [5] * 6


def test_evaluation_tiles_every_site_once(cohort):
    path, _ = cohort
    ds = TileDataset(path, samples=[3, 17, 35], seq_len=5, training=False, masking=MaskingConfig())
    items = list(ds)
    voc = ds.store.vocab
    lengths = [voc.tile_length(c) for c in range(voc.n_tiles)]
    expect = sorted((s, c, o) for s in (3, 17, 35) for c, n in enumerate(lengths) for o in range(0, n, 5))
    assert sorted(_keys(items)) == expect
    assert _keys(items) == _keys(list(ds))  # store order, stable
    for it in items:
        n = lengths[it["tile"]]
        assert len(it["genotype"]) == min(5, n - it["offset"])
        truth = genotype_tokens(_alleles(cohort, it["tile"])[it["sample"], it["offset"]:it["offset"] + 5])
        assert np.array_equal(it["truth"], truth)
    # validation masks do not change with the epoch
    ds.set_epoch(3)
    assert all(np.array_equal(a["genotype"], b["genotype"]) for a, b in zip(items, ds))


def test_training_crops_and_masks(cohort):
    path, _ = cohort
    ds = TileDataset(path, seq_len=8, masking=MaskingConfig(min_rate=0.5, max_rate=0.75), seed=3, batch_size=4)
    items = list(ds)
    assert sorted((s, c) for s, c, _ in _keys(items)) == sorted(
        (s, c) for s in range(N_SAMPLES) for c in range(6))
    for it in items:
        n = ds.store.vocab.tile_length(it["tile"])
        L = len(it["genotype"])
        assert L == min(8, n) and 0 <= it["offset"] <= n - L
        truth = genotype_tokens(_alleles(cohort, it["tile"])[it["sample"], it["offset"]:it["offset"] + L])
        assert np.array_equal(it["truth"], truth)
        missing = truth == MISSING
        assert np.all(it["target"][missing] == IGNORE_INDEX) and np.all(it["genotype"][missing] == MISSING)
        hidden = it["genotype"] == MASK
        assert np.array_equal(it["target"][hidden], truth[hidden])
        assert np.all(it["target"][~hidden] == IGNORE_INDEX)
    b = next(iter(make_loader(ds)))
    assert isinstance(b, Batch) and b.genotype.shape == (4, 8) and b.truth is not None and b.haplotypes is None


def test_array_masking_through_the_dataset(cohort, tmp_path):
    path, _ = cohort
    voc = open_store(path).vocab
    on = np.zeros(voc.n_sites, dtype=bool)
    on[::3] = True
    rows = [f"{voc.chrom_names[voc.site_chrom[i]]}\t{voc.position[i]}\t{voc.ref[i]}\t{voc.alt[i]}" for i in
            np.flatnonzero(on)]
    (tmp_path / "array.tsv").write_text("chrom\tpos\tref\talt\n" + "\n".join(rows) + "\n")
    masking = MaskingConfig(random=0, array=1, array_sites=str(tmp_path / "array.tsv"))
    ds = TileDataset(path, training=False, masking=masking)
    for it in ds:
        off = ~on[it["site_index"]] & (it["truth"] != MISSING)
        assert np.array_equal(it["genotype"] == MASK, off)


def test_compact_collate_widens_to_the_batch_contract(cohort):
    path, _ = cohort
    ds = TileDataset(path, seq_len=7, masking=MaskingConfig(), return_haplotypes=True, seed=5)
    items = list(ds)[:9]
    items[3] = {**items[3], **{k: items[3][k][:4] for k in ("genotype", "truth", "target", "site_index", "position",
                                                             "haplotypes")}}  # a shorter, padded row
    votes = np.random.default_rng(0).dirichlet(np.ones(3), (9, 7)).astype(np.float32)
    prior = np.where(votes[..., 0] < 0.3, np.nan, votes[..., 1])  # NaN off hets, as the phasing head's
    items = [{**it, "retrieval": votes[i, :len(it["genotype"])], "phase_prior": prior[i, :len(it["genotype"])]}
             for i, it in enumerate(items)]
    ref, got = collate(items), widen(collate_compact(items))
    for f in dataclasses.fields(Batch):
        a, b = getattr(ref, f.name), getattr(got, f.name)
        want = {"valid": torch.bool, "retrieval": torch.float32, "phase_prior": torch.float32}.get(f.name, torch.long)
        assert a.dtype == b.dtype == want, f.name
        assert torch.equal(a.nan_to_num(-7.0), b.nan_to_num(-7.0)), f.name
    assert got.phase_prior[3, 4:].isnan().all()  # padding


# --- sharding: 2 ranks x 2 workers ----------------------------------------------------------------


def _rank_batches(path, rank, *, epoch=0, uneven="pad", num_workers=2, **kw):
    ds = TileDataset(path, samples=np.arange(39), tiles=[0, 1, 2, 3, 4], seq_len=8, masking=MaskingConfig(), seed=11,
                     batch_size=8, rank=rank, world_size=2, uneven=uneven, block_samples=20, buffer_size=12, **kw)
    ds.set_epoch(epoch)
    loader = make_loader(ds, num_workers=num_workers)
    batches = list(loader)
    assert len(batches) == len(loader) == n_batches(ds)
    return ds, batches


@pytest.mark.parametrize("uneven", ["pad", "drop"])
def test_two_ranks_two_workers_cover_every_item(cohort, uneven):
    path, _ = cohort
    n_items = 39 * 5  # odd: the ranks need padding or dropping
    out = [_rank_batches(path, r, uneven=uneven) for r in (0, 1)]
    counts = [len(b) for _, b in out]
    sizes = [sum(len(x.sample) for x in b) for _, b in out]
    assert counts[0] == counts[1] and sizes[0] == sizes[1] == len(out[0][0])
    seen = Counter((s, c) for _, b in out for x in b for s, c in zip(x.sample.tolist(), x.tile.tolist()))
    everything = {(s, c) for s in range(39) for c in range(5)}
    if uneven == "pad":
        assert sizes[0] == 98 and set(seen) == everything
        assert sorted(seen.values()) == [1] * (n_items - 1) + [2]  # one repeat
        # the repeat is the first item of the epoch's order
        first = out[0][0].items_of_epoch(0)[0][:2]
        assert seen[first] == 2
    else:
        assert sizes[0] == 97 and set(seen) <= everything and len(seen) == n_items - 1
        assert max(seen.values()) == 1


def test_sharding_is_deterministic_and_varies_by_epoch(cohort):
    path, _ = cohort
    _, a = _rank_batches(path, 1)
    _, b = _rank_batches(path, 1)
    assert _batch_keys(a) == _batch_keys(b)
    assert all(torch.equal(x.genotype, y.genotype) and torch.equal(x.target, y.target) for x, y in zip(a, b))
    _, c = _rank_batches(path, 1, epoch=1)
    assert _batch_keys(a) != _batch_keys(c)
    # the same items per epoch over both ranks, in another order, with other crops and masks
    _, c0 = _rank_batches(path, 0, epoch=1)
    assert {k[:2] for bb in _batch_keys(c) + _batch_keys(c0) for k in bb} == {
        (s, c) for s in range(39) for c in range(5)}


def test_worker_count_changes_order_not_content(cohort):
    path, _ = cohort
    _, two = _rank_batches(path, 0, num_workers=2)
    _, zero = _rank_batches(path, 0, num_workers=0)

    def content(batches):
        return sorted((int(x.sample[i]), int(x.tile[i]), int(x.offset[i]), tuple(x.genotype[i].tolist()))
                      for x in batches for i in range(len(x.sample)))

    assert content(two) == content(zero)


def test_persistent_workers_follow_set_epoch(cohort):
    """Lightning calls ``loader.sampler.set_epoch``; it must reach persistent workers."""
    path, _ = cohort
    ds, _ = _rank_batches(path, 0, num_workers=0)
    loader = make_loader(ds, num_workers=1, persistent_workers=True)
    ds.set_epoch(0)
    e0 = _batch_keys(list(loader))
    loader.sampler.set_epoch(1)
    e1 = _batch_keys(list(loader))
    _, ref1 = _rank_batches(path, 0, epoch=1, num_workers=0)
    assert e1 == _batch_keys(ref1) and e0 != e1


def test_spawned_worker_and_pickling(cohort):
    path, _ = cohort
    ds = TileDataset(path, training=False, masking=MaskingConfig(), batch_size=16, samples=[0, 1, 2, 3])
    clone = pickle.loads(pickle.dumps(ds))
    assert _keys(clone) == _keys(ds)
    spawned = list(make_loader(ds, num_workers=1, multiprocessing_context="spawn"))
    direct = list(make_loader(ds))
    assert _batch_keys(spawned) == _batch_keys(direct)
    assert all(torch.equal(a.genotype, b.genotype) for a, b in zip(spawned, direct))


def test_dataset_errors(cohort):
    path, _ = cohort
    with pytest.raises(SampleError, match="samples absent from the store: NOPE"):
        TileDataset(path, samples=["S000", "NOPE"])
    with pytest.raises(SampleError, match=r"duplicate samples \[2\]"):
        TileDataset(path, samples=[2, 2])
    with pytest.raises(SampleError, match="out of range"):
        TileDataset(path, samples=[40])
    with pytest.raises(ConfigError, match="seq_len=0"):
        TileDataset(path, seq_len=0)
    with pytest.raises(ConfigError, match="both rank and world_size"):
        TileDataset(path, rank=0)
    with pytest.raises(ConfigError, match="uneven='keep'"):
        TileDataset(path, uneven="keep")
    with pytest.raises(ConfigError, match=r"tiles \[9\]"):
        TileDataset(path, tiles=[9])
    assert TileDataset(path, samples=["S005", "S001"]).samples.tolist() == [1, 5]


# --- augmentation -----------------------------------------------------------------------------------


def test_mosaic_segments_copy_the_panel():
    rng = np.random.default_rng(5)
    panel = rng.integers(0, 2, (30, 500, 2)).astype(np.int8)  # 30 genomes, 60 haplotypes
    gcm = np.sort(rng.uniform(0, 300, 500))  # 3 Morgans
    out, segs = synthetic_genomes(panel, gcm, 20, rng, generations=2, return_segments=True)
    flat = panel.transpose(0, 2, 1).reshape(60, 500)
    assert out.shape == (20, 500, 2) and len(segs) == 40
    for i, (starts, sources) in enumerate(segs):
        hap = out[i // 2, :, i % 2]
        stops = np.append(starts[1:], 500)
        assert starts[0] == 0 and np.all(np.diff(starts) > 0)
        assert np.all(sources[1:] != sources[:-1])
        for s, e, src in zip(starts, stops, sources):
            assert np.array_equal(hap[s:e], flat[src, s:e])
    assert sum(len(s) - 1 for s, _ in segs) > 40  # ~6 crossovers per haplotype


def test_synthetic_genomes_deterministic_by_seed():
    panel = np.random.default_rng(0).integers(0, 2, (10, 200, 2)).astype(np.int8)
    gcm = np.linspace(0, 200, 200)
    a = synthetic_genomes(panel, gcm, 5, np.random.default_rng(9))
    b = synthetic_genomes(panel, gcm, 5, np.random.default_rng(9))
    c = synthetic_genomes(panel, gcm, 5, np.random.default_rng(10))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_crossover_counts_are_poisson():
    # 100 Mb at 1 cM/Mb = 1 Morgan; 8 generations -> Poisson(8) crossovers
    pos = np.linspace(1, 100_000_000, 20_000)
    gcm = genetic_positions(pos, rate=1.0)
    rng = np.random.default_rng(1)
    k = np.array([crossover_sites(gcm, rng, generations=8).size for _ in range(3000)])
    assert abs(k.mean() - 8) < 0.25  # sd of the mean ~0.05
    assert 0.85 < k.var() / k.mean() < 1.15
    assert abs(np.mean(k == 0) - np.exp(-8)) < 0.003
    # switches spread uniformly along the map
    sites = np.concatenate([crossover_sites(gcm, rng, generations=8) for _ in range(500)])
    hist = np.histogram(sites, bins=4, range=(0, 20_000))[0]
    assert hist.min() > 0.85 * hist.mean()


def test_crossovers_follow_a_genetic_map(tmp_path):
    # PLINK map: 0.1 cM/Mb on the first 50 Mb, 10 cM/Mb on the next 50 Mb
    (tmp_path / "g.map").write_text("22\t.\t0\t1\n22\t.\t5\t50000001\n22\t.\t505\t100000001\n")
    gmap = read_genetic_map(tmp_path / "g.map")
    pos = np.linspace(1, 100_000_001, 10_000)
    gcm = genetic_positions(pos, chrom="chr22", genetic_map=gmap)
    assert gcm[0] == 0 and gcm[-1] == 505
    rng = np.random.default_rng(2)
    sites = np.concatenate([crossover_sites(gcm, rng, generations=1) for _ in range(200)])
    assert abs(np.mean(sites >= 5000) - 500 / 505) < 0.005
    assert abs(sites.size / 200 - 5.05) < 0.4


def test_augment_config(cohort):
    """Validated where it is defined; a disabled augmentation leaves the dataset on real samples."""
    with pytest.raises(ConfigError, match=r"data.augment.panel_size=0 must be > 0"):
        AugmentConfig(panel_size=0)
    with pytest.raises(ConfigError, match=r"data.augment.items_per_epoch=0 must be > 0"):
        AugmentConfig(items_per_epoch=0)
    block = yaml.safe_load((CONFIGS / "data" / "default.yaml").read_text())["augment"]
    assert AugmentConfig(**block) == AugmentConfig()
    path, _ = cohort
    assert TileDataset(path, augment=AugmentConfig(enabled=False)).augment is None
    assert TileDataset(path, augment=AugmentConfig(enabled=True)).augment == AugmentConfig(enabled=True)
    assert TileDataset(path, augment=AugmentConfig(enabled=True), training=False).augment is None


def test_augmented_dataset(cohort):
    path, _ = cohort
    train = np.arange(0, 30)
    augment = AugmentConfig(enabled=True, panel_size=12, items_per_epoch=50, generations=50)
    kw = dict(samples=train, seq_len=10, masking=MaskingConfig(), augment=augment,
              seed=4, batch_size=5, block_samples=8)
    ds = TileDataset(path, **kw, return_haplotypes=True)
    items = list(ds)
    assert len(items) == len(ds) == 50 and all(it["sample"] == -1 for it in items)
    flat_by_tile = {}
    for it in items:
        c, o, h = it["tile"], it["offset"], it["haplotypes"]
        if c not in flat_by_tile:
            flat_by_tile[c] = _alleles(cohort, c)[train].transpose(0, 2, 1).reshape(-1, _alleles(cohort, c).shape[1])
        ref = flat_by_tile[c][:, o:o + len(h)]
        assert np.array_equal(it["truth"], genotype_tokens(h))
        for k in range(2):  # every site's allele comes from a training haplotype whose run covers it
            hap = h[:, k]
            s = 0
            while s < len(hap):  # greedy longest match: a mosaic of panel haplotypes
                runs = [np.argmax(np.append(ref[r, s:] != hap[s:], True)) for r in range(ref.shape[0])]
                assert max(runs) > 0
                s += max(runs)
    again = list(TileDataset(path, **kw, return_haplotypes=True))
    assert all(np.array_equal(a["haplotypes"], b["haplotypes"]) for a, b in zip(items, again))
    # two ranks split the synthetic stream evenly
    r = [len(list(TileDataset(path, **kw, rank=i, world_size=2))) for i in (0, 1)]
    assert r == [25, 25]


# --- DataModule ---------------------------------------------------------------------------------------


def test_split_samples():
    tr, va = split_samples(40, val_fraction=0.25, seed=1)
    assert len(va) == 10 and len(tr) == 30 and not set(tr) & set(va)
    assert np.array_equal(va, split_samples(40, val_fraction=0.25, seed=1)[1])
    assert len(split_samples(40, val_fraction=0.001, seed=1)[1]) == 1
    assert len(split_samples(40, val_fraction=0.0, seed=1)[1]) == 0
    with pytest.raises(ConfigError, match="val_fraction=1.0"):
        split_samples(4, val_fraction=1.0, seed=0)


def test_datamodule_loaders(cohort, tmp_path):
    path, _ = cohort
    dm = GenotypeDataModule(str(path), batch_size=6, seq_len=8, val_fraction=0.25, seed=2,
                            masking=MaskingConfig(min_rate=0.5, max_rate=0.6), augment=AugmentConfig(enabled=False))
    assert dm.n_sites == 80
    dm.setup("fit")
    tr, va = dm.split()
    assert len(va) == 10 and len(tr) == 30
    assert set(dm.train_sample_ids).isdisjoint(dm.val_sample_ids)
    batches = list(dm.train_dataloader())
    assert sum(len(b.sample) for b in batches) == 30 * 6
    assert {int(s) for b in batches for s in b.sample} == set(tr.tolist())
    val = list(dm.val_dataloader())
    assert {int(s) for b in val for s in b.sample} == set(va.tolist())
    rates = [(b.genotype[b.valid] == MASK).float().mean().item() for b in batches]
    assert 0.4 < min(rates) and max(rates) < 0.7
    # held-out samples from a file; prediction over chosen samples with nothing hidden
    (tmp_path / "val.txt").write_text("S001\nS039\n")
    (tmp_path / "pred.txt").write_text("S007\n")
    dm2 = GenotypeDataModule(str(path), val_samples=str(tmp_path / "val.txt"),
                             predict_samples=str(tmp_path / "pred.txt"), seq_len=None, batch_size=4)
    assert dm2.val_sample_ids == ["S001", "S039"]
    pred = list(dm2.predict_dataloader())
    assert {int(s) for b in pred for s in b.sample} == {7}
    assert all(bool((b.target == IGNORE_INDEX).all()) for b in pred)
    (tmp_path / "bad.txt").write_text("S001\nXX\n")
    with pytest.raises(SampleError, match="XX"):
        GenotypeDataModule(str(path), val_samples=str(tmp_path / "bad.txt")).split()


def test_lightning_sets_the_epoch(cohort):
    """A real Trainer.fit: each epoch sees every training item once, in a new order."""
    import lightning as L

    path, _ = cohort
    seen: list[list[tuple]] = []

    class Probe(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def on_train_epoch_start(self):
            seen.append([])

        def training_step(self, batch, _):
            seen[-1].extend(zip(batch.sample.tolist(), batch.tile.tolist(), batch.offset.tolist()))
            return (self.w * batch.genotype.float().mean()).sum()

        def predict_step(self, batch, _):
            assert batch.genotype.dtype == torch.long
            return batch.sample.tolist()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    # one persistent worker: Lightning's set_epoch must reach it, compact batches are widened
    dm = GenotypeDataModule(str(path), batch_size=8, seq_len=8, val_fraction=0.0, tiles=[0, 2], seed=1,
                            num_workers=1, persistent_workers=True)
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(Probe(), datamodule=dm)
    assert len(seen) == 2 and all(len(e) == 80 for e in seen)
    assert {k[:2] for k in seen[0]} == {k[:2] for k in seen[1]} == {(s, c) for s in range(40) for c in (0, 2)}
    assert seen[0] != seen[1]
    ref = TileDataset(path, seq_len=8, tiles=[0, 2], masking=MaskingConfig(), seed=1, batch_size=8)
    ref.set_epoch(1)
    assert seen[1] == _keys(ref)
    predicted = trainer.predict(Probe(), datamodule=dm)
    assert sorted(s for b in predicted for s in b) == sorted(list(range(40)) * 4)  # 2 tiles x 2 sequences


def test_masking_curriculum_follows_the_items_training_order(cohort):
    """The rate rises over the first epoch's items and holds from the second epoch; the same
    epoch gives the same masks."""
    path, _ = cohort
    n = len(TileDataset(path, seq_len=16, masking=None))  # items per epoch: the curriculum spans one
    ds = TileDataset(path, seq_len=16, seed=3, batch_size=4, masking=MaskingConfig(
        min_rate=0.9, max_rate=0.9, start_min_rate=0.1, start_max_rate=0.1, curriculum_sequences=n))

    def hidden(items):  # fraction of called genotypes hidden, per item
        return np.array([(it["genotype"] == MASK).sum() / max(1, (it["truth"] != MISSING).sum()) for it in items])

    ds.set_epoch(0)
    first = list(ds)
    ds.set_epoch(1)
    second = list(ds)
    assert len(first) == len(second) == n
    assert np.all(np.abs(hidden(second) - 0.9) < 0.1)
    ds.set_epoch(0)
    assert [it["genotype"].tolist() for it in ds] == [it["genotype"].tolist() for it in first]
    rates = hidden(first)
    assert rates.min() < 0.3 and 0.3 < rates.mean() < 0.7 and rates.max() > 0.75
