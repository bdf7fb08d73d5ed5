"""``snpbag train``: compose the Hydra config, set up the run directory, build data, model
and trainer, fit.

Configs come from the ``configs/`` directory of the snpbag source tree (found next to the
package in a checkout / editable install) or from ``$SNPBAG_CONFIG_DIR``. The Hydra
compose API is used (no @hydra.main): the working directory is never changed and Hydra
writes nothing; everything a run produces lives in its run directory (its layout:
snpbag.train.rundir).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from snpbag import modeldir
from snpbag.config import (RENAMED, ROOT_CONFIG, ROOT_SCHEMA, MaskingConfig, TrainConfig, config_dir, register,
                           renamed_message)
from snpbag.retrieval import kinds as retrieval
from snpbag.errors import ConfigError, SiteMismatchError, TrainingError
from snpbag.train import rundir
from snpbag.train.quiet import quiet_lightning
from snpbag.io.chrom import chrom_key

log = logging.getLogger(__name__)



# --- composing the config ------------------------------------------------------------------


def _one_line(e: BaseException) -> str:
    """Hydra/OmegaConf's explanation (the error and its cause) on one line."""
    parts: list[str] = []
    options: list[str] = []
    for err in (e, e.__cause__):
        if err is None:
            continue
        listing = False
        for ln in str(err).splitlines():
            ln = ln.strip()
            if not ln or ln.startswith(("object_type", "reference_type", "Config search path", "provider=")):
                listing = listing and not ln.startswith(("Config search path", "provider="))
                continue
            if ln.startswith("Available options"):
                listing = True
                parts.append(ln.rstrip(":"))
            elif listing:
                options.append(ln)
            elif ln not in parts:
                parts.append(ln)
    text = "; ".join(parts)
    if options:
        text += ": " + ", ".join(o for o in options if o != "schema")
    return text or type(e).__name__


def compose_config(overrides: list[str] | tuple[str, ...] = (), *, config_path: str | Path | None = None):
    """The composed (unresolved) DictConfig for command-line style ``overrides``.

    Raises
    ------
    ConfigError : an unknown group option, an unknown key or a wrongly typed value, with
        Hydra's own explanation on one line; a renamed key (snpbag.config.RENAMED), with
        its new name.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register()
    cdir = Path(config_path).resolve() if config_path else config_dir()
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3", job_name="snpbag"):
            return compose(config_name=ROOT_CONFIG, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        why = _one_line(e)
        old = re.search(r"full_key: ([\w.]+)", why)
        if old and old.group(1) in RENAMED:
            where = re.match(r"In '([^']+)'", why)
            source = cdir / f"{where.group(1)}.yaml" if where else \
                "override " + next((o for o in overrides if old.group(1) in o), old.group(1))
            raise ConfigError(f"{source}: {renamed_message(old.group(1))}") from None
        raise ConfigError(f"{cdir}: config does not compose: {why}") from None


def to_train_config(cfg) -> TrainConfig:
    """Validate a composed DictConfig into a TrainConfig (runs every __post_init__ check).

    Raises
    ------
    ConfigError : a mandatory value (``???``) is unset or a value is out of range.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    _check_keys(cfg)
    try:
        obj = OmegaConf.to_object(cfg)
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or "a value"
        raise ConfigError(f"{key} is not set; pass {key}=... on the command line") from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"invalid config: {_one_line(e)}") from None
    assert isinstance(obj, TrainConfig), f"{ROOT_SCHEMA} must compose to TrainConfig, got {type(obj)}"
    return obj


def _check_keys(node, path: str = "") -> None:
    """Refuse keys a schema does not define. Struct mode already does for YAML and plain
    overrides; this catches ``+key=value`` overrides, which Hydra force-adds."""
    import dataclasses

    from omegaconf import DictConfig, OmegaConf

    t = OmegaConf.get_type(node)
    known = {f.name for f in dataclasses.fields(t)} if dataclasses.is_dataclass(t) else None
    for key in node.keys():
        if f"{path}{key}" in RENAMED:
            raise ConfigError(renamed_message(f"{path}{key}"))
        if known is not None and key not in known:
            raise ConfigError(f"{path}{key}: no such key in {t.__name__}; known keys: {', '.join(sorted(known))}")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _check_keys(child, f"{path}{key}.")


