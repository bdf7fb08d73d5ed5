"""The phasing head (task=phase) and ``snpbag phase --model`` with it.

The head predicts, per heterozygous site, P(ALT on the previous het's ALT haplotype) as a
correction of the copying model's log-odds (snpbag.model.heads.phase); the conversions
between phased haplotypes and that quantity live in snpbag.retrieval.relphase.
"""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from snpbag import modeldir
from snpbag.cli import main
from snpbag.config import ModelConfig, preset
from snpbag.data.batch import collate
from snpbag.errors import ConfigError
from snpbag.inference.phasehead import held_out_losses
from snpbag.model.builders import build_model
from snpbag.retrieval import relphase
from snpbag.retrieval.haplotypes import HaplotypePanel
from snpbag.train.run import train
from test_phase import mosaics, switch_errors
from tiny_data import TINY_TRAIN, tiny_store

RETRIEVAL = ["model.retrieval=haplotypes", "model.retrieval_k=8", "model.retrieval_span=32",
             "data.augment.panel_size=8"]


def cli(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _tiny_phase_config() -> ModelConfig:
    from dataclasses import replace

    return replace(preset("tiny"), n_layers=1, d_model=32, n_heads=2, window=32, block_size=32, n_sites=400,
                   retrieval="haplotypes", retrieval_k=8, retrieval_span=32)


def test_relative_phase_decodes_back_to_the_haplotypes():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, (200, 2)).astype(np.int8)
    same = relphase.same_as_previous(truth)
    het = truth[:, 0] != truth[:, 1]
    assert np.isnan(same[~het]).all() and same[np.flatnonzero(het)[0]] == relphase.FIRST
    scrambled = np.where(rng.random((200, 1)) < 0.5, truth, truth[:, ::-1])  # every het's order forgotten
    est, pp = relphase.decode(scrambled, same)
    assert (est == truth).all() or (est == truth[:, ::-1]).all()  # up to the first het's orientation
    assert np.isnan(pp[~het]).all() and (pp[het][1:] == 1).all()
    # a phased answer and its PP give back P(same): pp where it says same, 1 - pp where not
    pp_in = np.where(het, 0.8, np.nan).astype(np.float32)
    prior = relphase.prior_from_phased(truth, pp_in)
    later = het & ~np.isnan(same) & (same != relphase.FIRST)
    later[np.flatnonzero(het)[0]] = False
    assert np.allclose(prior[later], np.where(same[later] == 1, 0.8, 0.2))


def test_untrained_head_gives_the_copying_models_switch_probabilities_on_an_exact_pair():
    """A target that is an exact pair of unrelated panel haplotypes: the copying model is sure
    of every relative phase, and the untrained head (zero last layer) returns exactly its
    probabilities, which decode without a switch."""
    L = 400
    h = mosaics(60, L, seed=1, n_founders=60, switch_rate=0.0)
    panel = HaplotypePanel(h.reshape(30, 2, L).transpose(0, 2, 1), np.arange(L) * 1e-4)
    truth = np.stack([h[10], h[37]], -1)  # (L, 2)
    sites = np.arange(L)
    prior = relphase.copying_prior(panel, truth.sum(-1), sites)
    same = relphase.same_as_previous(truth)
    later = ~np.isnan(same)
    later[np.flatnonzero(later)[0]] = False
    assert later.sum() > 50
    assert (np.abs(prior[later] - same[later]) < 0.02).all()  # the right side, confidently
    model = build_model(_tiny_phase_config(), "phase").eval()
    tokens = truth.sum(-1)
    item = {"genotype": tokens, "site_index": sites, "position": 1000 + 100 * sites, "target": np.full(L, -100),
            "haplotypes": truth, "retrieval": panel.votes(tokens, sites), "phase_prior": prior,
            "tile": 0, "sample": 0, "offset": 0}
    with torch.no_grad():
        out = model(collate([item]))
    p = torch.sigmoid(out.logits[0]).numpy()
    assert np.allclose(p[later], np.clip(prior[later], 1e-4, 1 - 1e-4), atol=1e-5)
    est, pp = relphase.decode(np.sort(truth, -1), p)
    sw, pairs = switch_errors(truth[None], est[None])
    assert pairs > 50 and sw == 0 and (pp[later] > 0.98).all()
    assert out.loss is not None and out.loss < 0.05  # the true same/opposite, scored


def test_phase_head_needs_the_haplotype_copying_model():
    from dataclasses import replace

    with pytest.raises(ConfigError, match=r"model.retrieval=haplotypes and model.retrieval_k > 0"):
        build_model(replace(_tiny_phase_config(), retrieval="genomes"), "phase")


