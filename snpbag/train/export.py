"""``snpbag export``: a training checkpoint → a self-contained model directory.

The checkpoint is chosen and the run's vocabulary, retrieval panel and session records are
found through the run directory's layout (snpbag.train.rundir); the model directory is
written through its format's owner (snpbag.modeldir), under a temporary name renamed when
complete.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from snpbag import modeldir
from snpbag.errors import CheckpointError, SnpbagError
from snpbag.train import rundir
from snpbag.config import ModelConfig
from snpbag.provenance import provenance

log = logging.getLogger(__name__)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A Lightning checkpoint written by snpbag train, loaded on CPU without unpickling code."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated or foreign files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: cannot read checkpoint ({first[:200]})") from None
    if not isinstance(ckpt, dict) or "snpbag" not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(f"{path}: not a checkpoint written by `snpbag train` (no snpbag metadata)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the trained SnpbagModel (CPU, eval mode) from a loaded checkpoint: the
    weight average when the run kept one (optim.ema_decay > 0; the weights its validation
    metrics describe), else the live weights."""
    from snpbag.model.builders import build_model
    from snpbag.train.ema import apply_checkpoint_average

    meta = ckpt["snpbag"]
    cfg = replace(ModelConfig.from_dict(meta["model_config"]), compile=False)
    head = meta["head"]
    model = build_model(cfg, head["name"], head_options=head.get("options") or None)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint weights do not match its model config ({str(e).splitlines()[0]})") from None
    apply_checkpoint_average(model, ckpt)
    return model.eval()


def _vocab_for(run_dirs: list[Path], meta: dict[str, Any], ckpt_path: Path):
    """The training vocabulary: the run directory's copy (kept by snpbag train), else the store."""
    from snpbag.store.genotypes import open_store

    for d in run_dirs:
        vocab = rundir.read_vocab(d)
        if vocab is not None:
            return vocab, d
    store = (meta.get("data") or {}).get("store")
    if store:
        try:
            return open_store(store).vocab, store
        except SnpbagError as e:
            raise CheckpointError(f"{ckpt_path}: the run's vocabulary is gone and its store cannot be "
                                  f"opened ({e}); export from the original run directory") from None
    raise CheckpointError(f"{ckpt_path}: no site vocabulary found (looked in {', '.join(map(str, run_dirs))})")


def _run_provenance(run_dirs: list[Path]) -> list[dict[str, Any]]:
    for d in run_dirs:
        sessions = rundir.read_sessions(d)
        if sessions is not None:
            return sessions
    return []


def _retrieval_panel_for(run_dirs: list[Path], ckpt_path: Path, kind: str) -> Path:
    """The retrieval panel (training genomes) a retrieval model retrieves from."""
    for d in run_dirs:
        if rundir.panel_path(d, kind).is_file():
            return rundir.panel_path(d, kind)
    raise CheckpointError(f"{ckpt_path}: the model reads a {kind} retrieval panel but "
                          f"{rundir.panel_path(run_dirs[0], kind)} is gone; export from the original run directory")


def export(checkpoint: str | Path, outdir: str | Path) -> Path:
    """Write a model directory for a checkpoint or the best checkpoint of a run directory.

    Parameters
    ----------
    checkpoint : a ``.ckpt`` file, or a run directory (its best checkpoint by validation
        loss, else ``last.ckpt``).
    outdir : the model directory to create (must not exist).

    Returns
    -------
    Path of the model directory.

    Raises
    ------
    CheckpointError : no checkpoint there, unreadable, or not written by snpbag train.
    InputError : ``outdir`` already exists.
    """

    ckpt_path = rundir.select_checkpoint(checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt["snpbag"]
    run_dirs = rundir.run_dirs_of(ckpt_path, meta.get("run_dir"))
    model = model_from_checkpoint(ckpt)
    vocab, vocab_src = _vocab_for(run_dirs, meta, ckpt_path)
    if vocab.n_sites != model.config.n_sites:
        raise CheckpointError(f"{vocab_src}: {vocab.n_sites} sites but the model was trained on "
                              f"{model.config.n_sites}; export from the original run directory")
    training = {
        "checkpoint": str(ckpt_path.resolve()),
        "global_step": int(ckpt.get("global_step", meta.get("global_step", 0))),
        "epoch": int(ckpt.get("epoch", 0)),
        "val_metrics": meta.get("val_metrics", {}),
        "data": meta.get("data", {}),
        "init_from": meta.get("init_from"),
        "config": meta.get("train_config", {}),
        "provenance": _run_provenance(run_dirs),
    }
    cfg = model.config
    panel = _retrieval_panel_for(run_dirs, ckpt_path, cfg.retrieval) if cfg.uses_panel else None
    record = provenance("snpbag export", {"checkpoint": str(ckpt_path.resolve()), "outdir": str(outdir)})
    modeldir.write(outdir, model=model, vocab=vocab, training=training, provenance=record, panel=panel)
    log.info("exported %s (step %d) to %s", ckpt_path, training["global_step"], outdir)
    return Path(outdir)
