"""slurm/*.sbatch on a real one-node SLURM cluster started by the tests (tests/slurm_cluster.py):
2-rank gloo DDP pretraining, pre-emption by ``scancel --signal=USR1`` with requeue and
exact resume, KING as a job array. Skipped, with the reason, where SLURM cannot be
installed (not root); CI runs as root, so they run there.

Synchronisation is by polling SLURM (scontrol) and the run's files, with generous timeouts
for a loaded 2-core machine; no fixed sleeps.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

import slurm_cluster
from snpbag.train import rundir
from snpbag.train.callbacks import read_item_log
from conftest import free_port
from tiny_data import TINY_TRAIN, tiny_store
from wandb_files import wandb_history_steps

ROOT = Path(__file__).resolve().parents[1]
SNPBAG = Path(sys.executable).parent / "snpbag"
BATCH, EPOCH_STEPS = 4, 7  # the tiny store: 18 training samples x 3 tiles = 54 items, 27 per rank
STEPS = 6 * EPOCH_STEPS
SIGNAL_AFTER = EPOCH_STEPS + 3  # mid-epoch
TIMEOUT = 900  # per job, generous: a loaded 2-core machine


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    try:
        c = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    except slurm_cluster.Unavailable as e:
        pytest.skip(str(e))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("tiny"))


def _job_env(**extra: str) -> dict[str, str]:
    """What sbatch exports to the job: this tree's snpbag, offline W&B, a free DDP port."""
    return {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "SNPBAG": str(SNPBAG),
            "WANDB_MODE": "offline", "WANDB_SILENT": "true", "MASTER_PORT": str(free_port()), **extra}


def _submit(cluster, script: str, work: Path, *args: str, **env: str) -> str:
    """sbatch slurm/SCRIPT as 2 CPU tasks on one node, runs under WORK/runs."""
    work.mkdir(parents=True, exist_ok=True)
    return cluster.sbatch("-N1", "--ntasks-per-node=2", "--cpus-per-task=1", "--gpus-per-node=0", "--mem=0",
                          "--time=30", f"--chdir={work}", str(ROOT / "slurm" / script), f"paths.runs_dir={work / 'runs'}",
                          *args, **_job_env(TRAINER="cpu", LOG_DIR=str(work), **env))


def _pretrain(cluster, store: Path, work: Path) -> str:
    return _submit(cluster, "pretrain.sbatch", work, f"data.store={store}", *TINY_TRAIN, f"trainer.max_steps={STEPS}",
                   "trainer.val_check_interval=20", "callbacks.checkpoint.every_n_steps=20", "callbacks.item_log=true",
                   "logger.wandb.enabled=true", "logger.wandb.mode=offline")


