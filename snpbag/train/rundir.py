"""The run directory of ``snpbag train``: its layout and checkpoint names, written and parsed
here only. Everything a run produces lives in it::

    RUN_DIR/config.yaml             resolved config of the latest session
    RUN_DIR/provenance.json         one record per session (start or resume): overrides, git
                                    revision, package versions, host
    RUN_DIR/vocab/                  the store's site vocabulary (the model directory's two
                                    vocabulary files, snpbag.modeldir)
    RUN_DIR/neighbours.npz or       retrieval models: the panel of training genomes, under
    RUN_DIR/haplotypes.npz          the model directory's name for it
    RUN_DIR/checkpoints/            last.ckpt (resume) and the top-k by validation loss,
                                    step=000200-val_loss=1.2345.ckpt
    RUN_DIR/hpc_ckpt_<n>.ckpt       pre-emption checkpoints (snpbag.train.preempt; the newest
                                    callbacks.checkpoint.keep_preempt are kept)
    RUN_DIR/run.json                the run's layout: ranks, per-device and effective global batch
    RUN_DIR/items/rank<r>.tsv       with callbacks.item_log: every training item each rank saw
    RUN_DIR/csv/metrics.csv         every logged metric; RUN_DIR/tensorboard/, RUN_DIR/wandb/
    RUN_DIR/wandb_id                the W&B run id, so a resumed run continues the same W&B run

Lightning writes the checkpoints and the CSV log; the names it uses for them are set from
here (snpbag.train.callbacks, snpbag.train.run) or, where Lightning fixes them
(``metrics.csv``), mirrored here. ``hpc_ckpt_`` keeps the name Lightning's own SLURM
handler used, so runs pre-empted before snpbag.train.preempt existed still resume.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

from snpbag import modeldir
from snpbag.errors import CheckpointError
from snpbag.fileio import atomic_output
from snpbag.provenance import provenance
from snpbag.store.vocab import SiteVocab

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
PROVENANCE = "provenance.json"
VOCAB = "vocab"
CHECKPOINTS = "checkpoints"
SUFFIX = ".ckpt"  # Lightning's ModelCheckpoint.FILE_EXTENSION
LAST = "last"  # Lightning's ModelCheckpoint.CHECKPOINT_NAME_LAST
LAST_CKPT = LAST + SUFFIX
HPC_PREFIX = "hpc_ckpt_"  # pre-emption checkpoints (the name Lightning's SLURM handler used)
RUN_JSON = "run.json"
ITEMS = "items"
CSV = "csv"
METRICS_CSV = "metrics.csv"  # fixed by Lightning's CSVLogger
TENSORBOARD = "tensorboard"
WANDB_ID = "wandb_id"
NAMES = (CONFIG, PROVENANCE, VOCAB, CHECKPOINTS, LAST, SUFFIX, LAST_CKPT, HPC_PREFIX, CSV, METRICS_CSV, TENSORBOARD,
         WANDB_ID, RUN_JSON, ITEMS)

# the top-k checkpoints: step=000200-val_loss=1.2345.ckpt (metric name with "/" as "_")
_BEST = re.compile(r"^step=(\d+)-.+=(-?[0-9.]+(?:e[-+]?\d+)?|nan|inf)" + re.escape(SUFFIX) + "$")


# --- checkpoints -------------------------------------------------------------------------------


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def best_checkpoint_template(monitor: str) -> str:
    """The ``filename`` of Lightning's ModelCheckpoint for the top-k checkpoints by ``monitor``:
    ``step=000200-val_loss=1.2345`` (Lightning adds the suffix), readable without tools
    and parsed back by :func:`parse_best`."""
    metric = monitor.replace("/", "_")
    return f"step={{step:06d}}-{metric}={{{monitor}:.4f}}"


def parse_best(name: str) -> tuple[int, float] | None:
    """(step, monitored value) of a top-k checkpoint's file name; None for any other file."""
    m = _BEST.match(name)
    return (int(m.group(1)), float(m.group(2))) if m else None


