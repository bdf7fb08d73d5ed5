"""Training: exact resume, pinned per-step losses, metrics against a naive reference,
optimiser groups, the run directory, export / info / load_model, init_from.

Pinned losses (tests/assets/losses/tiny.json) regenerate with
    SNPBAG_REGEN_LOSSES=1 .venv/bin/pytest -q tests/test_train.py -k pinned
after a deliberate change to the model, data pipeline or optimiser (say why in the commit).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from snpbag.errors import CheckpointError, ConfigError, InputError, SiteMismatchError
from tiny_data import tiny_store

torch.set_num_threads(1)

ASSETS = Path(__file__).parent / "assets" / "losses"
STEPS = 20  # the full run; the split run stops at STEPS // 2 and resumes

# tiny model, tiny data; every step logged; validation + checkpoints every 5 steps
COMMON = [
    "trainer=cpu", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1", "trainer.val_check_interval=5",
    "model=tiny", "model.n_layers=2", "model.d_model=32", "model.n_heads=2", "model.window=32", "model.block_size=32",
    "data.seq_len=64", "data.batch_size=4", "data.buffer_size=8", "data.block_samples=16",
    "logger=none", "callbacks.checkpoint.every_n_steps=5", "callbacks.checkpoint.save_top_k=1",
    "scheduler.warmup_steps=3", f"scheduler.total_steps={STEPS}", "optim.lr=3e-3", "seed=7",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("tiny"))


def _train(store: Path, run_dir: Path, *extra: str) -> Path:
    from snpbag.train.run import train

    return train([f"data.store={store}", f"paths.run_dir={run_dir}", *COMMON, *extra])


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    from snpbag.train import rundir

    with open(rundir.metrics_csv(run_dir), newline="") as f:
        return list(csv.DictReader(f))


def _losses(run_dir: Path) -> dict[int, float]:
    """train/loss by optimizer step (Lightning logs step s after s optimizer updates)."""
    return {int(r["step"]): float(r["train/loss"]) for r in _metrics(run_dir) if r.get("train/loss")}


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def full_run(store, tmp_path_factory) -> Path:
    return _train(store, tmp_path_factory.mktemp("runs") / "full", f"trainer.max_steps={STEPS}")


# --- resume --------------------------------------------------------------------------------


def test_resume_continues_exactly(store, full_run, tmp_path):
    """STEPS straight vs STEPS/2 + resume for STEPS/2 more (resumed mid-epoch: an epoch is
    14 batches): identical weights, optimiser state and per-step losses."""
    split = tmp_path / "split"
    _train(store, split, f"trainer.max_steps={STEPS // 2}")
    with pytest.raises(ConfigError, match="resume=true"):
        _train(store, split, f"trainer.max_steps={STEPS}")
    _train(store, split, f"trainer.max_steps={STEPS}", "resume=true")

    a = torch.load(full_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    la, lb = _losses(full_run), _losses(split)
    assert sorted(la) == sorted(lb) and len(la) == STEPS
    assert all(la[s] == lb[s] for s in la)
    sessions = json.loads((split / "provenance.json").read_text())["sessions"]
    assert len(sessions) == 2 and sessions[1]["parameters"]["resumed_from"].endswith("last.ckpt")


def test_pinned_losses(full_run):
    """Per-step training losses of the tiny run against stored values (torchtitan-style):
    catches unintended changes to the model, data pipeline, masking or optimiser."""
    losses = _losses(full_run)
    got = [losses[s] for s in sorted(losses)]
    path = ASSETS / "tiny.json"
    if os.environ.get("SNPBAG_REGEN_LOSSES") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"overrides": COMMON, "steps": STEPS, "losses": got}, indent=1) + "\n")
        pytest.skip(f"regenerated {path}")
    pinned = json.loads(path.read_text())
    assert pinned["overrides"] == COMMON, "test settings changed: regenerate (see module docstring)"
    np.testing.assert_allclose(got, pinned["losses"], rtol=0, atol=2e-4)


# --- what a run writes ----------------------------------------------------------------------


def test_run_dir_contents(full_run, store):
    """The run directory's documented names (docs/training.md) spelled out, so renaming one in
    snpbag.train.rundir fails here until the docs follow."""
    import yaml

    cfg = yaml.safe_load((full_run / "config.yaml").read_text())
    assert cfg["data"]["store"] == str(store) and cfg["trainer"]["max_steps"] == STEPS
    prov = json.loads((full_run / "provenance.json").read_text())["sessions"][0]
    assert prov["command"] == "snpbag train" and "torch" in prov["versions"] and "git_revision" in prov
    assert (full_run / "vocab" / "sites.npz").is_file()
    ckpts = sorted(p.name for p in (full_run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(n.startswith("step=") and "val_loss=" in n for n in ckpts)
    rows = _metrics(full_run)
    keys = set().union(*(k for r in rows for k in [r.keys()] if any(r.values())))
    for k in ("train/loss", "train/acc", "train/base_acc", "train/grad_norm", "val/loss", "val/acc",
              "val/base_acc", "val/acc_gain", "val/acc_het", "val/base_acc_hom_alt", "val/acc_maf_0.2-0.5",
              "perf/tokens_per_s", "perf/samples_per_s", "perf/peak_mem_gib"):
        assert k in keys, k
    val = [r for r in rows if r.get("val/acc")]
    assert len(val) == STEPS // 5
    for r in val:
        assert math.isclose(float(r["val/acc_gain"]), float(r["val/acc"]) - float(r["val/base_acc"]), abs_tol=1e-6)
        assert 0 < float(r["perf/peak_mem_gib"] or 1) and float(r["val/n_scored"]) > 0


def test_resume_false_on_a_used_run_dir_is_refused(store, full_run):
    with pytest.raises(ConfigError, match=r"already holds checkpoints; pass resume=true"):
        _train(store, full_run, f"trainer.max_steps={STEPS}")


# --- metrics against a naive reference --------------------------------------------------------


def test_genotype_accuracy_matches_naive_reference():
    from snpbag.data.tokens import IGNORE_INDEX
    from snpbag.eval import MAF_BINS
    from snpbag.train.metrics import GenotypeAccuracy, maf_bin_labels

    rng = np.random.default_rng(3)
    n_sites, B, L = 50, 6, 40
    af = rng.uniform(0.001, 0.999, n_sites).astype(np.float32)
    m = GenotypeAccuracy(af)
    all_logits, all_target, all_sites = [], [], []
    for _ in range(3):
        logits = torch.randn(B, L, 3)
        target = torch.from_numpy(rng.integers(0, 3, (B, L)))
        target[torch.rand(B, L) < 0.3] = IGNORE_INDEX
        sites = torch.from_numpy(rng.integers(0, n_sites, (B, L)))
        m.update(logits, target, sites)
        all_logits.append(logits), all_target.append(target), all_sites.append(sites)
    got = {k: float(v) for k, v in m.compute().items()}

    logits = torch.cat(all_logits).reshape(-1, 3).numpy()
    y = torch.cat(all_target).reshape(-1).numpy()
    s = torch.cat(all_sites).reshape(-1).numpy()
    keep = y != IGNORE_INDEX
    logits, y, s = logits[keep], y[keep], s[keep]
    pred = logits.argmax(1)
    p = af[s].astype(np.float64)
    base = np.array([int(np.argmax([(1 - q) ** 2, 2 * q * (1 - q), q * q])) for q in p])
    maf = np.minimum(p, 1 - p)
    assert got["acc"] == pytest.approx((pred == y).mean(), abs=1e-6)
    assert got["base_acc"] == pytest.approx((base == y).mean(), abs=1e-6)
    assert got["n_scored"] == keep.sum()
    nll = -np.log(np.stack([(1 - p) ** 2, 2 * p * (1 - p), p * p], 1)[np.arange(len(y)), y])
    assert got["base_loss"] == pytest.approx(nll.mean(), rel=1e-5)
    for c, name in enumerate(("hom_ref", "het", "hom_alt")):
        assert got[f"acc_{name}"] == pytest.approx((pred[y == c] == c).mean(), abs=1e-6)
        assert got[f"base_acc_{name}"] == pytest.approx((base[y == c] == c).mean(), abs=1e-6)
    labels = maf_bin_labels()
    for i, (lo, hi) in enumerate(zip(MAF_BINS[:-1], MAF_BINS[1:])):
        sel = (maf >= lo) & ((maf < hi) if hi < MAF_BINS[-1] else (maf <= hi))
        key = f"acc_maf_{labels[i]}"
        if sel.any():
            assert got[key] == pytest.approx((pred[sel] == y[sel]).mean(), abs=1e-6), key
        else:
            assert key not in got
    low = maf < MAF_BINS[0]
    assert got["acc_maf_<0.01"] == pytest.approx((pred[low] == y[low]).mean(), abs=1e-6)


def test_param_groups_and_schedule():
    from torch import nn

    from snpbag.train.lit_module import WarmupCosine, param_groups

    model = nn.ModuleDict({"embed": nn.Embedding(10, 4), "proj": nn.Linear(4, 4), "norm": nn.LayerNorm(4)})
    decay, no_decay = param_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model["proj"].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model["embed"].weight), id(model["proj"].bias),
                                                   id(model["norm"].weight), id(model["norm"].bias)}
    f = WarmupCosine(warmup=4, total=14, min_ratio=0.1)
    assert f(0) == pytest.approx(1 / 5) and f(3) == pytest.approx(4 / 5) and f(4) == pytest.approx(1.0)
    assert f(9) == pytest.approx(0.55) and f(14) == pytest.approx(0.1) and f(100) == pytest.approx(0.1)
    assert WarmupCosine(warmup=0, total=10, min_ratio=0.1, cosine=False)(7) == 1.0


# --- export, info, load_model, init_from -------------------------------------------------------


@pytest.fixture(scope="module")
def exported(full_run, tmp_path_factory) -> Path:
    from snpbag.train.export import export

    return export(full_run, tmp_path_factory.mktemp("models") / "tiny")


def test_export_is_self_contained(exported, full_run, store):
    from snpbag.api import load_model
    from snpbag.store.genotypes import open_store
    from snpbag.train.rundir import select_checkpoint

    best = select_checkpoint(full_run)
    assert best.name.startswith("step=")
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        ["model.json", "model.safetensors", "provenance.json", "sites.npz", "training.json", "vocab.json"])
    loaded = load_model(exported)
    state = _weights(best)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, state[f"model.{k}"]), k
    assert loaded.vocab == open_store(store).vocab
    training = loaded.training
    assert training["global_step"] == int(best.name.split("-")[0].split("=")[1])
    assert training["val_metrics"]["val/loss"] == pytest.approx(float(best.stem.split("=")[-1]), abs=1e-4)
    assert training["data"]["store"] == str(store) and training["provenance"][0]["command"] == "snpbag train"


def test_info_describes_the_model(exported):
    from snpbag.api import info, load_model

    text = info(exported)
    model = load_model(exported)
    n_params = sum(p.numel() for p in model.model.parameters())
    assert f"{n_params:,}" in text
    assert f"{model.vocab.n_sites:,} biallelic SNPs" in text and "chromosomes  22" in text
    assert "allele-frequency baseline" in text and re.search(r"^preset +tiny$", text, re.M)
    assert re.search(r"^contains genotypes +no: ", text, re.M)
    assert "git" in text and "torch" in text


def test_export_errors(exported, full_run, tmp_path):
    from snpbag.api import info
    from snpbag.train.export import export

    with pytest.raises(InputError, match="already exists"):
        export(full_run, exported)
    with pytest.raises(CheckpointError, match="no such checkpoint file or run directory"):
        export(tmp_path / "nope", tmp_path / "out")
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        export(bad, tmp_path / "out")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint written by `snpbag train`"):
        export(foreign, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match="not a model directory"):
        info(tmp_path)


def test_init_from_loads_encoder_and_checks_sites(exported, store, tmp_path):
    from snpbag.api import load_model
    from snpbag.store.genotypes import open_store
    from snpbag.train.run import compose_config, model_for_run, to_train_config

    cfg = to_train_config(compose_config([f"data.store={store}", *COMMON, f"task.init_from={exported}",
                                          "model.backend=dense"]))
    model = model_for_run(cfg, open_store(store).vocab)
    ref = load_model(exported).model
    assert model.config.backend == "dense"  # runtime fields follow the new config
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k

    other = tiny_store(tmp_path / "other", seed=5, n_sites=250)
    cfg = to_train_config(compose_config([f"data.store={other}", *COMMON, f"task.init_from={exported}"]))
    with pytest.raises(SiteMismatchError, match="sites differ from those of task.init_from"):
        model_for_run(cfg, open_store(other).vocab)


def test_wandb_run_id_is_persisted(tmp_path, monkeypatch, store):
    """Offline W&B logger keeps its run id in the run directory, so a resumed run continues
    the same W&B run (the logger is lazy: nothing is started here)."""
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    from snpbag.train.run import build_loggers, compose_config, to_train_config

    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = to_train_config(compose_config([f"data.store={store}", "logger=default"]))
    first = [lg for lg in build_loggers(cfg, tmp_path, {}) if isinstance(lg, WandbLogger)]
    again = [lg for lg in build_loggers(cfg, tmp_path, {}) if isinstance(lg, WandbLogger)]
    assert len(first) == len(again) == 1
    run_id = (tmp_path / "wandb_id").read_text().strip()
    assert first[0]._wandb_init["id"] == again[0]._wandb_init["id"] == run_id
    assert first[0]._wandb_init["mode"] == "offline"
    assert "anonymous" not in first[0]._wandb_init  # wandb warns on every run when it is passed, even as None
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert not [lg for lg in build_loggers(cfg, tmp_path, {}) if isinstance(lg, WandbLogger)]


def test_init_from_with_another_head_keeps_the_encoder(exported, store, monkeypatch):
    """A task whose head differs from the saved one: encoder weights loaded, head fresh."""
    from snpbag.api import load_model
    from snpbag.store.genotypes import open_store
    from snpbag.model.heads import HEADS, MaskedGenotypeHead
    from snpbag.train.run import compose_config, model_for_run, to_train_config

    class OtherHead(MaskedGenotypeHead):
        name = "other_test_head"

    monkeypatch.setitem(HEADS, OtherHead.name, OtherHead)
    cfg = to_train_config(compose_config([f"data.store={store}", *COMMON, f"task.init_from={exported}",
                                          f"task.head.name={OtherHead.name}"]))
    model = model_for_run(cfg, open_store(store).vocab)
    ref = load_model(exported).model
    assert model.head_name == OtherHead.name
    for k, v in ref.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    assert not all(torch.equal(a, b) for a, b in zip(model.head.state_dict().values(), ref.head.state_dict().values()))
