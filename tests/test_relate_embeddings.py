"""``snpbag relate`` from patch embeddings (``--inputs embeddings`` / ``both``): training on a pedigree's
``snpbag embed`` output learns, calling reads embeddings as --input (or beside genotypes), and
embeddings of another model, another site set, pooled ones or missing ones fail with one line."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snpbag.cli import main
from snpbag.errors import InputError
from snpbag.inference import relate as rel
from snpbag.inference.embed import embed
from snpbag.simulate import cohort as sm
from test_embed_head import EMBED_TRAIN
from test_relate import trained_and_blind_accuracy

torch.set_num_threads(1)
PATCH = 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A pedigree, a tiny embedding model trained on its store, the genomes' embeddings, and relate
    models trained on embeddings only and on both inputs."""
    from snpbag.store.convert import convert
    from snpbag.train.export import export
    from snpbag.train.run import train

    d = tmp_path_factory.mktemp("relate_emb")
    sm.simulate(d / "ped", length=300_000, pedigree=2, chromosomes=4, seed=11, founder_map="physical")
    convert(str(d / "ped" / "pedigree.vcf.gz"), str(d / "ped.zarr"))
    run = train([*EMBED_TRAIN, "trainer.max_steps=10", "trainer.val_check_interval=10", "task.freeze_encoder=false",
                 f"data.store={d / 'ped.zarr'}", f"paths.run_dir={d / 'run'}"])
    export(run, d / "embed_model")
    embed(model=d / "embed_model", input=d / "ped" / "pedigree.vcf.gz", output=d / "emb.zarr", progress=False)
    for inputs in ("embeddings", "both"):
        rel.train(pedigree=[d / "ped"], out=d / f"rel_{inputs}", max_degree=6, patch_sites=PATCH,
                  fit=rel.Fit(epochs=30, seed=0), options={"inputs": inputs}, embeddings=d / "emb.zarr",
                  segments=False)
    return d


def _table(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, x.split("\t"))) for x in lines[1:]]


def test_training_on_embeddings_learns(setup):
    net, meta = rel.load(setup / "rel_embeddings")
    assert meta["config"]["inputs"] == "embeddings" and meta["embeddings"]["model"]["name"] == "embed_model"
    data = rel.pedigree_pairs(setup / "ped", max_degree=6, patch_sites=PATCH, unrelated_per_related=1.0, seed=5,
                              embeddings=rel.read_embedding_input(setup / "emb.zarr"))
    acc, chance = trained_and_blind_accuracy(net, data, PATCH)
    mean = lambda a: np.mean([v["exact"] for v in a.values()])  # noqa: E731
    assert mean(acc) > mean(chance) + 0.1  # 0.39 against 0.14 measured


def test_embeddings_as_input_and_beside_genotypes_give_the_same_calls(setup, tmp_path):
    vcf, emb, model = setup / "ped" / "pedigree.vcf.gz", setup / "emb.zarr", setup / "rel_embeddings"
    r = CliRunner().invoke(main, ["relate", "--model", str(model), "--input", str(emb), "--out", str(tmp_path / "e")])
    assert r.exit_code == 0, r.output
    rel.relate(model=model, input=vcf, embeddings=emb, out=tmp_path / "g")
    only, beside = _table(tmp_path / "e.rel"), _table(tmp_path / "g.rel")
    n = 2 * 36
    assert len(only) == len(beside) == n * (n - 1) // 2
    assert {x["KINSHIP"] for x in only} == {"NA"} and all(x["KINSHIP"] != "NA" for x in beside)
    # the same classifier calls; parent–offspring vs full siblings from the genotypes' opposite homozygotes where
    # they are given (P_PO, and so the parents the relatives' bound starts from), the classifier's without
    probs = [c for c in only[0] if (c.startswith("P_") and c != "P_PO") or c in ("PAIR_DEGREE", "D2_TYPE", "EXP_KINSHIP")]
    assert [[x[c] for c in probs] for x in only] == [[x[c] for c in probs] for x in beside]
    first = [x for x in beside if x["PAIR_DEGREE"] == "1"]
    assert first and all((x["PO_FS"] == "PO") == (float(x["P_PO"]) >= 0.5) for x in first)
    assert any(a["P_PO"] != b["P_PO"] for a, b in zip(only, beside))
    # a model reading both: genotypes as --input, embeddings beside them
    rel.relate(model=setup / "rel_both", input=vcf, embeddings=emb, out=tmp_path / "b")
    assert len(_table(tmp_path / "b.rel")) == len(only)