@pytest.fixture(scope="module")
def phase_model(tmp_path_factory):
    """A tiny phasing model trained on the tiny store (mosaics of its training samples), exported."""
    d = tmp_path_factory.mktemp("phase_head")
    store = tiny_store(d, n_samples=40, n_sites=400, missing_rate=0.0)
    run, model = d / "run", d / "model"
    train([f"data.store={store}", f"paths.run_dir={run}", "task=phase", *TINY_TRAIN, *RETRIEVAL,
           "trainer.max_steps=60", "trainer.val_check_interval=60", "callbacks.checkpoint.every_n_steps=60",
           "+task.head.options.prior=false"])
    cli("export", run, model)
    return store, model, d


def test_training_learns_and_the_model_directory_round_trips(phase_model):
    """Without the prior added to its logits the head starts at P = 0.5 (loss ln 2); a short run
    must bring the held-out loss well below that (it learns to read its inputs, the copying
    model's log-odds among them). Loading the model directory gives the same network."""
    store, model, _ = phase_model
    loaded = modeldir.read(model)
    assert loaded.model.head_name == "phase" and loaded.model.head.options == {"prior": False}
    assert isinstance(loaded.retrieval_panel, HaplotypePanel)
    losses = held_out_losses(loaded, store, seed=3)
    assert losses["n"] > 100
    assert losses["model"] < 0.5 * losses["half"], losses
    again = modeldir.read(model)
    for (k, a), (_, b) in zip(loaded.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k


def _unphased_copy(src, dst):
    lines = []
    for line in src.read_text().splitlines():
        if not line.startswith("#"):
            f = line.split("\t")
            f[9:] = ["/".join(sorted(g.split("|"))) if "|" in g else g for g in f[9:]]
            line = "\t".join(f)
        lines.append(line)
    dst.write_text("\n".join(lines) + "\n")
    return dst


def _records(path):
    with gzip.open(path, "rt") as fh:
        return [ln.rstrip("\n").split("\t") for ln in fh if not ln.startswith("##")]


def test_phase_command_with_a_phasing_model(phase_model, tmp_path):
    store, model, d = phase_model
    given = _unphased_copy(d / "tiny.vcf", tmp_path / "unphased.vcf")
    head, copying = tmp_path / "head.vcf.gz", tmp_path / "copying.vcf.gz"
    result = cli("phase", "--model", model, "--input", given, "--output", head, "--threads", 1)
    assert "and its phasing head" in result.output
    cli("phase", "--model", model, "--copying-only", "--input", given, "--output", copying, "--threads", 1)
    a, b, inp = _records(head), _records(copying), [ln.split("\t") for ln in given.read_text().splitlines()
                                                   if not ln.startswith("##")]
    assert len(a) == len(b) == len(inp) and a[0] == inp[0]
    n_het = 0
    for ra, rb, ri in zip(a[1:], b[1:], inp[1:]):
        assert ra[:9] == rb[:9] and ra[:8] == ri[:8]  # same records, same FORMAT as the copying path
        for fa, fi in zip(ra[9:], ri[9:]):
            gt, *rest = fa.split(":")
            if ra[8] == "GT:PP:IMP":
                assert "|" in gt and sorted(gt.split("|")) == fi.split("/")  # typed genotypes only reordered
                if gt[0] != gt[2] and rest[0] != ".":
                    assert 0.5 <= float(rest[0]) <= 1
                    n_het += 1
            else:
                assert fa == fi
    assert n_het > 100
    batched = tmp_path / "batched.vcf.gz"  # a batch of samples at a time: the same output
    cli("phase", "--model", model, "--input", given, "--output", batched, "--threads", 1, "--batch-size", 3)
    assert _records(batched) == a


def test_phase_refuses_a_model_without_a_phasing_head(phase_model, tmp_path):
    store, model, d = phase_model
    other = tmp_path / "genotype_model"
    shutil.copytree(model, other)
    meta = modeldir.read_meta(other)
    meta["head"] = {"name": "genotype", "options": {}}
    (other / modeldir.CONFIG_FILE).write_text(__import__("json").dumps(meta))
    given = _unphased_copy(d / "tiny.vcf", tmp_path / "unphased.vcf")
    out = tmp_path / "p.vcf.gz"
    result = cli("phase", "--model", other, "--input", given, "--output", out, ok=False)
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "not a phasing model; train one with `snpbag train task=phase" in result.output
    assert "--copying-only" in result.output and not out.exists()
    result = cli("phase", "--copying-only", "--input", given, "--output", out, ok=False)
    assert result.exit_code != 0 and "--copying-only needs --model" in result.output and not out.exists()
