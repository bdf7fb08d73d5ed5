"""Pre-emption: on SIGUSR1 save a checkpoint at the next step boundary, stop, requeue.

Lightning's own SLURM handler saves the checkpoint *inside* the signal handler. Under DDP
the ranks then enter it wherever they happen to be - one in a gradient all-reduce, another
between steps - and the save's own collectives interleave with the step's (Lightning issue
reports of intermittent hangs); DataLoader workers forked afterwards inherit the handler
too. So snpbag turns Lightning's handler off (``SLURMEnvironment(auto_requeue=False)``,
see :func:`cluster_plugins`) and installs :class:`Preemption` instead:

1. the handler only sets a flag (nothing else runs in signal context);
2. after every optimiser step, all ranks agree whether any of them got the signal (one
   all-reduce of a boolean: SLURM signals the ranks at slightly different times);
3. if so, every rank calls ``trainer.save_checkpoint`` on the same step (rank 0 writes
   ``RUN_DIR/hpc_ckpt_<n>.ckpt``, older ones beyond ``keep`` are deleted) and training stops;
4. after ``fit`` has returned, rank 0 requeues the SLURM job (:func:`requeue`); the
   requeued job runs the same script, whose ``resume=true`` continues from that checkpoint.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from snpbag.train import rundir

log = logging.getLogger(__name__)

SIGNAL = signal.SIGUSR1  # what `sbatch --signal=SIGUSR1@<s>` and `scancel --signal=USR1` send


def in_slurm_job() -> bool:
    """A SLURM batch job with Lightning's SLURM cluster environment (ranks from srun)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def cluster_plugins() -> list:
    """Lightning plugins for the cluster we run in: in a SLURM job, its environment with
    Lightning's auto-requeue (and with it its SIGUSR1 handler) turned off."""
    if not in_slurm_job():
        return []
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)]


class Preemption(Callback):
    """Saves ``RUN_DIR/hpc_ckpt_<n>.ckpt`` at the first optimiser-step boundary after
    ``signum`` and stops training (see the module docstring). ``saved`` is the path written,
    None when the signal never came."""

    def __init__(self, run_dir: str | Path, *, keep: int = 1, signum: int = SIGNAL) -> None:
        self.run_dir = Path(run_dir)
        self.keep = keep
        self.signum = signum
        self.requested = False
        self.saved: Path | None = None
        self._previous = None
        self._last_step: int | None = None

    def _handler(self, signum, frame) -> None:
        self.requested = True  # only this: the checkpoint is written at the next step boundary

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(self.signum, self._handler)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous is not None and threading.current_thread() is threading.main_thread():
            signal.signal(self.signum, self._previous)
            self._previous = None

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._last_step:  # an accumulating micro-batch: no optimiser step yet
            return
        self._last_step = step
        # every rank takes part, every step: the ranks must agree on the step to save at
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        path = rundir.next_preemption_checkpoint(self.run_dir)
        if trainer.world_size > 1:  # every rank must name rank 0's file
            path = Path(trainer.strategy.broadcast(str(path), src=0))
        trainer.save_checkpoint(path)  # collective: all ranks, rank 0 writes
        if trainer.is_global_zero:
            for old in rundir.prune_preemption_checkpoints(self.run_dir, keep=self.keep):
                log.info("pre-emption: deleted %s", old)
            log.info("pre-emption signal: saved %s at step %d; stopping", path, step)
        self.saved = path
        trainer.should_stop = True


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes: ``ARRAYJOB_TASK`` for an array task, else the job id."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ.get("SLURM_JOB_ID")
    return job if job and re.fullmatch(r"[0-9_]+", job) else None


def requeue() -> bool:
    """``scontrol requeue`` this SLURM job (call on rank 0 after training stopped); whether it
    worked. Outside a SLURM job nothing is requeued: resume by running the command again."""
    job = slurm_job_id()
    if job is None:
        log.warning("pre-empted outside a SLURM job: run the same command with resume=true to continue")
        return False
    r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if r.returncode:
        log.error("scontrol requeue %s failed (exit %d): %s", job, r.returncode, r.stderr.strip())
        return False
    log.info("requeued SLURM job %s", job)
    return True
