"""``snpbag export``: a training checkpoint → a self-contained model directory.

The directory is everything inference needs, without Hydra, Lightning or the training
store::

    model.safetensors   weights (encoder.* and head.*; the     } written by SnpbagModel.save
                        weight average if the run kept one)   }
    model.json          ModelConfig + head name and options   }
    sites.npz           the site vocabulary: chrom, position, REF, ALT, training AF, tiles
    vocab.json          vocabulary metadata (chromosome names, tile length, min MAF)
    neighbours.npz      retrieval models only: the training genomes' dosages (snpbag.retrieval.genomes),
    haplotypes.npz      or their phased haplotypes (snpbag.retrieval.haplotypes), per model.retrieval
    training.json       run config, steps, validation metrics, data summary, training provenance
    provenance.json     this export: versions, git revision, checkpoint path

It is written under a temporary name and renamed when complete (snpbag.fileio).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from snpbag.retrieval import kinds as retrieval
from snpbag.errors import CheckpointError
from snpbag.fileio import atomic_output

log = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
PROVENANCE_FILE = "provenance.json"
_BEST = re.compile(r"^step=(\d+)-.+=(-?[0-9.]+(?:e[-+]?\d+)?|nan|inf)\.ckpt$")


def select_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``export`` uses for ``path``.

    A file is used as is. For a run directory: the best (lowest validation loss) of the
    top-k checkpoints, else ``last.ckpt``.

    Raises
    ------
    CheckpointError : nothing to export there.
    """
    p = Path(path)
    if p.is_file():
        return p
    ckdir = p / "checkpoints" if (p / "checkpoints").is_dir() else p
    if not ckdir.is_dir():
        raise CheckpointError(f"{p}: no such checkpoint file or run directory")
    scored = []
    for f in ckdir.glob("*.ckpt"):
        m = _BEST.match(f.name)
        if m:
            scored.append((float(m.group(2)), -int(m.group(1)), f))
    if scored:
        return min(scored)[2]
    last = ckdir / "last.ckpt"
    if last.is_file():
        return last
    raise CheckpointError(f"{ckdir}: no checkpoints (*.ckpt) to export; has the run saved one yet?")


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
    from snpbag.config import ModelConfig
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


def _vocab_for(meta: dict[str, Any], ckpt_path: Path):
    """The training vocabulary: RUN_DIR/vocab (kept by snpbag train), else the store."""
    from snpbag.store.genotypes import open_store
    from snpbag.store.vocab import SiteVocab
    from snpbag.errors import SnpbagError

    candidates = [ckpt_path.resolve().parent.parent / "vocab"]
    if meta.get("run_dir"):
        candidates.insert(0, Path(meta["run_dir"]) / "vocab")
    for c in candidates:
        if (c / "vocab.json").is_file():
            return SiteVocab.load(c), c
    store = (meta.get("data") or {}).get("store")
    if store:
        try:
            return open_store(store).vocab, store
        except SnpbagError as e:
            raise CheckpointError(f"{ckpt_path}: the run's vocab/ directory is gone and its store cannot be "
                                  f"opened ({e}); export from the original run directory") from None
    raise CheckpointError(f"{ckpt_path}: no site vocabulary found (looked in {', '.join(map(str, candidates))})")


def _run_provenance(meta: dict[str, Any], ckpt_path: Path) -> list[dict[str, Any]]:
    for run_dir in filter(None, (meta.get("run_dir"), ckpt_path.resolve().parent.parent)):
        f = Path(run_dir) / "provenance.json"
        if f.is_file():
            try:
                return json.loads(f.read_text()).get("sessions", [])
            except (json.JSONDecodeError, AttributeError):
                log.warning("%s is unreadable; the model directory records no training provenance", f)
    return []


def _retrieval_panel_for(meta: dict[str, Any], ckpt_path: Path, kind: str) -> Path:
    """RUN_DIR/<panel file>: the training genomes a retrieval model retrieves from."""
    name = retrieval.file_name(kind)
    run_dir = Path(meta.get("run_dir") or ckpt_path.parent.parent)
    for d in (run_dir, ckpt_path.parent.parent):
        if (d / name).is_file():
            return d / name
    raise CheckpointError(f"{ckpt_path}: the model reads a {kind} retrieval panel but {run_dir / name} is gone; "
                          "export from the original run directory")


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
    from snpbag.provenance import provenance

    ckpt_path = select_checkpoint(checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    meta = ckpt["snpbag"]
    model = model_from_checkpoint(ckpt)
    vocab, vocab_src = _vocab_for(meta, ckpt_path)
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
        "provenance": _run_provenance(meta, ckpt_path),
    }
    cfg = model.config
    panel = _retrieval_panel_for(meta, ckpt_path, cfg.retrieval) if cfg.retrieval_k else None
    with atomic_output(outdir) as tmp:
        model.save(tmp)
        vocab.save(tmp)
        if panel is not None:
            shutil.copyfile(panel, tmp / panel.name)
        (tmp / TRAINING_FILE).write_text(json.dumps(training, indent=2, default=str) + "\n")
        record = provenance("snpbag export", {"checkpoint": str(ckpt_path.resolve()), "outdir": str(outdir)})
        (tmp / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    log.info("exported %s (step %d) to %s", ckpt_path, training["global_step"], outdir)
    return Path(outdir)