# --- the run directory -----------------------------------------------------------------------


def run_dir_of(cfg: TrainConfig) -> Path:
    return Path(cfg.paths.run_dir) if cfg.paths.run_dir else Path(cfg.paths.runs_dir) / cfg.name


def prepare_run_dir(cfg: TrainConfig) -> tuple[Path, Path | None]:
    """(run directory, checkpoint to resume from or None).

    Raises
    ------
    ConfigError : the directory already holds checkpoints and resume is false.
    """
    run_dir = run_dir_of(cfg)
    ckpt = rundir.resume_checkpoint(run_dir) if run_dir.exists() else None
    if ckpt is not None and not cfg.resume:
        raise ConfigError(
            f"{run_dir}: run directory already holds checkpoints; pass resume=true to continue it, "
            "or name=... / paths.run_dir=... for a new run"
        )
    if cfg.resume and ckpt is None:
        log.warning("resume=true but %s has no checkpoint yet: starting from step 0", run_dir)
    if ckpt is not None:
        _check_same_model(run_dir, cfg)
    return run_dir, ckpt


def _check_same_model(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to resume a run with another model shape or head (before any weights load:
    Lightning would fail deep inside load_state_dict, or a head change would go unnoticed)."""
    from dataclasses import asdict

    from snpbag.model.model import RUNTIME_FIELDS

    before = rundir.read_config(run_dir)
    if not before or "model" not in before:
        return
    try:  # derived fields (d_ff, ...) filled in as this session's are
        was = asdict(type(cfg.model)(**before["model"]))
    except (TypeError, ConfigError):
        return  # a config of another snpbag version: the checkpoint load decides
    now = asdict(cfg.model)
    skip = set(RUNTIME_FIELDS) | {"n_sites"}  # n_sites comes from the store, checked with the vocabulary
    changed = sorted(k for k in now if k not in skip and k in was and was[k] != now[k])
    head_before = (before.get("task") or {}).get("head", {}).get("name")
    if head_before and head_before != cfg.task.head.name:
        changed.append(f"task.head.name ({head_before} -> {cfg.task.head.name})")
    if changed:
        diffs = ", ".join(c if c.startswith("task.") else f"model.{c} ({was[c]} -> {now[c]})"
                          for c in changed)
        raise ConfigError(f"{run_dir}: resume with another model than the run's ({diffs}); use the run's "
                          f"settings ({rundir.config_path(run_dir)}) or name=... for a new run")


def check_allocation(cfg: TrainConfig) -> None:
    """In a SLURM job, ``trainer.num_nodes`` x ``trainer.devices`` must be the job's tasks
    (one task per device), else ranks would wait for peers that never start.

    Raises
    ------
    ConfigError : they disagree with SLURM_NNODES / SLURM_NTASKS.
    """
    from snpbag.train.preempt import in_slurm_job

    if not in_slurm_job():
        return
    t = cfg.trainer
    nodes = int(os.environ.get("SLURM_NNODES") or os.environ.get("SLURM_JOB_NUM_NODES") or 1)
    tasks = int(os.environ["SLURM_NTASKS"])
    devices = t.devices if isinstance(t.devices, int) or str(t.devices).isdigit() else None
    if t.num_nodes != nodes or (devices is not None and int(devices) * t.num_nodes != tasks):
        raise ConfigError(
            f"trainer.num_nodes={t.num_nodes} x trainer.devices={t.devices} does not match the SLURM allocation "
            f"({nodes} node(s), {tasks} task(s)); set trainer.num_nodes=$SLURM_NNODES and "
            "trainer.devices=$SLURM_NTASKS_PER_NODE (slurm/pretrain.sbatch does)")


def _same_sites(a, b) -> str | None:
    """Why two vocabularies differ in their sites (ignoring allele frequencies), or None."""
    import numpy as np


    if a.n_sites != b.n_sites:
        return f"{a.n_sites} vs {b.n_sites} sites"
    ka = np.asarray([chrom_key(c) for c in a.chrom_names], dtype=object)[np.asarray(a.site_chrom)]
    kb = np.asarray([chrom_key(c) for c in b.chrom_names], dtype=object)[np.asarray(b.site_chrom)]
    for name, x, y in (("chromosome", ka, kb), ("position", a.position, b.position),
                       ("REF", np.asarray(a.ref, str), np.asarray(b.ref, str)),
                       ("ALT", np.asarray(a.alt, str), np.asarray(b.alt, str))):
        diff = np.flatnonzero(np.asarray(x) != np.asarray(y))
        if diff.size:
            return f"{diff.size} sites differ in {name} (first at site {int(diff[0])})"
    return None


def _store_vocab(run_dir: Path, vocab, store: str) -> None:
    """Keep the training vocabulary in the run directory (export reads it from there, so a
    run can be exported after its store has moved); on resume, check the store still matches."""
    kept = rundir.read_vocab(run_dir)
    if kept is None:
        rundir.write_vocab(run_dir, vocab)
        return
    why = _same_sites(kept, vocab)
    if why:
        raise SiteMismatchError(f"{store}: sites differ from those this run was trained on ({why}); "
                                f"resume with the original data.store")


# --- building blocks -------------------------------------------------------------------------


def retrieval_options(model_config) -> dict | None:
    """The datamodule's ``retrieval`` for a model: its retrieval settings, None without retrieval."""
    return retrieval.options(model_config)


def build_datamodule(cfg: TrainConfig):
    """GenotypeDataModule from the data and masking groups (training wraps its train loader
    so a mid-epoch resume continues the exact batch stream, see snpbag.train.resume)."""
    from snpbag.model.heads import HEADS
    from snpbag.train.resume import ResumableDataModule

    d = cfg.data
    inputs = HEADS[cfg.task.head.name].inputs if cfg.task.head.name in HEADS else ()  # unknown: refused by build_head
    val_masking = None if d.val_mask_rate is None else MaskingConfig(min_rate=d.val_mask_rate, max_rate=d.val_mask_rate)
    return ResumableDataModule(
        d.store, batch_size=d.batch_size, num_workers=d.num_workers, seq_len=d.seq_len, val_seq_len=d.val_seq_len,
        samples=d.samples, val_samples=d.val_samples, val_fraction=d.val_fraction,
        tiles=list(d.tiles) if d.tiles is not None else None, masking=cfg.masking,
        val_masking=val_masking, augment=d.augment,
        seed=cfg.seed, persistent_workers=d.persistent_workers and d.num_workers > 0, pin_memory=d.pin_memory,
        prefetch_factor=d.prefetch_factor, block_samples=d.block_samples, buffer_size=d.buffer_size,
        retrieval=retrieval_options(cfg.model), return_haplotypes="haplotypes" in inputs,
        phase_prior="phase_prior" in inputs,
    )


def model_for_run(cfg: TrainConfig, vocab):
    """The model to train: fresh from ``cfg.model``, or initialised from ``task.init_from``.

    A fresh model takes the store vocabulary's allele frequencies as its site prior.
    With ``init_from`` the architecture is the pretrained model's; ``cfg.model``'s runtime
    fields (backend, block size, window, dropout, activation checkpointing, compile) still
    apply. The encoder weights are loaded; the head's too when it has the same name.
    ``task.freeze_encoder`` leaves the encoder's weights out of training.

    Raises
    ------
    SiteMismatchError : the store's sites are not the pretrained model's, or model.n_sites
        disagrees with the store.
    CheckpointError : init_from is not a model directory.
    """
    model = _model_for_run(cfg, vocab)
    if cfg.task.freeze_encoder:
        model.encoder.requires_grad_(False)  # the optimiser skips parameters without gradients
        log.info("encoder frozen (task.freeze_encoder=true): training the %s head only", model.head_name)
    return model


def _model_for_run(cfg: TrainConfig, vocab):
    from dataclasses import replace

    from snpbag.model.builders import build_model
    from snpbag.model.model import RUNTIME_FIELDS

    head = cfg.task.head
    options = dict(head.options) if head.options else None
    if cfg.task.init_from:
        src = Path(cfg.task.init_from)
        modeldir.read_meta(src)  # a model directory of this format, before its sites are compared
        why = _same_sites(modeldir.load_vocab(src), vocab)
        if why:
            raise SiteMismatchError(f"{cfg.data.store}: sites differ from those of task.init_from={src} ({why}); "
                                    "convert the data with the model's site list")
        runtime = {k: getattr(cfg.model, k) for k in RUNTIME_FIELDS}
        model = modeldir.load_model(src, head=head.name, head_options=options, overrides=runtime)
        log.info("initialised from %s (head %s)", src, head.name)
        return model
    mcfg = cfg.model
    if mcfg.n_sites and mcfg.n_sites != vocab.n_sites:
        raise SiteMismatchError(f"model.n_sites={mcfg.n_sites} but {cfg.data.store} has {vocab.n_sites} sites; "
                                "leave model.n_sites at 0 to take it from the store")
    # the store's AF is the model's site prior (HWE log-prior in the genotype head, AF features
    # in the embedding); a model from init_from keeps the prior it was pretrained with
    return build_model(replace(mcfg, n_sites=vocab.n_sites), head.name, head_options=options, site_af=vocab.af)


def _precision(cfg: TrainConfig) -> str:
    import torch

    p = cfg.trainer.precision
    if p != "auto":
        return p
    gpu = cfg.trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"


def build_loggers(cfg: TrainConfig, run_dir: Path, config: dict[str, Any]) -> list:
    """CSV, TensorBoard and W&B loggers (Lightning calls them on rank 0 only)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from snpbag.train.callbacks import AppendingCSVLogger

    loggers: list = []
    if cfg.logger.csv:
        loggers.append(AppendingCSVLogger(save_dir=str(run_dir), name="", version=rundir.CSV))
    if cfg.logger.tensorboard:
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="", version=rundir.TENSORBOARD,
                                         default_hp_metric=False))
    w = cfg.logger.wandb
    if w.enabled and w.mode != "disabled" and os.environ.get("WANDB_MODE") != "disabled":
        from lightning.pytorch.utilities import rank_zero_only

        from snpbag.train.callbacks import StepWandbLogger

        # Only rank 0 starts a W&B run (Lightning's loggers are rank-zero); only it may
        # create the id file, or DDP ranks would race to write different ids.
        run_id = rundir.wandb_run_id(run_dir, create=rank_zero_only.rank == 0)
        loggers.append(StepWandbLogger(project=w.project, entity=w.entity, name=cfg.name, id=run_id, resume="allow",
                                       mode=w.mode, save_dir=str(run_dir), tags=list(w.tags), config=config,
                                       log_model=False))
    return loggers


def build_callbacks(cfg: TrainConfig, run_dir: Path) -> list:
    from lightning.pytorch.callbacks import LearningRateMonitor

    from snpbag.train.callbacks import HungRanks, ItemLog, LastCheckpoint, ThroughputMonitor, best_checkpoints
    from snpbag.train.preempt import Preemption

    ck = cfg.callbacks.checkpoint
    ckdir = rundir.checkpoints_dir(run_dir)
    callbacks: list = [LastCheckpoint(ckdir, every_n_steps=ck.every_n_steps),
                       Preemption(run_dir, keep=ck.keep_preempt),
                       HungRanks(timeout_s=min(cfg.trainer.collective_timeout_s, 60))]
    if cfg.callbacks.item_log:
        callbacks.append(ItemLog(run_dir))
    if ck.save_top_k > 0:
        callbacks.append(best_checkpoints(ckdir, monitor=ck.monitor, save_top_k=ck.save_top_k))
    if cfg.callbacks.throughput:
        callbacks.append(ThroughputMonitor(every_n_steps=cfg.trainer.log_every_n_steps))
    if cfg.callbacks.lr_monitor and (cfg.logger.csv or cfg.logger.tensorboard or cfg.logger.wandb.enabled):
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    return callbacks


def _strategy(cfg: TrainConfig):
    """The Lightning strategy: DDP with the configured collective timeout; fsdp: FSDP2
    (fully_shard, SnpbagModule.configure_model) over every rank, through Lightning's
    ModelParallelStrategy, which unlike its FSDPStrategy also runs on CPU with gloo (the
    tests' 2-process runs); else the name."""
    from datetime import timedelta

    t = cfg.trainer
    timeout = timedelta(seconds=t.collective_timeout_s)
    if t.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(timeout=timeout)
    if t.strategy == "fsdp":
        from lightning.pytorch.strategies import ModelParallelStrategy

        # one checkpoint file with whole weights and optimiser state, assembled on rank 0 in
        # CPU memory: resume, pruning and export read files (a sharded checkpoint is a directory)
        return ModelParallelStrategy(data_parallel_size=_world_size(cfg), tensor_parallel_size=1,
                                     save_distributed_checkpoint=False, timeout=timeout)
    return t.strategy


def _world_size(cfg: TrainConfig) -> int:
    """Processes in the run: trainer.devices (or every visible GPU / 1 CPU process for
    auto) x trainer.num_nodes."""
    import torch

    t = cfg.trainer
    if str(t.devices).isdigit():
        devices = int(t.devices)
    else:
        devices = torch.cuda.device_count() if t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else 1
    return devices * t.num_nodes


def build_trainer(cfg: TrainConfig, run_dir: Path, *, loggers: list, callbacks: list):
    from lightning import Trainer

    from snpbag.train.preempt import cluster_plugins

    t = cfg.trainer
    return Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=_strategy(cfg),
        plugins=cluster_plugins() or None,
        precision=_precision(cfg), max_steps=t.max_steps, max_epochs=-1, val_check_interval=t.val_check_interval,
        check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches,
        accumulate_grad_batches=t.accumulate_grad_batches, gradient_clip_val=cfg.optim.grad_clip or None,
        gradient_clip_algorithm="norm", log_every_n_steps=t.log_every_n_steps, deterministic=t.deterministic,
        enable_progress_bar=t.enable_progress_bar, num_sanity_val_steps=t.num_sanity_val_steps,
        enable_model_summary=False, logger=loggers or False, callbacks=callbacks, default_root_dir=str(run_dir),
    )


# --- the entry point ---------------------------------------------------------------------------


def train(overrides: list[str]) -> Path:
    """Run ``snpbag train OVERRIDES...``: compose, train (or resume), return the run directory.

    Raises
    ------
    ConfigError : the config does not compose or validate, or the run directory holds a
        run and resume is false.
    SiteMismatchError : resuming on a store with other sites, or init_from a model of other sites.
    StoreFormatError : data.store is not a snpbag store.
    """
    from omegaconf import OmegaConf

    raw = compose_config(overrides)
    cfg = to_train_config(raw)
    return fit(cfg, raw_config=OmegaConf.to_container(raw, resolve=True), overrides=overrides)


def fit(cfg: TrainConfig, *, raw_config: dict[str, Any], overrides: list[str] = ()) -> Path:
    """Train with a validated config (``raw_config`` is its plain, resolved dict)."""
    import lightning as L
    import torch
    import yaml
    from lightning.pytorch.utilities import rank_zero_only

    from snpbag.train.callbacks import HungRanks, is_collective_timeout
    from snpbag.train.lit_module import SnpbagModule

    from snpbag.train import preempt

    quiet_lightning()
    check_allocation(cfg)
    if cfg.trainer.cpu_threads:
        torch.set_num_threads(cfg.trainer.cpu_threads)
    run_dir, ckpt = prepare_run_dir(cfg)
    L.seed_everything(cfg.seed, workers=True)

    dm = build_datamodule(cfg)
    vocab = dm.store.vocab
    if rank_zero_only.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _store_vocab(run_dir, vocab, cfg.data.store)
        rundir.record_session(run_dir, config_yaml=yaml.safe_dump(raw_config, sort_keys=False),
                              overrides=list(overrides), resumed_from=ckpt)

    model = model_for_run(cfg, vocab)
    dm.use_retrieval(retrieval_options(model.config))  # with init_from the pretrained model decides
    if dm.retrieval_options is not None and rank_zero_only.rank == 0:
        # export ships the panel with the model: inference retrieves from the training genomes
        rundir.write_panel(run_dir, dm.retrieval_options.get("kind", "genomes"), dm.retrieval_panel)
    meta = {
        "model_config": model.config.to_dict(),
        "head": {"name": model.head_name, "options": dict(model.head.options)},
        "train_config": raw_config,
        "run_dir": str(run_dir.resolve()),
        "data": dm.describe(),
        "init_from": cfg.task.init_from,
    }
    total = cfg.scheduler.total_steps or cfg.trainer.max_steps
    module = SnpbagModule(model, optim=cfg.optim, scheduler=cfg.scheduler, max_steps=total,
                          site_af=vocab.af, meta=meta)
    loggers = build_loggers(cfg, run_dir, raw_config)
    callbacks = build_callbacks(cfg, run_dir)
    trainer = build_trainer(cfg, run_dir, loggers=loggers, callbacks=callbacks)
    layout = run_layout(cfg, world_size=trainer.world_size, num_nodes=trainer.num_nodes)
    if trainer.is_global_zero:
        rundir.write_run_layout(run_dir, layout)
        log.info("%d rank(s) on %d node(s); global batch %d = %d per device x %d ranks x %d accumulated",
                 layout["world_size"], layout["num_nodes"], layout["global_batch"], layout["batch_per_device"],
                 layout["world_size"], layout["accumulate_grad_batches"])
    if ckpt is not None:
        log.info("resuming %s from %s", run_dir, ckpt)
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
    except Exception as e:  # noqa: BLE001 - only collective timeouts are translated
        if is_collective_timeout(e):
            hung = next((c.hung for c in callbacks if isinstance(c, HungRanks)), None)
            who = (f"rank(s) {', '.join(map(str, hung))} did not answer (hung or dead: see their logs)" if hung
                   else "another rank is hung or dead (see its log)")
            raise TrainingError(
                f"rank {trainer.global_rank}: a collective waited longer than trainer.collective_timeout_s="
                f"{cfg.trainer.collective_timeout_s}: {who}; resubmit with resume=true") from e
        raise
    stopped = next((c for c in callbacks if isinstance(c, preempt.Preemption)), None)
    if stopped is not None and stopped.saved is not None:
        log.info("run %s pre-empted at step %d (%s)", run_dir, trainer.global_step, stopped.saved)
        if trainer.is_global_zero:
            preempt.requeue()
        return run_dir
    log.info("run %s finished at step %d", run_dir, trainer.global_step)
    return run_dir


def run_layout(cfg: TrainConfig, *, world_size: int, num_nodes: int) -> dict[str, int]:
    """Ranks, nodes and the effective global batch (sequences per optimiser step)."""
    t, per_device = cfg.trainer, cfg.data.batch_size
    return {"world_size": world_size, "num_nodes": num_nodes, "batch_per_device": per_device,
            "accumulate_grad_batches": t.accumulate_grad_batches,
            "global_batch": per_device * world_size * t.accumulate_grad_batches}

