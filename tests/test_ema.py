"""Weight average (optim.ema_decay, snpbag.train.ema): exact update rule, swap in and out,
checkpoint round trip, exact resume, validation and export with the average."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from snpbag.errors import CheckpointError, ConfigError
from snpbag.train.ema import CHECKPOINT_KEY, WeightAverage, apply_checkpoint_average, ema_factor
from tiny_data import tiny_store

torch.set_num_threads(1)

STEPS = 10
COMMON = [
    "trainer=cpu", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1", "trainer.val_check_interval=5",
    "model=tiny", "model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.window=32", "model.block_size=32",
    "data.seq_len=64", "data.batch_size=4", "data.buffer_size=8", "data.block_samples=16",
    "logger=none", "callbacks.checkpoint.every_n_steps=5", "callbacks.checkpoint.save_top_k=1",
    "scheduler.warmup_steps=3", f"scheduler.total_steps={STEPS}", "optim.lr=3e-3", "seed=3",
    "optim.ema_decay=0.9",
]


def test_update_rule_is_exact():
    lin = nn.Linear(2, 1)
    frozen = nn.Parameter(torch.ones(1), requires_grad=False)
    lin.register_parameter("frozen", frozen)
    ema = WeightAverage(lin, decay=0.5)
    assert set(ema.shadow) == {"weight", "bias"}  # frozen parameters are not averaged
    w0 = lin.weight.detach().clone()
    expected = w0.clone()
    for step in range(1, 6):
        with torch.no_grad():
            lin.weight.add_(1.0)
        ema.update(lin)
        d = ema_factor(0.5, step)
        expected = d * expected + (1 - d) * lin.weight.detach()
        assert torch.allclose(ema.shadow["weight"], expected, atol=0, rtol=1e-6)
    # bias-corrected: the first update copies the weights, later ones tend to the decay
    assert ema_factor(0.9, 1) == 0.0 and ema_factor(0.5, 2) == pytest.approx(1 / 3)
    assert ema_factor(0.5, 100) == pytest.approx(0.5)


def test_average_is_the_normalised_geometric_sum():
    """After n updates the average is sum_k d**(n-k) w_k / sum_k d**(n-k) (reference formula)."""
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)
    d, ws = 0.8, []
    ema = WeightAverage(lin, decay=d)
    for _ in range(7):
        with torch.no_grad():
            lin.weight.copy_(torch.randn(3, 4))
        ws.append(lin.weight.detach().double().clone())
        ema.update(lin)
    n = len(ws)
    coef = [d ** (n - 1 - k) for k in range(n)]
    ref = sum(c * w for c, w in zip(coef, ws)) / sum(coef)
    assert torch.allclose(ema.shadow["weight"].double(), ref, atol=1e-6)


def test_applied_swaps_and_restores_exactly():
    lin = nn.Linear(3, 2)
    ema = WeightAverage(lin, decay=0.9)
    live = {k: v.detach().clone() for k, v in lin.named_parameters()}
    ema.shadow = {k: torch.full_like(v, 7.0) for k, v in ema.shadow.items()}
    with ema.applied(lin):
        assert all(torch.equal(p, torch.full_like(p, 7.0)) for p in lin.parameters())
    for k, p in lin.named_parameters():
        assert torch.equal(p, live[k])
    with pytest.raises(RuntimeError, match="boom"), ema.applied(lin):
        raise RuntimeError("boom")
    for k, p in lin.named_parameters():  # restored after an exception too
        assert torch.equal(p, live[k])


def test_state_dict_round_trip_and_errors():
    lin = nn.Linear(3, 2)
    a = WeightAverage(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.mul_(2)
    a.update(lin)
    b = WeightAverage(nn.Linear(3, 2), decay=0.9)
    b.load_state_dict(a.state_dict())
    assert b.updates == 1 and all(torch.equal(a.shadow[k], b.shadow[k]) for k in a.shadow)
    with pytest.raises(CheckpointError, match="do not match"):
        WeightAverage(nn.Linear(3, 2, bias=False), decay=0.9).load_state_dict(a.state_dict())
    with pytest.raises(ConfigError, match="ema_decay"):
        WeightAverage(lin, decay=1.0)


def test_config_rejects_bad_decay():
    from snpbag.config import OptimConfig

    assert OptimConfig().ema_decay == 0.0
    with pytest.raises(ConfigError, match="optim.ema_decay=1.5"):
        OptimConfig(ema_decay=1.5)


# --- in training ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("tiny_ema"))


def _train(store: Path, run_dir: Path, *extra: str, ema: str = "optim.ema_decay=0.9") -> Path:
    from snpbag.train.run import train

    common = [o for o in COMMON if not o.startswith("optim.ema_decay=")] + [ema]
    return train([f"data.store={store}", f"paths.run_dir={run_dir}", *common, *extra])


def _last(run_dir: Path) -> Path:
    from snpbag.train import rundir

    return rundir.checkpoints_dir(run_dir) / rundir.LAST_CKPT


def _ckpt(run_dir: Path) -> dict:
    return torch.load(_last(run_dir), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def ema_run(store, tmp_path_factory) -> Path:
    return _train(store, tmp_path_factory.mktemp("ema") / "full", f"trainer.max_steps={STEPS}")


def test_checkpoint_keeps_live_weights_and_the_average(ema_run):
    ck = _ckpt(ema_run)
    ema = ck[CHECKPOINT_KEY]
    assert ema["updates"] == STEPS and ema["decay"] == 0.9
    trainable = [k for k in ck["state_dict"] if k.startswith("model.") and "site_af" not in k]
    assert sorted(ema["shadow"]) == sorted(trainable)
    # the average lags the live weights
    assert any(not torch.equal(ema["shadow"][k], ck["state_dict"][k]) for k in trainable)


def test_resume_restores_the_average_exactly(store, ema_run, tmp_path):
    split = tmp_path / "split"
    _train(store, split, f"trainer.max_steps={STEPS // 2}")
    assert _ckpt(split)[CHECKPOINT_KEY]["updates"] == STEPS // 2
    _train(store, split, f"trainer.max_steps={STEPS}", "resume=true")
    a, b = _ckpt(ema_run), _ckpt(split)
    assert b[CHECKPOINT_KEY]["updates"] == STEPS
    for k, v in a[CHECKPOINT_KEY]["shadow"].items():
        assert torch.equal(v, b[CHECKPOINT_KEY]["shadow"][k]), k
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_validation_and_export_use_the_average(store, ema_run, tmp_path):
    """val/loss logged at the last step is the loss of the averaged weights, and the exported
    model holds exactly those weights."""
    import csv

    from snpbag.api import load_model
    from snpbag.train.export import export, load_checkpoint, model_from_checkpoint

    ck = _ckpt(ema_run)
    out = export(_last(ema_run), tmp_path / "model")
    loaded = load_model(out).model
    shadow = ck[CHECKPOINT_KEY]["shadow"]
    for k, v in loaded.named_parameters():
        assert torch.equal(v, shadow[f"model.{k}"]), k
    for k, v in loaded.named_buffers():
        if f"model.{k}" in ck["state_dict"]:
            assert torch.equal(v, ck["state_dict"][f"model.{k}"]), k

    # the logged validation loss at step STEPS, recomputed with the averaged model
    from snpbag.train.run import build_datamodule, compose_config, to_train_config

    cfg = to_train_config(compose_config([f"data.store={store}", f"paths.run_dir={ema_run}", *COMMON]))
    dm = build_datamodule(cfg)
    dm.setup("fit")
    total, n = 0.0, 0
    live = model_from_checkpoint({**load_checkpoint(_last(ema_run)), CHECKPOINT_KEY: None})
    with torch.no_grad():
        for batch in dm.val_dataloader():
            k = int((batch.target >= 0).sum())
            total += float(loaded(batch).loss) * k
            n += k
    from snpbag.train import rundir

    with open(rundir.metrics_csv(ema_run), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/loss")]
    assert len(rows) == 2 and float(rows[-1]["val/loss"]) == pytest.approx(total / n, rel=1e-5)
    # and it is not the live weights' loss
    with torch.no_grad():
        live_total = sum(float(live(b).loss) * int((b.target >= 0).sum()) for b in dm.val_dataloader())
    assert live_total / n != pytest.approx(total / n, rel=1e-5)


def test_apply_checkpoint_average_checks_names():
    lin = nn.Linear(2, 2)
    assert not apply_checkpoint_average(lin, {})
    with pytest.raises(CheckpointError, match="do not match"):
        apply_checkpoint_average(lin, {CHECKPOINT_KEY: {"shadow": {"model.weight": torch.zeros(2, 2)}}})


def test_resume_of_a_run_without_the_average_starts_one(store, tmp_path):
    """Turning optim.ema_decay on at a resume: the average starts from the resumed weights
    (its first update copies them), so after N more steps it has N updates."""
    run = tmp_path / "late"
    _train(store, run, f"trainer.max_steps={STEPS // 2}", ema="optim.ema_decay=0")
    assert CHECKPOINT_KEY not in _ckpt(run)
    _train(store, run, f"trainer.max_steps={STEPS}", "resume=true")
    ck = _ckpt(run)
    assert ck[CHECKPOINT_KEY]["updates"] == STEPS - STEPS // 2