def _preemption_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(n, path) of every ``hpc_ckpt_<n>.ckpt``, oldest (lowest n) first."""
    found = []
    for p in run_dir.glob(f"{HPC_PREFIX}*{SUFFIX}"):
        n = p.name[len(HPC_PREFIX):-len(SUFFIX)]
        if n.isdigit():
            found.append((int(n), p))
    return sorted(found)


def preemption_checkpoints(run_dir: str | Path) -> list[Path]:
    """Every ``hpc_ckpt_<n>.ckpt`` of ``run_dir``, oldest (lowest n) first."""
    return [p for _, p in _preemption_checkpoints(Path(run_dir))]


def next_preemption_checkpoint(run_dir: str | Path) -> Path:
    """Where the next pre-emption checkpoint goes: ``hpc_ckpt_<n+1>.ckpt``."""
    found = _preemption_checkpoints(Path(run_dir))
    return Path(run_dir) / f"{HPC_PREFIX}{found[-1][0] + 1 if found else 1}{SUFFIX}"


def prune_preemption_checkpoints(run_dir: str | Path, *, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` pre-emption checkpoints (each one is a full
    training state, ~5 GB at the base preset); the deleted paths."""
    found = _preemption_checkpoints(Path(run_dir))
    old = [p for _, p in found[:max(0, len(found) - max(keep, 1))]]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint a resumed run continues from: the newest of ``checkpoints/last.ckpt``
    and Lightning's SLURM pre-emption checkpoints (``hpc_ckpt_*.ckpt``), or None."""
    found = [p for p in [checkpoints_dir(run_dir) / LAST_CKPT, *preemption_checkpoints(run_dir)] if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def select_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``snpbag export`` uses for ``path``.

    A file is used as is. For a run directory (or its checkpoints directory): the best
    (lowest validation loss) of the top-k checkpoints, else ``last.ckpt``.

    Raises
    ------
    CheckpointError : nothing to export there.
    """
    p = Path(path)
    if p.is_file():
        return p
    ckdir = checkpoints_dir(p) if checkpoints_dir(p).is_dir() else p
    if not ckdir.is_dir():
        raise CheckpointError(f"{p}: no such checkpoint file or run directory")
    scored = []
    for f in ckdir.glob(f"*{SUFFIX}"):
        best = parse_best(f.name)
        if best:
            scored.append((best[1], -best[0], f))
    if scored:
        return min(scored)[2]
    last = ckdir / LAST_CKPT
    if last.is_file():
        return last
    raise CheckpointError(f"{ckdir}: no checkpoints (*{SUFFIX}) to export; has the run saved one yet?")


def run_dirs_of(checkpoint: Path, recorded: str | None) -> list[Path]:
    """Where a checkpoint's run directory may be: the one the checkpoint records (it may have
    moved since), then the one the file lies in."""
    ckpt = checkpoint.resolve()
    here = ckpt.parent if ckpt.name.startswith(HPC_PREFIX) else ckpt.parent.parent
    return [Path(recorded), here] if recorded else [here]


# --- what a session writes ---------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(text)


def config_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG


def read_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The resolved config of the run's latest session, None if it has none yet."""
    import yaml

    f = config_path(run_dir)
    return yaml.safe_load(f.read_text()) if f.is_file() else None


_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "SLURM_NNODES",
               "SLURM_NTASKS", "SLURM_CPUS_PER_TASK")


def read_sessions(run_dir: str | Path) -> list[dict[str, Any]] | None:
    """The provenance records of a run's sessions; None if the run directory has none."""
    f = Path(run_dir) / PROVENANCE
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text()).get("sessions", [])
    except (json.JSONDecodeError, AttributeError):
        log.warning("%s is unreadable; its session records are lost", f)
        return []


def record_session(run_dir: str | Path, *, config_yaml: str, overrides: list[str], resumed_from: Path | None) -> None:
    """config.yaml (latest session) and a provenance record appended per session."""
    run_dir = Path(run_dir)
    _write_text(run_dir / CONFIG, config_yaml)
    sessions = read_sessions(run_dir) or []
    record = provenance("snpbag train", {"overrides": list(overrides),
                                         "resumed_from": str(resumed_from) if resumed_from else None})
    record["host"] = os.uname().nodename
    slurm = {k: os.environ[k] for k in _SLURM_VARS if k in os.environ}
    if slurm:  # which job (and which restart of it) this session was
        record["slurm"] = slurm
    sessions.append(record)
    _write_text(run_dir / PROVENANCE, json.dumps({"sessions": sessions}, indent=2) + "\n")


def read_vocab(run_dir: str | Path) -> SiteVocab | None:
    """The training vocabulary kept in the run directory, None if it has none."""
    d = Path(run_dir) / VOCAB
    return modeldir.load_vocab(d) if modeldir.has_vocab(d) else None


def write_vocab(run_dir: str | Path, vocab: SiteVocab) -> None:
    with atomic_output(Path(run_dir) / VOCAB) as tmp:
        modeldir.save_vocab(vocab, tmp)


def panel_path(run_dir: str | Path, kind: str) -> Path:
    """The retrieval panel of a ``model.retrieval`` kind in a run directory."""
    return Path(run_dir) / modeldir.panel_file(kind)


def write_panel(run_dir: str | Path, kind: str, panel) -> None:
    """Keep the retrieval panel (a resumed run has the same split, so the panel it already
    kept is the same one)."""
    path = panel_path(run_dir, kind)
    if path.is_file():
        return
    with atomic_output(path) as tmp:
        panel.save(tmp)


def metrics_csv(run_dir: str | Path) -> Path:
    """The CSV log of every metric (Lightning's CSVLogger, version ``csv``)."""
    return Path(run_dir) / CSV / METRICS_CSV


def wandb_run_id(run_dir: str | Path, *, create: bool) -> str:
    """The run's W&B id: the kept one, else a new one, written only if ``create`` (rank 0:
    DDP ranks must not race to write different ids)."""
    id_file = Path(run_dir) / WANDB_ID
    if id_file.is_file():
        return id_file.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if create:
        id_file.parent.mkdir(parents=True, exist_ok=True)
        _write_text(id_file, run_id + "\n")
    return run_id


def write_run_layout(run_dir: str | Path, layout: dict[str, Any]) -> None:
    """RUN_DIR/run.json: world size, per-device and effective global batch of the latest session."""
    _write_text(Path(run_dir) / RUN_JSON, json.dumps(layout, indent=2) + "\n")


def read_run_layout(run_dir: str | Path) -> dict[str, Any] | None:
    f = Path(run_dir) / RUN_JSON
    return json.loads(f.read_text()) if f.is_file() else None


def items_log(run_dir: str | Path, rank: int) -> Path:
    """RUN_DIR/items/rank<r>.tsv: ``step  sample  tile  offset`` of every training item rank
    ``rank`` trained on (callbacks.item_log; a data-stream audit for sharding and resume)."""
    return Path(run_dir) / ITEMS / f"rank{rank}.tsv"
