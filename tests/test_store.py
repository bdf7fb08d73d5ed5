"""GenotypeStore: reads equal the input, layout matches the VCF Zarr spec, bad stores refused."""

import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import zarr

from snpbag import STORE_FORMAT_VERSION
from snpbag.store import schema
from snpbag.store.convert import convert
from snpbag.store.genotypes import open_store
from snpbag.store.vocab import SiteVocab
from snpbag.errors import SampleError, StoreFormatError

SAMPLES = [f"S{i}" for i in range(40)]


def write_vcf(path, samples, records, contigs=(("chr21", 100000), ("chr22", 100000))):
    lines = ["##fileformat=VCFv4.2"]
    lines += [f"##contig=<ID={c},length={n}>" for c, n in contigs]
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples]))
    for chrom, pos, ref, alt, gts in records:
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", ".", "GT", *gts]))
    path.write_text("\n".join(lines) + "\n")
    return path


def random_records(rng, n_per_chrom=60, n_samples=40):
    recs, truth = [], []
    for chrom in ("chr21", "chr22"):
        for pos in np.sort(rng.choice(np.arange(1, 90000), n_per_chrom, replace=False)):
            p = rng.uniform(0.0, 0.6)
            g = (rng.random((n_samples, 2)) < p).astype(int)
            miss = rng.random((n_samples, 2)) < 0.05
            gts = []
            for (a, b), (ma, mb) in zip(g, miss):
                gts.append(f"{'.' if ma else a}|{'.' if mb else b}")
            truth.append(np.where(miss, -1, g))
            recs.append((chrom, int(pos), "A", "G", gts))
    return recs, np.stack(truth)  # (V, n, 2)


