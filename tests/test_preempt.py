"""Pre-emption without a cluster: SIGUSR1 in a (faked) SLURM job saves at the next step
boundary, never inside the signal handler, stops, requeues through ``scontrol``; the resumed
run equals an uninterrupted one bit for bit; old pre-emption checkpoints are pruned.
The real-cluster versions are in tests/test_slurm.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning import Callback

from snpbag.errors import ConfigError, SiteMismatchError
from snpbag.train import rundir
from snpbag.train.callbacks import read_item_log
from tiny_data import TINY_TRAIN, tiny_store
from wandb_files import FakeWandbServer, wandb_history_steps

STEPS = 8


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """A one-task SLURM job environment and an ``scontrol`` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "scontrol.calls"
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    for k, v in {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "snpbag-test", "SLURM_NTASKS": "1", "SLURM_NNODES": "1",
                 "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                 "SLURM_NODELIST": "localhost"}.items():
        monkeypatch.setenv(k, v)
    return calls


class _SignalAt(Callback):
    """Sends SIGUSR1 to this process before the batch of optimiser step ``step + 1`` and
    records whether a checkpoint appeared while the handler ran."""

    def __init__(self, run_dir: Path, step: int) -> None:
        self.run_dir, self.step, self.written_in_handler = run_dir, step, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and self.written_in_handler is None:
            os.kill(os.getpid(), signal.SIGUSR1)  # Python runs the handler before kill returns here
            self.written_in_handler = any(self.run_dir.glob(f"{rundir.HPC_PREFIX}*"))


def _train(store: Path, run_dir: Path, *extra: str, signal_at: int | None = None, monkeypatch=None):
    from snpbag.train import run

    sig = None
    if signal_at is not None:
        sig = _SignalAt(run_dir, signal_at)
        build = run.build_callbacks
        monkeypatch.setattr(run, "build_callbacks", lambda cfg, rd: [*build(cfg, rd), sig])
    run.train([f"data.store={store}", f"paths.run_dir={run_dir}", *TINY_TRAIN, f"trainer.max_steps={STEPS}",
               "callbacks.item_log=true", *extra])
    if signal_at is not None:
        monkeypatch.setattr(run, "build_callbacks", build)
    return sig


def _losses(run_dir: Path) -> dict[int, float]:
    import csv

    with open(rundir.metrics_csv(run_dir), newline="") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


# stop at step 4; at step 3, also a periodic last.ckpt step; with 2 batches per optimiser step
# (the signal comes before the first of step 4's two batches, the save after the second)
@pytest.mark.parametrize("signal_at, accumulate", [(3, 1), (2, 1), (3, 2)])
def test_signal_saves_at_step_boundary_requeues_and_resumes_exactly(store, tmp_path, fake_slurm, monkeypatch,
                                                                    signal_at, accumulate):
    full, split = tmp_path / "full", tmp_path / "split"
    acc = f"trainer.accumulate_grad_batches={accumulate}"
    _train(store, full, acc)
    sig = _train(store, split, acc, signal_at=signal_at, monkeypatch=monkeypatch)
    assert sig.written_in_handler is False  # Lightning's handler would have saved right there
    hpc = sorted(split.glob(f"{rundir.HPC_PREFIX}*"))
    assert [p.name for p in hpc] == [f"{rundir.HPC_PREFIX}1{rundir.SUFFIX}"]
    assert torch.load(hpc[0], map_location="cpu", weights_only=True)["global_step"] == signal_at + 1  # next boundary
    assert fake_slurm.read_text().split() == ["requeue", "4242"]  # rank 0, after training stopped
    assert rundir.resume_checkpoint(split) == hpc[0]

    _train(store, split, acc, "resume=true")
    a = torch.load(full / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    b = torch.load(split / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert _losses(full) == _losses(split)
    # every item once, in the same steps: nothing skipped or seen twice across the restart
    assert sorted(read_item_log(rundir.items_log(full, 0))) == sorted(read_item_log(rundir.items_log(split, 0)))


def test_preemption_checkpoints_are_pruned(tmp_path):
    for n in (1, 2, 3, 10):
        (tmp_path / f"{rundir.HPC_PREFIX}{n}{rundir.SUFFIX}").write_bytes(b"x")
    assert rundir.next_preemption_checkpoint(tmp_path).name == f"{rundir.HPC_PREFIX}11{rundir.SUFFIX}"
    gone = rundir.prune_preemption_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in gone) == [f"{rundir.HPC_PREFIX}{n}{rundir.SUFFIX}" for n in (1, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{rundir.HPC_PREFIX}{n}{rundir.SUFFIX}" for n in (10, 3)]


def test_requeue_outside_slurm_does_nothing(monkeypatch):
    from snpbag.train.preempt import requeue

    for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID"):
        monkeypatch.delenv(k, raising=False)
    assert requeue() is False


def test_allocation_mismatch_is_refused(store, tmp_path, fake_slurm, monkeypatch):
    monkeypatch.setenv("SLURM_NTASKS", "4")
    with pytest.raises(ConfigError, match=r"trainer.num_nodes=1 x trainer.devices=1 does not match the SLURM "
                                          r"allocation \(1 node\(s\), 4 task\(s\)\)"):
        _train(store, tmp_path / "r")
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_resume_with_another_model_or_vocabulary_is_refused(store, tmp_path):
    _train(store, tmp_path / "r", "trainer.max_steps=3")
    with pytest.raises(ConfigError, match=r"resume with another model than the run.s \(.*model.d_model \(32 -> 64\)\)"):
        _train(store, tmp_path / "r", "resume=true", "model.d_model=64")
    other = tiny_store(tmp_path / "other", seed=1)  # other positions: another site vocabulary
    with pytest.raises(SiteMismatchError, match=rf"{other}: sites differ from those this run was trained on "
                                                r"\(.*\); resume with the original data.store"):
        _train(other, tmp_path / "r", "resume=true")
    assert rundir.resume_checkpoint(tmp_path / "r").name == rundir.LAST_CKPT  # nothing trained or written
    assert len(rundir.read_sessions(tmp_path / "r")) == 1


def test_unreadable_store_is_refused(tmp_path):
    from snpbag.errors import StoreFormatError

    with pytest.raises(StoreFormatError, match=str(tmp_path / "nowhere.zarr")):
        _train(tmp_path / "nowhere.zarr", tmp_path / "r")


def test_wandb_offline_segments_hold_consecutive_steps(store, tmp_path, fake_slurm, monkeypatch):
    """A pre-empted and resumed run writes two offline directories with the same run id whose
    histories are keyed by the optimiser step: disjoint and together every step once; and
    slurm/README.md's `wandb sync --id ID ...` uploads them into one run, the second appended."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wb = ["logger.wandb.enabled=true", "logger.wandb.mode=offline"]
    run_dir = tmp_path / "r"
    _train(store, run_dir, *wb, signal_at=3, monkeypatch=monkeypatch)
    _train(store, run_dir, *wb, "resume=true")
    segments = wandb_history_steps(run_dir)
    run_id = (run_dir / rundir.WANDB_ID).read_text().strip()
    assert len(segments) == 2 and {i for i, _ in segments.values()} == {run_id}
    first, second = (sorted(set(s)) for _, s in segments.values())
    # Lightning logs a step's loss under the step count before its update: 0..3, then 4..7
    assert first == list(range(4)) and second == list(range(4, STEPS))

    # slurm/README.md's upload, to a stand-in W&B server: the second segment resumes the run
    # (appended at the first one's row count), so the run's history holds every step once, in order
    server = FakeWandbServer()
    try:
        env = {**os.environ, "WANDB_MODE": "online", "WANDB_BASE_URL": server.url, "WANDB_API_KEY": "x" * 40,
               "HOME": str(tmp_path)}
        dirs = [str(d) for d in (run_dir / "wandb").glob("offline-run-*")]
        sync = subprocess.run([str(Path(sys.executable).parent / "wandb"), "sync", "--id", run_id, "-p", "snpbag",
                               "-e", "lab", *dirs], capture_output=True, text=True, timeout=600, env=env)
        assert sync.returncode == 0, sync.stderr[-3000:]
        assert [row["_step"] for row in server.rows(run_id)] == list(range(STEPS))
        assert [row["trainer/global_step"] for row in server.rows(run_id)] == list(range(STEPS))
        assert server.offsets[run_id] == [(0, 4), (4, STEPS - 4)]
    finally:
        server.close()


@pytest.mark.parametrize("preset, strategy, devices, accumulate", [
    ("single", "auto", 1, 1), ("ddp", "ddp", "auto", 1), ("ddp_accumulate", "ddp", "auto", 4)])
def test_trainer_presets_and_global_batch(preset, strategy, devices, accumulate):
    from snpbag.train.run import compose_config, run_layout, to_train_config

    cfg = to_train_config(compose_config(["data.store=x", f"trainer={preset}", "data.batch_size=8"]))
    assert (cfg.trainer.strategy, cfg.trainer.devices, cfg.trainer.accumulate_grad_batches) == (strategy, devices,
                                                                                                  accumulate)
    # 2 nodes x 8 GPUs
    assert run_layout(cfg, world_size=16, num_nodes=2)["global_batch"] == 8 * 16 * accumulate
