"""Seq2KING token inputs beyond the original: genome embeddings of ``snpbag embed`` as tokens
(features=embedding; new individuals placed without retraining, matched by sample id), and
the original's positions read-out with position encodings."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seq2king_data import synthetic, write_kin0, write_labels
from snpbag.cli import main
from snpbag.errors import ConfigError
from snpbag.inference.embedout import EmbeddingWriter, Patches
from snpbag.kinship.seq2king.config import make_config

pytest.importorskip("scipy")


def write_embeddings(path: Path, ids, x: np.ndarray, *, model: str = "m1") -> Path:
    """A pooled embeddings file (`snpbag embed --pool mean` layout) of ``x`` (n, dims)."""
    patches = Patches(np.array(["1"]), np.array([1]), np.array([50]), np.array([10]), np.array([10]), np.zeros(1, bool))
    w = EmbeddingWriter(path, "zarr", samples=list(ids), patches=patches, dims=x.shape[1], dtype="f32", pool="mean",
                        attrs={"model": {"name": model, "weights_sha256": model * 8, "vocab_sha256": "v"}})
    w.write(0, len(ids), x.astype(np.float32))
    w.close()
    return path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _one_line_error(args, match):
    r = _run(*args)
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and re.search(match, lines[0]), r.output


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("s2k_tokens")
    ids, k, cont, pop = synthetic(10)
    rng = np.random.default_rng(1)
    # a genome embedding that carries the population structure (as a trained embedding head does)
    centre = {p: rng.normal(size=12) for p in np.unique(pop)}
    x = np.stack([centre[p] for p in pop]) + rng.normal(0, 0.3, (len(ids), 12))
    keep = np.arange(len(ids)) % 6 != 5  # one in six individuals is new to the model
    return {"dir": d, "ids": ids, "x": x, "full": write_kin0(d / "all.kin0", ids, k),
            "part": write_kin0(d / "part.kin0", ids[keep], k[np.ix_(keep, keep)]),
            "labels": write_labels(d / "labels.tsv", ids, cont, pop),
            "emb": write_embeddings(d / "emb.zarr", ids, x)}


@pytest.fixture(scope="module")
def embedding_model(cohort):
    model = cohort["dir"] / "model_emb"
    r = _run("seq2king", "train", "--kinship", cohort["part"], "--out", model, "--preset", "small", "--tokens",
             "features", "--embeddings", cohort["emb"], "features=embedding", "steps=200")
    assert r.exit_code == 0, r.output
    return model


def test_embedding_tokens_learn_and_place_new_people_without_retraining(cohort, embedding_model):
    meta = json.loads((embedding_model / "seq2king.json").read_text())
    assert meta["embedding"]["dim"] == 12 and meta["embedding"]["model"]["name"] == "m1"
    assert len(meta["ids"]) == 50  # trained on the 50 individuals of part.kin0
    # standardised with the training individuals only: the held-out ones do not move the mean
    train_rows = [list(cohort["ids"]).index(s) for s in meta["training"]]
    assert np.allclose(meta["embedding"]["mean"], cohort["x"][train_rows].mean(axis=0))
    record = meta["record"]
    assert record["held_out_loss"] < 0.5 * record["held_out_constant_loss"]  # structure, not the mean
    out = cohort["dir"] / "report_emb"
    r = _run("seq2king", "report", "--model", embedding_model, "--kinship", cohort["full"], "--labels", cohort["labels"],
             "--out", out, "--embeddings", cohort["emb"], "--sentences", 6, "--sentence-len", 12, "--permutations", 20)
    assert r.exit_code == 0, r.output
    info = json.loads((out / "summary.json").read_text())
    assert info["tokens"] == "features (embedding)" and info["embeddings"] == str(cohort["emb"])
    assert info["new_individuals"] == 10  # in neither part.kin0 nor training: placed from their embedding


def test_embeddings_missing_an_individual(cohort, tmp_path):
    short = write_embeddings(tmp_path / "short.zarr", cohort["ids"][:-2], cohort["x"][:-2])
    _one_line_error(["seq2king", "train", "--kinship", cohort["full"], "--out", tmp_path / "m", "--preset", "small",
                     "--embeddings", short, "features=embedding", "steps=2"],
                    r"short\.zarr: 2 of 60 individuals of the kinship input have no embedding \(first: 'S058'\)")
    assert not (tmp_path / "m").exists()


def test_embedding_settings_that_do_not_fit(cohort, embedding_model, tmp_path):
    with pytest.raises(ConfigError, match="features='genome'"):
        make_config("small", ["features=genome"])
    _one_line_error(["seq2king", "train", "--kinship", cohort["part"], "--out", tmp_path / "m", "--preset", "small",
                     "--tokens", "features", "features=embedding"], r"features=embedding needs --embeddings")
    _one_line_error(["seq2king", "train", "--kinship", cohort["part"], "--out", tmp_path / "m", "--preset", "small",
                     "--embeddings", cohort["emb"]], r"emb\.zarr: the model's tokens are features/anchors; add .*features=embedding")
    report = ["seq2king", "report", "--model", embedding_model, "--kinship", cohort["full"], "--labels",
              cohort["labels"], "--out", tmp_path / "r"]
    _one_line_error(report, r"its tokens are genome embeddings .*pass --embeddings")
    other = write_embeddings(tmp_path / "other.zarr", cohort["ids"], cohort["x"], model="m2")
    _one_line_error(report + ["--embeddings", other], r"other\.zarr: written by another embedding model")
    _one_line_error(["seq2king", "report", "--model", embedding_model, "--kinship", cohort["full"], "--labels",
                     cohort["labels"], "--out", tmp_path / "r", "--embeddings", "nowhere.zarr"],
                    r"nowhere\.zarr: no such embeddings file")
    assert not (tmp_path / "r").exists()


def test_embedding_reader_never_reads_labels():
    from snpbag.inference import seq2king

    tree = ast.parse(Path(seq2king.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, (ast.ImportFrom, ast.Import)) for a in n.names}
    assert not names & {"read_labels", "Labels"}


# --- the original's read-out: a token onto positions, position encodings ----------------------


def test_positions_readout_needs_attention_to_know_who_sits_where():
    import torch

    from snpbag.kinship.seq2king.model import Seq2King

    cfg = make_config("small", {"tokens": "id", "readout": "positions", "positional": True})
    model = Seq2King(cfg, n_individuals=30, n_inputs=16).eval()
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True
    tok = torch.randint(0, 30, (2, 9))
    pred, attn, _ = model(tok, pad, return_attn=True)
    assert pred.shape == (2, 9, 9)
    for w in attn.values():
        assert torch.allclose(w.sum(-1), torch.ones(2, 2, 9), atol=1e-5)
    # entry (i, j) depends on who sits at j only through attention: cut it and the row no longer changes
    swapped = tok.clone()
    swapped[0, 4] = (tok[0, 4] + 1) % 30
    assert not torch.allclose(model(swapped, pad)[0, 0], pred[0, 0])
    with torch.no_grad():
        for blk in [*model.encoder, *model.decoder]:
            for att in (blk.self_attn, blk.cross_attn):
                if att is not None:
                    att.v.weight.zero_()
                    att.v.bias.zero_()
        cut = model(tok, pad)
    assert torch.allclose(model(swapped, pad)[0, 0], cut[0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="max_len=24"):
        model(torch.zeros(1, 25, dtype=torch.long), torch.zeros(1, 25, dtype=torch.bool))
    with pytest.raises(ConfigError, match="expected true or false"):
        make_config("small", ["positional=yes"])
