"""``snpbag embed``: formats, dtypes, ids and patch coordinates, sample order, identical bytes
on a rerun, the same site matching as impute (allele swaps give the same embeddings, a VCF
and its store agree), flagged patches, and bad inputs that fail with one line."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snpbag.cli import main
from snpbag.errors import InputError, SiteMismatchError
from snpbag.inference.embed import embed
from snpbag.inference.embedout import read_embeddings
from test_embed_head import EMBED_TRAIN
from tiny_data import tiny_store

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from snpbag.train.export import export
    from snpbag.train.run import train

    d = tmp_path_factory.mktemp("embed")
    store = tiny_store(d, n_samples=30, n_sites=200, tile_len=128)
    run = train([*EMBED_TRAIN, "trainer.max_steps=10", "trainer.val_check_interval=10", "task.freeze_encoder=false",
                 f"data.store={store}", f"paths.run_dir={d / 'run'}"])
    export(run, d / "model")
    return d


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        h.update(f.read_bytes())
    return h.hexdigest()


def test_zarr_output_describes_itself(setup, tmp_path):
    s = embed(model=setup / "model", input=setup / "tiny.vcf", output=tmp_path / "e.zarr", progress=False)
    e = read_embeddings(tmp_path / "e.zarr")
    assert e.fmt == "zarr" and e.shape == (30, 6, 16)  # 128 + 51 sites at patch 32: 4 + 2 patches, 1 x 16 numbers
    assert e.samples == [f"S{i:03d}" for i in range(30)]
    assert e.patches.n_sites.tolist() == [32, 32, 32, 32, 32, 19]
    assert (e.patches.chrom == "22").all() and (e.patches.first_pos <= e.patches.last_pos).all()
    assert (e.patches.first_pos[1:] > e.patches.last_pos[:-1]).all()
    assert e.attrs["dtype"] == "bf16" and e.attrs["model"]["name"] == "model"
    assert s.bytes_per_genome == 6 * 16 * 2
    import zarr

    g = zarr.open_group(str(tmp_path / "e.zarr"), mode="r")
    assert g["embedding"].metadata.dimension_names == ("sample", "patch", "dim")
    assert g["embedding"].dtype == np.uint16  # bf16 bits


def test_parquet_is_one_row_per_sample_and_patch(setup, tmp_path):
    import pyarrow.parquet as pq

    z = read_embeddings(_embedded(setup, tmp_path / "e.zarr"))
    out = _embedded(setup, tmp_path / "e.parquet", fmt="parquet", batch_size=7)
    t = pq.read_table(out)
    assert t.column_names == ["sample", "patch_chrom", "patch_first_pos", "patch_last_pos", "patch_n_sites",
                              "patch_n_typed", "patch_flagged", "embedding"]
    assert t.num_rows == 30 * 6 and pq.ParquetFile(out).metadata.num_row_groups == 5  # batches of 7 samples
    assert t.column("sample").to_pylist() == [f"S{i:03d}" for i in range(30) for _ in range(6)]
    for k, v in z.patches.arrays().items():
        assert t.column(k).to_pylist() == np.tile(v, 30).tolist()
    vec = t.schema.field("embedding").type
    assert str(vec.value_type) == "uint16" and vec.list_size == 16  # bf16 bits
    e = read_embeddings(out)
    assert e.fmt == "parquet" and e.samples == z.samples and e.attrs == z.attrs
    assert np.array_equal(e.matrix(flat=False), z.matrix(flat=False))
    pooled = read_embeddings(_embedded(setup, tmp_path / "p.parquet", fmt="parquet", pool="mean"))
    assert pooled.shape == (30, 16) and pq.read_table(tmp_path / "p.parquet").column_names == ["sample", "embedding"]
    assert np.array_equal(pooled.matrix(), read_embeddings(_embedded(setup, tmp_path / "p.zarr", pool="mean")).matrix())


def test_formats_and_dtypes_agree(setup, tmp_path):
    ref = None
    for fmt, dtype in (("zarr", "f32"), ("npy", "f32"), ("parquet", "f32"), ("npy", "f16"), ("parquet", "f16"),
                       ("zarr", "bf16"), ("parquet", "bf16")):
        out = tmp_path / f"e.{fmt}.{dtype}"
        embed(model=setup / "model", input=setup / "tiny.vcf", output=out, fmt=fmt, dtype=dtype, progress=False)
        e = read_embeddings(out)
        x = e.matrix(flat=False)
        assert x.dtype == np.float32 and x.shape == (30, 6, 16) and e.fmt == fmt
        if ref is None:
            ref = x
        tol = {"f32": 0, "f16": 2e-3, "bf16": 1.6e-2}[dtype]
        assert np.allclose(x, ref, rtol=tol, atol=tol)
    assert not np.array_equal(x, ref)  # bf16 rounds


def test_mean_pool_and_sample_subset(setup, tmp_path):
    full = read_embeddings(_embedded(setup, tmp_path / "full.npy", fmt="npy", dtype="f32")).matrix(flat=False)
    (tmp_path / "some.txt").write_text("S004\nS001\n")
    out = tmp_path / "pooled.zarr"
    embed(model=setup / "model", input=setup / "tiny.vcf", output=out, pool="mean", dtype="f32",
          samples=tmp_path / "some.txt", progress=False)
    e = read_embeddings(out)
    assert e.shape == (2, 16)
    rows = [int(s[1:]) for s in e.samples]
    assert sorted(rows) == [1, 4]
    assert np.allclose(e.matrix(), full[rows].mean(1), atol=1e-6)  # a sample's vector does not depend on its batch


def _embedded(setup, out, **kw):
    embed(model=kw.pop("model", setup / "model"), input=kw.pop("input", setup / "tiny.vcf"), output=out,
          progress=False, **kw)
    return out


def test_same_input_same_bytes(setup, tmp_path):
    for fmt in ("zarr", "npy", "parquet"):
        a = _embedded(setup, tmp_path / f"a.{fmt}", fmt=fmt, batch_size=7)
        b = _embedded(setup, tmp_path / f"b.{fmt}", fmt=fmt, batch_size=7)
        assert _digest(a) == _digest(b)


def test_store_input_and_allele_swaps_match_the_vcf(setup, tmp_path):
    ref = read_embeddings(_embedded(setup, tmp_path / "v.npy", fmt="npy", dtype="f32")).matrix()
    st = read_embeddings(_embedded(setup, tmp_path / "s.npy", fmt="npy", dtype="f32",
                                   input=setup / "tiny.zarr")).matrix()
    assert np.array_equal(ref, st)
    # every 5th record with REF/ALT swapped and genotypes recoded: the same embeddings
    lines = (setup / "tiny.vcf").read_text().splitlines()
    out, k = [], 0
    for ln in lines:
        if not ln.startswith("#"):
            k += 1
            if k % 5 == 0:
                f = ln.split("\t")
                f[3], f[4] = f[4], f[3]
                f[9:] = [g.replace("0", "x").replace("1", "0").replace("x", "1") for g in f[9:]]
                ln = "\t".join(f)
        out.append(ln)
    swapped = tmp_path / "swapped.vcf"
    swapped.write_text("\n".join(out) + "\n")
    sw = read_embeddings(_embedded(setup, tmp_path / "w.npy", fmt="npy", dtype="f32", input=swapped)).matrix()
    assert np.array_equal(ref, sw)


def test_patches_with_few_typed_sites_are_flagged(setup, tmp_path):
    lines = (setup / "tiny.vcf").read_text().splitlines()
    body = [ln for ln in lines if not ln.startswith("#")]
    head = [ln for ln in lines if ln.startswith("#")]
    keep = body[:150] + body[150::4]  # the last patches lose three sites in four
    sparse = tmp_path / "sparse.vcf"
    sparse.write_text("\n".join(head + keep) + "\n")
    out = tmp_path / "sparse.zarr"
    s = embed(model=setup / "model", input=sparse, output=out, progress=False)
    e = read_embeddings(out)
    assert e.patches.flagged.any() and not e.patches.flagged[:3].any()
    assert (e.patches.flagged == (e.patches.n_typed < 0.5 * e.patches.n_sites)).all()
    assert s.n_flagged == int(e.patches.flagged.sum())


def test_bad_inputs_fail_with_one_line(setup, tmp_path):
    with pytest.raises(InputError, match="output already exists"):
        embed(model=setup / "model", input=setup / "tiny.vcf", output=setup / "tiny.vcf", progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "pyarrow", None)  # not installed
        with pytest.raises(InputError, match="--format parquet needs pyarrow, which is not installed"):
            _embedded(setup, tmp_path / "e.parquet", fmt="parquet")
    assert not (tmp_path / "e.parquet").exists()
    other = tmp_path / "chr21.vcf"
    other.write_text((setup / "tiny.vcf").read_text().replace("\n22\t", "\n21\t").replace("ID=22,", "ID=21,"))
    with pytest.raises(SiteMismatchError, match=r"chr21.vcf: chromosome\(s\) 21 but the model covers 22"):
        _embedded(setup, tmp_path / "o.zarr", input=other)
    res = CliRunner().invoke(main, ["embed", "--model", str(setup / "model"), "--input", str(setup / "tiny.vcf"),
                                    "--output", str(tmp_path / "x.zarr"), "--batch-size", "0"])
    assert res.exit_code != 0 and "--batch-size 0: must be at least 1" in res.output


def test_a_model_without_the_embedding_head_is_refused(setup, tmp_path):
    from snpbag import modeldir

    m = modeldir.load_model(setup / "model", head="genotype")
    gen = tmp_path / "gen"
    modeldir.save_model(m, gen)
    modeldir.save_vocab(modeldir.load_vocab(setup / "model"), gen)
    with pytest.raises(InputError, match="its head 'genotype' makes no embeddings; train one with"):
        _embedded(setup, tmp_path / "g.zarr", model=gen)


def test_cli_calls_the_library(setup, tmp_path):
    from unittest import mock

    with mock.patch("snpbag.inference.embed.embed") as run:
        CliRunner().invoke(main, ["embed", "--model", "M", "--input", "in.vcf", "--output", "o.zarr", "--pool", "mean"])
    run.assert_called_once_with(model="M", input="in.vcf", output="o.zarr", fmt="zarr", dtype="bf16", pool="mean",
                                samples=None, batch_size=16, device="cpu", min_typed=0.5)


