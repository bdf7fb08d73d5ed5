"""A panel-free model (model.retrieval=none) exports a directory without individual-level
genotypes: every file of it is scanned for arrays shaped like the training store's genotypes,
and `snpbag info` says whether the directory contains genotypes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from snpbag import modeldir
from snpbag.config import preset
from snpbag.model import build_model
from snpbag.model.heads import HEADS
from snpbag.store.genotypes import open_store
from tiny_data import TINY_TRAIN, tiny_store

torch.set_num_threads(1)


def _arrays(path: Path):
    """(name, array) of every array-like value in a file of a model directory; a file of a kind
    the scan cannot read fails the test, so nothing goes unscanned."""
    suffix = "".join(path.suffixes[-1:])
    if suffix in (".npz", ".npy"):
        data = np.load(path, allow_pickle=False)
        yield from (data.items() if suffix == ".npz" else [(path.name, data)])
    elif suffix == ".safetensors":
        from safetensors.numpy import load_file

        yield from load_file(str(path)).items()
    elif suffix in (".ckpt", ".pt"):
        state = torch.load(path, map_location="cpu", weights_only=False)
        stack = [("", state)]
        while stack:
            name, v = stack.pop()
            if isinstance(v, dict):
                stack += [(f"{name}.{k}", x) for k, x in v.items()]
            elif isinstance(v, (list, tuple)):
                stack += [(f"{name}[{i}]", x) for i, x in enumerate(v)]
            elif isinstance(v, torch.Tensor):
                yield name, v.numpy()
    elif suffix == ".json":
        stack = [("", json.loads(path.read_text()))]
        while stack:
            name, v = stack.pop()
            if isinstance(v, dict):
                stack += [(f"{name}.{k}", x) for k, x in v.items()]
            elif isinstance(v, list):
                yield name, np.asarray(v, dtype=object)
                stack += [(f"{name}[{i}]", x) for i, x in enumerate(v)]
    elif path.name == "zarr.json" or suffix == ".zarr" or path.name.startswith(".z"):
        pytest.fail(f"{path}: a zarr store inside a model directory")
    else:
        pytest.fail(f"{path}: a file the genotype scan does not know how to read; teach it")


def genotype_like(directory: Path, n_samples: int, n_sites: int, n_variants: int) -> list[str]:
    """Files and arrays of ``directory`` shaped like individual genotypes or haplotypes: a
    dimension of one sample or haplotype count next to one of the site counts."""
    samples = {n_samples, 2 * n_samples}
    sites = {n_sites, n_variants, 2 * n_sites}
    found = []
    for f in sorted(p for p in directory.rglob("*") if p.is_file()):
        for name, a in _arrays(f):
            shape = np.shape(a)
            if (len(shape) >= 2 and any(d in samples for d in shape) and any(d in sites for d in shape)) or (
                    len(shape) == 1 and shape[0] in {s * t for s in samples for t in sites}):
                found.append(f"{f.name}:{name}{shape}")
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from snpbag.train.export import export
    from snpbag.train.run import train

    d = tmp_path_factory.mktemp("panelfree")
    store = tiny_store(d, n_samples=24, n_sites=150, tile_len=64)
    run = train([*TINY_TRAIN, "model.retrieval=none", f"data.store={store}", f"paths.run_dir={d / 'run'}"])
    export(run, d / "model")
    return d, store


def _counts(store_path):
    st = open_store(str(store_path))
    return st.n_samples, st.vocab.n_sites, st.n_variants


def test_panel_free_export_holds_no_genotypes(exported):
    d, store = exported
    model = d / "model"
    assert json.loads((model / modeldir.CONFIG_FILE).read_text())["model"]["retrieval"] == "none"
    assert modeldir.panel_files_in(model) == []
    assert genotype_like(model, *_counts(store)) == []
    assert "contains genotypes  no: weights, site list and allele frequencies only" in modeldir.describe(model)
    assert modeldir.read(model).retrieval_panel is None


def test_the_scan_finds_a_retrieval_panel(exported, tmp_path):
    """The scan can fail: the same directory with a genome panel of the training store shipped
    (what a retrieval model's export holds) is found, and `snpbag info` says yes."""
    from snpbag.retrieval.genomes import NeighbourPanel

    d, store = exported
    with_panel = tmp_path / "model"
    shutil.copytree(d / "model", with_panel)
    st = open_store(str(store))
    NeighbourPanel.from_store(st, np.arange(st.n_samples), k=3, span=16).save(with_panel / modeldir.panel_file("genomes"))
    found = genotype_like(with_panel, *_counts(store))
    assert found and all(f.startswith(modeldir.panel_file("genomes")) for f in found)
    assert f"contains genotypes  yes ({st.n_samples:,} panel genomes in neighbours.npz" in modeldir.describe(with_panel)


@pytest.mark.parametrize("head", sorted(h for h in HEADS if not HEADS[h].needs_panel))
def test_every_head_writes_a_panel_free_directory(exported, tmp_path, head):
    d, store = exported
    vocab = modeldir.load_vocab(d / "model")
    cfg = preset("tiny", n_sites=vocab.n_sites, retrieval="none")
    out = modeldir.write(tmp_path / head, model=build_model(cfg, head, site_af=vocab.af), vocab=vocab,
                         training={}, provenance={})
    assert genotype_like(out, *_counts(store)) == []
    assert "contains genotypes  no" in modeldir.describe(out)