def _vcf_without_last_chromosome(vcf: Path, out: Path) -> Path:
    lines = gzip.open(vcf, "rt").read().splitlines(keepends=True)
    chroms = list(dict.fromkeys(x.split("\t")[0] for x in lines if not x.startswith("#")))
    out.write_text("".join(x for x in lines if x.startswith("#") or x.split("\t")[0] != chroms[-1]))
    return out


def test_bad_embedding_inputs_fail_with_one_line(setup, tmp_path):
    vcf, emb = setup / "ped" / "pedigree.vcf.gz", setup / "emb.zarr"
    emb_model, both, = setup / "rel_embeddings", setup / "rel_both"
    # embeddings of another model: same shape, another weights digest
    other = tmp_path / "other.zarr"
    shutil.copytree(emb, other)
    meta = json.loads((other / "zarr.json").read_text())
    meta["attributes"]["model"].update(name="someone_else", weights_sha256="f" * 64)
    (other / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="made by model 'someone_else' .*trained on embeddings of model "
                                         "'embed_model'.*embed with that model"):
        rel.relate(model=emb_model, input=other, out=tmp_path / "o1")
    # the same model's embeddings of another site set (a chromosome fewer)
    fewer = _vcf_without_last_chromosome(vcf, tmp_path / "fewer.vcf")
    embed(model=setup / "embed_model", input=fewer, output=tmp_path / "fewer.zarr", progress=False)
    with pytest.raises(InputError, match="patches over other sites than the .* this relate model was trained on"):
        rel.relate(model=emb_model, input=tmp_path / "fewer.zarr", out=tmp_path / "o2")
    # pooled embeddings have no patches
    embed(model=setup / "embed_model", input=vcf, output=tmp_path / "pooled.zarr", pool="mean", progress=False)
    with pytest.raises(InputError, match="pooled over the genome .*--pool none"):
        rel.relate(model=emb_model, input=tmp_path / "pooled.zarr", out=tmp_path / "o3")
    # a model reading embeddings, given none; a counts-only question asked of embeddings
    with pytest.raises(InputError, match="reads patch embeddings \\(inputs=both\\); give --embeddings"):
        rel.relate(model=both, input=vcf, out=tmp_path / "o4")
    with pytest.raises(InputError, match="reads genotypes \\(inputs=both\\): give the VCF or store as --input and "
                                         "the embeddings as --embeddings"):
        rel.relate(model=both, input=emb, out=tmp_path / "o5")
    with pytest.raises(InputError, match="--min-kinship runs KING on genotypes, and --input is embeddings"):
        rel.relate(model=emb_model, input=emb, out=tmp_path / "o6", min_kinship=0.1)
    # genotypes of samples that were not embedded
    lines = gzip.open(vcf, "rt").read().splitlines(keepends=True)
    renamed = tmp_path / "renamed.vcf"
    renamed.write_text("".join(x.replace("F0002_P\t", "F0009_P\t") if x.startswith("#CHROM") else x for x in lines))
    with pytest.raises(InputError, match="sample 'F0009_P' of .*renamed.vcf is not embedded"):
        rel.relate(model=both, input=renamed, embeddings=emb, out=tmp_path / "o7")
    # training: embeddings for a counts model, none for an embeddings model
    with pytest.raises(InputError, match="--inputs counts: drop --embeddings"):
        rel.train(pedigree=[setup / "ped"], out=tmp_path / "m1", embeddings=emb)
    with pytest.raises(InputError, match="--inputs embeddings: give --embeddings"):
        rel.train(pedigree=[setup / "ped"], out=tmp_path / "m2", options={"inputs": "embeddings"})
    assert not list(tmp_path.glob("o*.rel*")) and not (tmp_path / "m1").exists()
    r = CliRunner().invoke(main, ["relate", "--model", str(both), "--input", str(vcf), "--out", str(tmp_path / "o8")])
    assert r.exit_code != 0 and "give --embeddings" in r.output and len(r.output.strip().splitlines()) == 1
