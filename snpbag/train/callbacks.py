"""Training callbacks: throughput/memory logging, the checkpoint pair resume relies on, a
CSV logger that survives resume, and the search for a hung rank after a collective timed out.

Checkpoint files are written by Lightning's TorchCheckpointIO, which serialises to memory
and writes through an fsspec transaction (a temporary file renamed on commit), so a run
killed mid-save leaves the previous ``last.ckpt`` intact.
"""

from __future__ import annotations

import csv
import logging
import re
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from snpbag.train import rundir

log = logging.getLogger(__name__)


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory of this process: CUDA max allocated on a GPU, else peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


class ThroughputMonitor(Callback):
    """Logs ``perf/tokens_per_s``, ``perf/samples_per_s`` (summed over ranks) and
    ``perf/peak_mem_gib`` (this rank) every ``every_n_steps`` optimizer steps.

    The clock covers data loading, forward, backward and the optimizer step; time spent in
    validation is excluded. Tokens are real (non-padding) sites of the input sequences.
    """

    def __init__(self, every_n_steps: int = 10) -> None:
        self.every_n_steps = max(1, every_n_steps)
        self._reset(None)
        self._val_start: float | None = None

    def _reset(self, now: float | None) -> None:
        self._t0 = now
        self._tokens = 0
        self._samples = 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if self._t0 is None:
            self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        self._tokens = self._tokens + batch.valid.sum()  # stays on the device: no sync per step
        self._samples += int(batch.genotype.shape[0])
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps or self._t0 is None:
            return
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        dt = max(now - self._t0, 1e-9)
        tokens = torch.as_tensor(self._tokens, device=pl_module.device).to(torch.float64)
        counts = torch.stack([tokens, torch.tensor(float(self._samples), dtype=torch.float64, device=tokens.device)])
        counts = trainer.strategy.reduce(counts, reduce_op="sum")
        pl_module.log("perf/tokens_per_s", counts[0] / dt, on_step=True, on_epoch=False, prog_bar=True)
        pl_module.log("perf/samples_per_s", counts[1] / dt, on_step=True, on_epoch=False)
        pl_module.log("perf/peak_mem_gib", peak_memory_gib(pl_module.device), on_step=True, on_epoch=False)
        self._reset(time.perf_counter())

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._val_start is not None and self._t0 is not None:
            self._t0 += time.perf_counter() - self._val_start
        self._val_start = None


class LastCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_steps`` optimizer steps and when training ends.

    Lightning's ModelCheckpoint saves "last" at the end only if it never saved before; a
    run whose max_steps is not a multiple of the interval would then lose its final steps
    on resume, so this one always saves the final step. A run stopped before max_steps (a
    pre-emption, snpbag.train.preempt) has just written its own checkpoint of that step.
    """

    CHECKPOINT_NAME_LAST = rundir.LAST  # the run directory's names, as resume and export read them
    FILE_EXTENSION = rundir.SUFFIX

    def __init__(self, dirpath: str | Path, *, every_n_steps: int) -> None:
        super().__init__(dirpath=str(dirpath), every_n_train_steps=every_n_steps, save_top_k=0, save_last=True,
                         enable_version_counter=False)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # Lightning runs ModelCheckpoint callbacks after the others: when a pre-emption has just
        # saved this step and stopped the run, a periodic last.ckpt here would be the newer file
        # of the same step and resume would pick it instead of the pre-emption checkpoint
        if trainer.should_stop and 0 <= trainer.global_step < trainer.max_steps:
            return
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        finished = trainer.max_steps < 0 or trainer.global_step >= trainer.max_steps
        if finished and self._last_global_step_saved != trainer.global_step and not trainer.fast_dev_run:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def is_collective_timeout(e: BaseException) -> bool:
    """torch.distributed's errors for a peer that is hung (a timed-out collective) or dead (its
    connection closed), as gloo and NCCL word them ("Application timeout caused pair closure" is
    gloo's when the wait times out inside its TCP pair rather than in the collective)."""
    text = str(e).lower()
    hung = ("timed out" in text or "timeout" in text) and any(
        k in text for k in ("gloo", "nccl", "collective", "recv", "send", "watchdog", "barrier", "pair closure"))
    return hung or "connection closed by peer" in text or "connection reset by peer" in text


class HungRanks(Callback):
    """Which ranks hung, once a collective has timed out (``hung``: their ranks on rank 0,
    None where unknown).

    The waiting ranks cannot tell from their own timeout which peer stopped. After one, the
    live ranks meet at a monitored barrier of a separate gloo group (made at setup, on every
    rank: the default group's state after a timeout is undefined, and NCCL has no monitored
    barrier); rank 0 learns which ranks never came within ``timeout_s``. Multi-process runs only.
    """

    def __init__(self, *, timeout_s: int) -> None:
        self.timeout = timedelta(seconds=timeout_s)
        self.group = None
        self.hung: list[int] | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        import torch.distributed as dist

        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized() and self.group is None:
            self.group = dist.new_group(backend="gloo", timeout=self.timeout)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self.group is None or not is_collective_timeout(exception):
            return
        import torch.distributed as dist

        try:
            dist.monitored_barrier(group=self.group, timeout=self.timeout, wait_all_ranks=True)
            self.hung = []
        except RuntimeError as e:  # rank 0: "[Rank 0]: Ranks 1, 3 failed to pass monitoredBarrier in ... ms"
            found = re.search(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier", str(e))
            self.hung = [int(r) for r in found.group(1).split(",")] if found else None
        if self.hung:
            log.error("rank %d: rank(s) %s did not reach the barrier after the timeout", trainer.global_rank,
                      ", ".join(map(str, self.hung)))


class ItemLog(Callback):
    """Appends ``step  sample  tile  offset`` of every training item to
    RUN_DIR/items/rank<r>.tsv (flushed per batch): an audit of the data stream, which the
    sharding and resume tests read (callbacks.item_log; off by default)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._file = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._file is None:
            path = rundir.items_log(self.run_dir, trainer.global_rank)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a")
        step = trainer.global_step  # the optimiser step this batch belongs to (after it)
        rows = zip(batch.sample.tolist(), batch.tile.tolist(), batch.offset.tolist())
        self._file.write("".join(f"{step}\t{s}\t{c}\t{o}\n" for s, c, o in rows))
        self._file.flush()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_item_log(path: str | Path) -> list[tuple[int, int, int, int]]:
    """(step, sample, tile, offset) rows of an ItemLog file."""
    with open(path) as f:
        return [tuple(int(x) for x in ln.split("\t")) for ln in f if ln.strip()]


def best_checkpoints(dirpath: str | Path, *, monitor: str, save_top_k: int) -> ModelCheckpoint:
    """The ``save_top_k`` checkpoints with the lowest ``monitor`` value, named by
    snpbag.train.rundir (``step=000200-val_loss=1.2345.ckpt``)."""
    ck = ModelCheckpoint(
        dirpath=str(dirpath), filename=rundir.best_checkpoint_template(monitor), monitor=monitor, mode="min",
        save_top_k=save_top_k, save_last=False, auto_insert_metric_name=False, enable_version_counter=False,
    )
    ck.FILE_EXTENSION = rundir.SUFFIX
    return ck


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv; a resumed run keeps the rows
    of its earlier sessions instead (a step logged twice, after a pre-emption between two
    checkpoints, appears twice: readers should keep the last row of a step)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys = sorted(set(self.metrics_keys) | set(header))


class AppendingCSVLogger(CSVLogger):
    """CSVLogger writing RUN_DIR/csv/metrics.csv across resumed sessions."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class StepWandbLogger(WandbLogger):
    """W&B logger whose history is keyed by the optimiser step (``wandb.log(..., step=)``).

    An offline run cannot be resumed: every session of a requeued job writes its own
    ``RUN_DIR/wandb/offline-run-*`` directory under the same run id, and each would count
    W&B's ``_step`` from 0 again, so syncing them into one run drops all but one segment's
    rows. Keyed by the global step, the segments hold consecutive, disjoint step ranges
    (a pre-empted session stops at its checkpoint's step) and ``wandb sync --id ID``, which
    syncs the directories of one id in order of start time, appends them (slurm/README.md).
    Each session finishes its W&B run when training ends.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Lightning passes anonymous=None, which wandb >= 0.19 warns about on every run
        # ("The anonymous setting has no effect"); not passing it means the same thing
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)

    @rank_zero_only
    def log_metrics(self, metrics, step: int | None = None) -> None:
        if step is None:
            return super().log_metrics(metrics, step)
        self.experiment.log({**metrics, "trainer/global_step": step}, step=int(step))

    def finalize(self, status: str) -> None:
        super().finalize(status)
        if self._experiment is not None and hasattr(self._experiment, "finish"):
            self._experiment.finish()
            self._experiment = None