def _finished(cluster, job: str, work: Path, *, restarts: int = 0, run: str = "pretrain") -> Path:
    def done() -> bool:
        info = cluster.job_info(job)
        return info.get("JobState") == "COMPLETED" and int(info.get("Restarts", 0)) >= restarts

    def failed() -> str | None:
        state = cluster.job_info(job).get("JobState", "")
        return state if state in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY") else None

    cluster.wait(f"job {job}", done, timeout=TIMEOUT, failed=failed,
                 logs=lambda: "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(work.glob("*.out"))))
    return work / "runs" / f"{run}-{job}"


def _losses(run_dir: Path) -> dict[int, float]:
    """train/loss by step, the last row of a step winning (a resumed run appends)."""
    with open(rundir.metrics_csv(run_dir), newline="") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def _epoch_items(store: Path, epoch: int) -> Counter:
    from snpbag.data.datamodule import GenotypeDataModule
    from snpbag.data.dataset import TileDataset

    train_rows = GenotypeDataModule(str(store), batch_size=BATCH, seed=3).split()[0]
    ds = TileDataset(str(store), samples=train_rows, seq_len=64, batch_size=BATCH, training=True, seed=3)
    return Counter((s, c) for s, c, _ in ds.items_of_epoch(epoch))


@pytest.fixture(scope="module")
def reference(cluster, store, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("reference")
    return _finished(cluster, _pretrain(cluster, store, work), work)


def _fake_job(cluster, tmp_path: Path, script: str, *args: str, cpus: int = 1,
              trainer: str = "cpu") -> tuple[str, str, list[str]]:
    """Run slurm/SCRIPT with a stand-in SNPBAG that records what its rank got: (job id,
    final state, the recorded words: rank, SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, arguments)."""
    fake = tmp_path / "fake-snpbag"
    fake.write_text(f"#!/bin/sh\necho \"$SLURM_PROCID $SLURM_CPUS_PER_TASK $OMP_NUM_THREADS $*\" >> {tmp_path}/seen\n")
    fake.chmod(0o755)
    job = cluster.sbatch("-N1", "--ntasks-per-node=1", f"--cpus-per-task={cpus}", "--gpus-per-node=0", "--mem=0",
                         f"--chdir={tmp_path}", str(ROOT / "slurm" / script), *args,
                         **_job_env(SNPBAG=str(fake), TRAINER=trainer, LOG_DIR=str(tmp_path)))
    ended = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
    cluster.wait(f"job {job}", lambda: cluster.job_info(job).get("JobState") in ended, timeout=120)
    seen = tmp_path / "seen"
    return job, cluster.job_info(job)["JobState"], seen.read_text().split() if seen.is_file() else []


def test_workers_and_cpus_reach_the_ranks(cluster, tmp_path):
    """srun gets --cpus-per-task (SRUN_CPUS_PER_TASK; Slurm >= 22.05 does not pass it on),
    and the data workers are sized to it."""
    cpus = min(2, cluster.cpus)
    job, state, (rank, cpus_seen, omp, *args) = _fake_job(cluster, tmp_path, "pretrain.sbatch", "data.store=x",
                                                           cpus=cpus)
    assert state == "COMPLETED" and (rank, cpus_seen) == ("0", str(cpus))
    workers = min(cpus - 1, 2)
    assert f"data.num_workers={workers}" in args and f"data.persistent_workers={str(workers > 0).lower()}" in args
    assert omp == str(max(cpus - workers, 1))
    assert "trainer.num_nodes=1" in args and "trainer.devices=1" in args and f"name=pretrain-{job}" in args
    assert args[-1] == "data.store=x"  # the user's overrides come last, so they win


def test_fsdp_preset_runs_fsdp_ranks(cluster, tmp_path):
    """TRAINER=fsdp: the ranks run trainer.strategy=fsdp, every other preset DDP."""
    _, state, words = _fake_job(cluster, tmp_path, "pretrain.sbatch", "data.store=x", trainer="fsdp")
    assert state == "COMPLETED" and "trainer=fsdp" in words and "trainer.strategy=fsdp" in words


def test_finetune_script(cluster, tmp_path):
    job, state, words = _fake_job(cluster, tmp_path, "finetune.sbatch", "task=impute", "task.init_from=m")
    assert state == "COMPLETED" and f"name=finetune-{job}" in words and words[-2:] == ["task=impute", "task.init_from=m"]
    (tmp_path / "refused").mkdir()
    _, state, words = _fake_job(cluster, tmp_path / "refused", "finetune.sbatch", "data.store=x")
    assert state == "FAILED" and words == []
    out = next((tmp_path / "refused").glob("slurm-*.out")).read_text()
    assert "slurm/finetune.sbatch: name the task (task=impute, ...)" in out


def test_pretrain_two_ranks(reference, store):
    """2 tasks, gloo DDP: the expected global step, a checkpoint, per-rank logs, the global
    batch in run.json, and in every epoch disjoint, equal shares of the epoch's items."""
    last = torch.load(rundir.checkpoints_dir(reference) / rundir.LAST_CKPT, map_location="cpu", weights_only=True)
    assert last["global_step"] == STEPS
    assert rundir.read_run_layout(reference) == {"world_size": 2, "num_nodes": 1, "batch_per_device": BATCH,
                                                 "accumulate_grad_batches": 1, "global_batch": 2 * BATCH}
    job = reference.name.split("-")[-1]
    assert all((reference.parents[1] / f"snpbag-pretrain-{job}-rank{r}.out").is_file() for r in (0, 1))
    ranks = [read_item_log(rundir.items_log(reference, r)) for r in (0, 1)]
    for epoch in range(STEPS // EPOCH_STEPS):
        steps = range(epoch * EPOCH_STEPS + 1, (epoch + 1) * EPOCH_STEPS + 1)
        a, b = (Counter((s, c) for st, s, c, _ in rows if st in steps) for rows in ranks)
        assert sum(a.values()) == sum(b.values()) == 27, epoch
        assert not set(a) & set(b) and a + b == _epoch_items(store, epoch), epoch


def test_signal_requeue_resume_equals_uninterrupted(cluster, reference, store, tmp_path):
    """`scancel --signal=USR1` mid-epoch: the job saves, requeues itself and resumes; steps,
    items per step, losses per step and final weights equal the uninterrupted run's
    bit for bit (gloo on CPU is deterministic across restarts), and W&B continues one run."""
    job = _pretrain(cluster, store, tmp_path)
    run_dir = tmp_path / "runs" / f"pretrain-{job}"
    items = rundir.items_log(run_dir, 0)

    def trained_past_signal_point() -> bool:
        return items.is_file() and any(r[0] >= SIGNAL_AFTER for r in read_item_log(items))

    cluster.wait(f"job {job} at step {SIGNAL_AFTER}", trained_past_signal_point, timeout=TIMEOUT)
    cluster.run("scancel", "--signal=USR1", job)

    def requeued() -> bool:
        info = cluster.job_info(job)
        return int(info.get("Restarts", 0)) >= 1 and info.get("JobState") in ("PENDING", "RUNNING", "COMPLETED")

    cluster.wait(f"job {job} requeued", requeued, timeout=TIMEOUT)
    if cluster.job_info(job).get("Reason") == "BeginTime":
        # Slurm holds a requeued job back for ~2 minutes; let it start now
        cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
    _finished(cluster, job, tmp_path, restarts=1)

    hpc = sorted(run_dir.glob(f"{rundir.HPC_PREFIX}*"))
    assert len(hpc) == 1  # pruned to callbacks.checkpoint.keep_preempt
    stopped_at = torch.load(hpc[0], map_location="cpu", weights_only=True)["global_step"]
    # usually mid-epoch (6 of 7 steps are; tests/test_preempt.py stops mid-epoch for certain)
    assert SIGNAL_AFTER <= stopped_at < STEPS, stopped_at
    sessions = rundir.read_sessions(run_dir)
    assert [s["slurm"].get("SLURM_RESTART_COUNT", "0") for s in sessions] == ["0", "1"]
    assert sessions[1]["parameters"]["resumed_from"] == str(hpc[0])

    a = torch.load(rundir.checkpoints_dir(reference) / rundir.LAST_CKPT, map_location="cpu", weights_only=True)
    b = torch.load(rundir.checkpoints_dir(run_dir) / rundir.LAST_CKPT, map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == STEPS
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert _losses(reference) == _losses(run_dir)
    for r in (0, 1):  # every (step, item) once: nothing skipped or repeated across the requeue
        assert sorted(read_item_log(rundir.items_log(reference, r))) == sorted(read_item_log(rundir.items_log(run_dir, r)))

    segments = wandb_history_steps(run_dir)
    run_id = (run_dir / rundir.WANDB_ID).read_text().strip()
    assert len(segments) == 2 and {i for i, _ in segments.values()} == {run_id}
    first, second = (sorted(set(s)) for _, s in segments.values())
    assert first == list(range(stopped_at)) and second == list(range(stopped_at, STEPS))


def test_king_job_array_equals_single_run(cluster, store, tmp_path):
    job = cluster.sbatch("--array=1-3", "--cpus-per-task=1", "--mem=0", f"--chdir={tmp_path}",
                         str(ROOT / "slurm" / "king.sbatch"), str(store), str(tmp_path / "rel"), **_job_env())
    single = subprocess.run([str(SNPBAG), "king", str(store), "--out", str(tmp_path / "single"), "--threads", "1"],
                            env={**os.environ, **_job_env()}, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr

    def all_done() -> bool:
        states = cluster.job_states(job)
        return len(states) == 3 and all(s == "COMPLETED" for s in states.values())

    cluster.wait(f"array job {job}", all_done, timeout=TIMEOUT,
                 failed=lambda: next((s for s in cluster.job_states(job).values()
                                      if s in ("FAILED", "CANCELLED", "TIMEOUT")), None))
    parts = b"".join((tmp_path / f"rel.kin0.{k}").read_bytes() for k in (1, 2, 3))
    assert parts == (tmp_path / "single.kin0").read_bytes()
    assert all((tmp_path / f"rel.kin0.{k}").stat().st_size for k in (1, 2, 3))


# fine-tuning: 8 epochs (on an idle machine a step takes ~0.5 s: the kill needs a window of
# seconds before the run ends), last.ckpt every 10 steps
FT_STEPS, FT_EVERY = 8 * EPOCH_STEPS, 10


def _step_runs(rows: list[tuple[int, int, int, int]]) -> dict[int, list[list[tuple[int, int, int, int]]]]:
    """The item log's rows of each step, one list per time the step was trained (a run
    restarted from a checkpoint appends the steps after it again)."""
    runs: dict[int, list[list]] = {}
    for i, row in enumerate(rows):
        if i == 0 or rows[i - 1][0] != row[0]:
            runs.setdefault(row[0], []).append([])
        runs[row[0]][-1].append(row)
    return runs


def test_finetune_requeue_then_node_failure_and_resubmit(cluster, reference, store, tmp_path):
    """slurm/finetune.sbatch (task=embed from the pretrained model, 2 gloo ranks): USR1 ->
    save, requeue, resume; then a hard kill (SIGKILL, as a node failure: nothing saved)
    after a periodic checkpoint and a manual resubmit with RUN_NAME: the new job continues
    from that last.ckpt, the steps the killed job trained after it are trained again with
    exactly the same items, and every epoch's items are each seen once in the end."""
    model = tmp_path / "base"
    export = subprocess.run([str(SNPBAG), "export", str(reference), str(model)], env={**os.environ, **_job_env()},
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr
    args = [f"data.store={store}", *TINY_TRAIN, "task=embed", f"task.init_from={model}", "task.head.options.patch=32",
            "task.head.options.shape=[1,16]", "task.head.options.hidden=64", f"trainer.max_steps={FT_STEPS}",
            "trainer.val_check_interval=20", f"callbacks.checkpoint.every_n_steps={FT_EVERY}", "callbacks.item_log=true"]
    job = _submit(cluster, "finetune.sbatch", tmp_path, *args)
    run_dir = tmp_path / "runs" / f"finetune-{job}"
    items = rundir.items_log(run_dir, 0)

    def trained_to(step: int):
        return lambda: items.is_file() and any(r[0] >= step for r in read_item_log(items))

    cluster.wait(f"job {job} at step 3", trained_to(3), timeout=TIMEOUT)
    cluster.run("scancel", "--signal=USR1", job)
    cluster.wait(f"job {job} requeued", lambda: int(cluster.job_info(job).get("Restarts", 0)) >= 1, timeout=TIMEOUT)
    if cluster.job_info(job).get("Reason") == "BeginTime":
        cluster.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
    # the first periodic last.ckpt after the requeue: the signal sent at step 3 lands some
    # steps later (at step 9-11 seen), and a pre-emption past step 10 leaves session 1's
    # step-10 last.ckpt older than hpc_ckpt_1, so the kill must come after the next one
    (pre,) = rundir.preemption_checkpoints(run_dir)
    pre_step = torch.load(pre, map_location="cpu", weights_only=True)["global_step"]
    periodic = (pre_step // FT_EVERY + 1) * FT_EVERY
    assert periodic + 2 < FT_STEPS, pre_step
    cluster.wait(f"job {job} past step {periodic}", trained_to(periodic + 2), timeout=TIMEOUT)
    cluster.run("scancel", "--signal=KILL", job)
    ended = ("FAILED", "CANCELLED", "NODE_FAIL", "COMPLETED")
    cluster.wait(f"job {job} killed", lambda: cluster.job_info(job).get("JobState") in ended, timeout=TIMEOUT)
    assert cluster.job_info(job)["JobState"] != "COMPLETED"
    last = rundir.checkpoints_dir(run_dir) / rundir.LAST_CKPT
    at = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    killed_at = [max(row[0] for row in read_item_log(rundir.items_log(run_dir, r))) for r in (0, 1)]
    # the kill lands some steps after it is sent (a loaded machine): usually between two
    # periodic checkpoints; exactly on one, nothing is lost and nothing is trained twice
    assert periodic <= at <= min(killed_at) and max(killed_at) < FT_STEPS, (at, killed_at)

    again = _submit(cluster, "finetune.sbatch", tmp_path, *args, RUN_NAME=run_dir.name)
    _finished(cluster, again, tmp_path, run="finetune")
    sessions = rundir.read_sessions(run_dir)
    assert len(sessions) == 3 and sessions[2]["parameters"]["resumed_from"] == str(last)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == FT_STEPS

    final = []
    for r in (0, 1):
        runs = _step_runs(read_item_log(rundir.items_log(run_dir, r)))
        assert sorted(runs) == list(range(1, FT_STEPS + 1)), r
        # trained twice exactly the steps the kill lost (after the checkpoint, up to the
        # kill), and the second time on the same items; every other step once
        twice = [step for step, times in runs.items() if len(times) == 2]
        assert twice == list(range(at + 1, killed_at[r] + 1)), (r, at, killed_at, twice)
        assert all(len(t) <= 2 and all(x == t[0] for x in t) for t in runs.values()), r
        final.append({step: times[-1] for step, times in runs.items()})
    for epoch in range(FT_STEPS // EPOCH_STEPS):
        steps = range(epoch * EPOCH_STEPS + 1, (epoch + 1) * EPOCH_STEPS + 1)
        seen = Counter((s, c) for rank in final for st in steps for _, s, c, _ in rank[st])
        assert seen == _epoch_items(store, epoch), epoch