@pytest.fixture(scope="module")
def store_and_truth(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(3)
    recs, truth = random_records(rng)
    vcf = write_vcf(d / "in.vcf", SAMPLES, recs)
    convert(vcf, d / "s.zarr", min_maf=0.05, tile_len=7, threads=1)
    return d / "s.zarr", truth


def test_read_haplotypes_equals_input(store_and_truth):
    path, truth = store_and_truth
    st = open_store(path)
    voc = st.vocab
    assert st.n_variants == truth.shape[0] and st.n_samples == 40
    samples = np.array([5, 0, 39, 17])
    got = np.concatenate([st.read_haplotypes(c, samples) for c in range(st.n_tiles)], axis=1)
    want = truth[voc.variant][:, samples].transpose(1, 0, 2)
    np.testing.assert_array_equal(got, want)
    # a site range, slices of samples, dosage
    h = st.read_haplotypes(3, slice(10, 20), start=2, stop=5)
    np.testing.assert_array_equal(h, truth[voc.variant[voc.tile_sites(3)][2:5]][:, 10:20].transpose(1, 0, 2))
    d = st.read_dosage(3, [1, 2])
    h = st.read_haplotypes(3, [1, 2])
    np.testing.assert_array_equal(d, np.where((h < 0).any(2), -1, h.sum(2)))



@pytest.mark.parametrize("one_read", [True, False])
def test_read_by_site_is_the_transpose(store_and_truth, monkeypatch, one_read):
    """by_site reads (a reference panel's site-major rows) hold what the sample-major reads
    hold, for a run of sites (no gather) and scattered ones, in one zarr call or per chunk."""
    from snpbag.store import genotypes

    if not one_read:
        monkeypatch.setattr(genotypes, "_ONE_READ_BYTES", 0)
    path, truth = store_and_truth
    st = open_store(path)
    samples = np.array([5, 0, 39, 17])
    for sites in (np.arange(st.vocab.n_sites), np.arange(st.vocab.n_sites)[1::3]):
        g = st.read_sites(sites, samples, by_site=True)
        np.testing.assert_array_equal(g, truth[st.vocab.variant[sites]][:, samples])
        np.testing.assert_array_equal(g.swapaxes(0, 1), st.read_sites(sites, samples))
        np.testing.assert_array_equal(st.read_phased(sites, samples, by_site=True).T, st.read_phased(sites, samples))

def test_vocab_af_and_tiling(store_and_truth):
    path, truth = store_and_truth
    st = open_store(path)
    called = (truth >= 0).sum((1, 2))
    af = (truth == 1).sum((1, 2)) / called
    keep = np.flatnonzero(np.minimum(af, 1 - af) >= 0.05)
    np.testing.assert_array_equal(st.vocab.variant, keep)
    np.testing.assert_allclose(st.vocab.af, af[keep], rtol=1e-6)
    tiles = st.tiles
    assert all(t.length <= 7 for t in tiles)
    assert [t.site_start for t in tiles[1:]] == [t.site_stop for t in tiles[:-1]]
    for chrom in ("chr21", "chr22"):
        mine = [t for t in tiles if t.chrom == chrom]
        n_sites = int((st.variant_contig[keep] == st.contig_ids.index(chrom)).sum())
        assert [c.length for c in mine] == [7] * (n_sites // 7) + ([n_sites % 7] if n_sites % 7 else [])


def test_iter_variant_blocks_cover_all(store_and_truth):
    path, truth = store_and_truth
    st = open_store(path)
    blocks = list(st.iter_variant_blocks(samples=[3, 1], block=50))
    assert [b[0] for b in blocks] == [slice(0, 50), slice(50, 100), slice(100, 120)]
    np.testing.assert_array_equal(np.concatenate([g for _, g in blocks]), truth[:, [3, 1]])


def test_pickle_and_sample_index(store_and_truth):
    path, _ = store_and_truth
    st = open_store(path)
    st2 = pickle.loads(pickle.dumps(st))
    np.testing.assert_array_equal(st2.read_haplotypes(0, [1]), st.read_haplotypes(0, [1]))
    np.testing.assert_array_equal(st.sample_index(["S3", "S0"]), [3, 0])
    with pytest.raises(SampleError, match="absent from the store: NOPE"):
        st.sample_index(["S1", "NOPE"])


def test_xarray_matches_spec(store_and_truth):
    xr = pytest.importorskip("xarray")
    path, _ = store_and_truth
    ds = xr.open_zarr(path)
    for spec in schema.VARIABLES:
        if not spec.required and spec.name not in ds:
            continue
        var = ds[spec.name]
        assert var.dims == spec.dims, spec.name
        if spec.dtype == "str":
            assert var.dtype.kind in "OUT", spec.name
        else:
            assert var.dtype == np.dtype(spec.dtype), spec.name
    assert ds.attrs["snpbag_format_version"] == STORE_FORMAT_VERSION
    assert ds.attrs["vcf_zarr_version"] == schema.VCF_ZARR_VERSION
    np.testing.assert_array_equal(ds["call_genotype_mask"].values, ds["call_genotype"].values < 0)


def test_vocab_save_load(store_and_truth, tmp_path):
    path, _ = store_and_truth
    voc = open_store(path).vocab
    voc.save(tmp_path / "sites.npz", tmp_path / "meta.json")  # the model directory names them
    back = SiteVocab.load(tmp_path / "sites.npz", tmp_path / "meta.json")
    assert back == voc
    assert back.tile_sites(2) == voc.tile_sites(2)
    # the files keep the format's names for the tiles (model directories written before still load)
    with np.load(tmp_path / "sites.npz") as z:
        assert set(z.files) == {"site_chrom", "position", "ref", "alt", "af", "variant",
                                "contig_chrom", "contig_start", "contig_stop"}
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert set(meta) == {"format_version", "chrom_names", "contig_len", "min_maf", "n_sites", "n_contigs"}
    assert (meta["contig_len"], meta["n_contigs"]) == (voc.tile_len, voc.n_tiles)
    idx = back.index_of(["21", "chr22", "22"], [voc.position[0], voc.position[-1], 1], ["A", "A", "A"],
                        ["G", "G", "G"])
    np.testing.assert_array_equal(idx, [0 if voc.chrom()[0] == "chr21" else -1, voc.n_sites - 1, -1])


def _worker_read(st):
    return st.read_haplotypes(0, [1, 4])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_store_in_worker_processes(store_and_truth, method):
    """DataLoader-style workers: the store crosses the process boundary by path."""
    import multiprocessing

    path, _ = store_and_truth
    st = open_store(path)
    want = st.read_haplotypes(0, [1, 4])  # the parent has used zarr (event loop thread) before forking
    with multiprocessing.get_context(method).Pool(1) as pool:
        np.testing.assert_array_equal(pool.apply(_worker_read, (st,)), want)


@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_incompatible_and_incomplete_store(store_and_truth, tmp_path):
    path, _ = store_and_truth
    bad = tmp_path / "old.zarr"
    shutil.copytree(path, bad)
    g = zarr.open_group(str(bad), mode="r+", use_consolidated=False)
    g.attrs[schema.ATTR_VERSION] = STORE_FORMAT_VERSION + 1
    zarr.consolidate_metadata(str(bad))
    with pytest.raises(StoreFormatError, match=r"old\.zarr: store format version 2.*re-run `snpbag convert`"):
        open_store(bad)
    g.attrs[schema.ATTR_VERSION] = STORE_FORMAT_VERSION
    del g.attrs[schema.ATTR_COMPLETE]
    zarr.consolidate_metadata(str(bad))
    with pytest.raises(StoreFormatError, match="incomplete store"):
        open_store(bad)
    with pytest.raises(StoreFormatError, match="no such store"):
        open_store(tmp_path / "nothing.zarr")
    plain = tmp_path / "plain.zarr"
    zarr.open_group(str(plain), mode="w", zarr_format=3)
    with pytest.raises(StoreFormatError, match="not a snpbag store"):
        open_store(plain)


def test_corrupt_chunk_names_array(store_and_truth, tmp_path):
    path, _ = store_and_truth
    bad = tmp_path / "bad.zarr"
    shutil.copytree(path, bad)
    shard = next(p for p in (bad / "call_genotype").rglob("*") if p.is_file() and p.name != "zarr.json")
    data = bytearray(shard.read_bytes())
    data[20:40] = b"\xff" * 20
    shard.write_bytes(bytes(data))
    st = open_store(bad)
    with pytest.raises(StoreFormatError, match=r"bad\.zarr/call_genotype: corrupt or unreadable chunk"):
        st.read_haplotypes(0, [0, 1])


def test_make_tiles_and_select_sites():
    from snpbag.store.vocab import make_tiles, select_sites

    chrom, start, stop = make_tiles(np.array([0, 0, 0, 1, 1, 3]), tile_len=2)
    np.testing.assert_array_equal(chrom, [0, 0, 1, 3])
    np.testing.assert_array_equal(start, [0, 2, 3, 5])
    np.testing.assert_array_equal(stop, [2, 3, 5, 6])
    assert [a.size for a in make_tiles(np.zeros(0, np.int16), tile_len=5)] == [0, 0, 0]
    af = np.array([0.0, 0.01, 0.5, 0.99, 0.995, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(select_sites(af, min_maf=0.01), [1, 2, 3])
    np.testing.assert_array_equal(select_sites(af, min_maf=0.0), [0, 1, 2, 3, 4])
    exact = np.array([60, 59, 5940, 5941]) / 6000  # MAF exactly 0.01 is kept (>=)
    np.testing.assert_array_equal(select_sites(exact, min_maf=0.01), [0, 2])


def test_local_metadata_reads_equal_zarr(store_and_truth, tmp_path):
    """Arrays read without zarr (snpbag.store.localzarr) equal zarr's, strings included; a
    store without consolidated metadata is read through zarr with the same values."""
    import json

    from snpbag.store import localzarr

    path, _ = store_and_truth
    local = localzarr.consolidated(path)
    g = zarr.open_group(str(path), mode="r")
    assert local["attributes"] == dict(g.attrs)
    read = 0
    for name, meta in local["arrays"].items():
        got = localzarr.read_chunk(path, name, meta)
        want = np.asarray(g[name][...])
        if got is None:  # sharded genotypes: ShardScan's job
            assert len(g[name].shape) == 3 or name.startswith("call_genotype"), name
            continue
        read += 1
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want.astype(object) if want.dtype.kind == "T" else want, err_msg=name)
    assert read >= 10
    plain = tmp_path / "plain.zarr"
    shutil.copytree(path, plain)
    root = json.loads((plain / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (plain / "zarr.json").write_text(json.dumps(root))
    assert localzarr.consolidated(plain) is None
    a, b = open_store(path), open_store(plain)
    assert a._local() is not None and b._local() is None
    for attr in ("sample_ids", "contig_ids", "variant_position", "variant_contig", "variant_allele"):
        np.testing.assert_array_equal(np.asarray(getattr(a, attr)), np.asarray(getattr(b, attr)), err_msg=attr)
    assert (a.n_samples, a.n_variants, a.n_tiles, a.variant_chunk, a.attrs) == \
        (b.n_samples, b.n_variants, b.n_tiles, b.variant_chunk, b.attrs)


def test_local_metadata_corrupt_chunk_and_no_zarr_import(store_and_truth, tmp_path):
    """A damaged single-chunk array is a StoreFormatError naming it; opening a store and
    reading its metadata does not import zarr (~0.25 s a process)."""
    path, _ = store_and_truth
    code = ("import sys; from snpbag.store.genotypes import open_store; "
            f"s = open_store({str(path)!r}); s.sample_ids; s.vocab; s.variant_contig; "
            "assert 'zarr' not in sys.modules, 'zarr imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    bad = tmp_path / "bad.zarr"
    shutil.copytree(path, bad)
    chunk = bad / "sample_id" / "c" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-3])
    with pytest.raises(StoreFormatError, match=r"bad\.zarr/sample_id: corrupt or unreadable chunk.*re-run `snpbag convert`"):
        open_store(bad).sample_ids
