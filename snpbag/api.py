"""Python facade over model directories (``snpbag export`` output).

A model directory is self-contained (snpbag.train.export): inference needs neither Hydra
nor the store the model was trained on. Task functions (imputation, phasing, embedding,
kinship) live in snpbag.inference and start from :func:`load_model`.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snpbag.errors import CheckpointError

log = logging.getLogger(__name__)

MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
TRAINING_FILE = "training.json"
PROVENANCE_FILE = "provenance.json"


@dataclass
class LoadedModel:
    """A model directory in memory: the network, its site vocabulary and its records."""

    path: Path
    model: Any  # snpbag.model.model.SnpbagModel, in eval mode
    vocab: Any  # snpbag.store.vocab.SiteVocab
    training: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    retrieval_panel: Any = None  # the retrieval panel of a retrieval model (snpbag.retrieval.kinds), else None

    @property
    def device(self):
        return next(self.model.parameters()).device


def _check_model_dir(path: Path) -> None:
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory; create one with `snpbag export RUN_DIR {path}`")
    if not (path / MODEL_FILE).is_file():
        raise CheckpointError(f"{path}: not a model directory (no {MODEL_FILE}); create one with `snpbag export`")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); re-export the model directory") from None


def load_model(path: str | Path, *, device: str = "cpu", head: str | None = None,
               overrides: dict[str, Any] | None = None) -> LoadedModel:
    """Load a model directory for inference.

    Parameters
    ----------
    path : directory written by ``snpbag export``.
    device : torch device to place the model on ("cpu", "cuda", "cuda:1").
    head : load the encoder under another head (fresh weights for that head); default
        the saved head.
    overrides : runtime ModelConfig fields to change (backend, block_size, window,
        dropout, activation_checkpointing, compile), e.g. ``{"backend": "local"}``.

    Returns
    -------
    LoadedModel with the model in eval mode, its SiteVocab, training and provenance records.

    Raises
    ------
    CheckpointError : not a model directory, or files missing, corrupt or of another format.
    ConfigError : an override of a non-runtime field.
    """
    from snpbag.store.vocab import SiteVocab
    from snpbag.model.model import SnpbagModel

    p = Path(path)
    _check_model_dir(p)
    model = SnpbagModel.load(p, head=head, map_location=device, overrides=overrides).eval()
    vocab = SiteVocab.load(p)
    if vocab.n_sites != model.config.n_sites:
        raise CheckpointError(f"{p}: vocabulary has {vocab.n_sites} sites but the model {model.config.n_sites}; "
                              "re-export the model directory")
    panel = None
    if model.config.retrieval_k:
        from snpbag.retrieval import kinds as retrieval

        panel = retrieval.load(p, model.config, vocab.n_sites)
    return LoadedModel(path=p, model=model, vocab=vocab, training=_read_json(p / TRAINING_FILE),
                       provenance=_read_json(p / PROVENANCE_FILE), retrieval_panel=panel)


def _parameter_count(weights: Path) -> tuple[int, dict[str, int]]:
    """Total parameters and per top-level component, from the safetensors header only."""
    from safetensors import safe_open

    total, parts = 0, {}
    try:
        with safe_open(str(weights), framework="pt") as f:
            buffers = set(filter(None, (f.metadata() or {}).get("buffers", "").split(",")))
            for k in f.keys():
                if k in buffers:  # e.g. the site allele frequencies: stored, not trained
                    continue
                n = 1
                for d in f.get_slice(k).get_shape():
                    n *= int(d)
                total += n
                part = "site tables" if k.startswith(("encoder.embed.site.", "encoder.embed.allele.")) else k.split(".")[0] + (
                    " (rest)" if k.startswith("encoder.") else "")
                parts[part] = parts.get(part, 0) + n
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{weights}: unreadable weights ({e}); re-export the model directory") from None
    return total, parts


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return "-" if x is None else str(x)


def info(model: str | Path) -> str:
    """A human-readable description of a model directory (what ``snpbag info`` prints).

    Reads only the small files and the weights' header: architecture, parameter count,
    sites, tiles and chromosomes, the training data and run, validation metrics next to
    the allele-frequency baseline, and provenance.

    Parameters
    ----------
    model : model directory written by ``snpbag export``.

    Returns
    -------
    Text with one table per topic.

    Raises
    ------
    CheckpointError : not a model directory, or its files are unreadable.
    """
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from snpbag.store.vocab import SiteVocab
    from snpbag.eval import MAF_BINS

    p = Path(model)
    _check_model_dir(p)
    meta = _read_json(p / MODEL_FILE)
    mcfg, head = meta.get("model", {}), meta.get("head", {})
    if not (p / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{p / WEIGHTS_FILE}: missing; re-export the model directory")
    total, parts = _parameter_count(p / WEIGHTS_FILE)
    vocab = SiteVocab.load(p)
    training = _read_json(p / TRAINING_FILE)
    prov = _read_json(p / PROVENANCE_FILE)

    def table(title: str) -> Table:
        t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold", no_wrap=True)
        t.add_column(overflow="fold")
        return t

    t_model = table("Model")
    t_model.add_row("directory", str(p.resolve()))
    t_model.add_row("preset", str(mcfg.get("name", "-")))
    t_model.add_row("architecture", f"{mcfg.get('n_layers')} layers x {mcfg.get('n_heads')} heads, "
                    f"d_model {mcfg.get('d_model')}, d_ff {mcfg.get('d_ff')}, site_dim {mcfg.get('site_dim')}")
    t_model.add_row("attention", f"sliding window {mcfg.get('window')} sites, backend {mcfg.get('backend')}")
    t_model.add_row("head", f"{head.get('name', '-')}" + (f" {head.get('options')}" if head.get("options") else ""))
    t_model.add_row("parameters", f"{total:,}  (" + ", ".join(f"{k} {v:,}" for k, v in parts.items()) + ")")

    used = np.unique(np.asarray(vocab.site_chrom))
    chroms = [vocab.chrom_names[i] for i in used.tolist()]
    pos = np.asarray(vocab.position)
    af = np.asarray(vocab.af, dtype=np.float64)
    maf = np.minimum(af, 1 - af)
    t_sites = table("Sites")
    t_sites.add_row("sites", f"{vocab.n_sites:,} biallelic SNPs, MAF >= {vocab.min_maf:g}")
    t_sites.add_row("tiles", f"{vocab.n_tiles:,} of up to {vocab.tile_len:,} sites")
    t_sites.add_row("chromosomes", ", ".join(chroms) if chroms else "-")
    if vocab.n_sites:
        per_chrom = []
        for c in used.tolist():
            sel = np.asarray(vocab.site_chrom) == c
            per_chrom.append(f"{vocab.chrom_names[c]}:{int(pos[sel].min()):,}-{int(pos[sel].max()):,}")
        t_sites.add_row("span", "; ".join(per_chrom[:6]) + (" ..." if len(per_chrom) > 6 else ""))
        counts = np.histogram(maf, bins=np.asarray(MAF_BINS))[0]
        t_sites.add_row("MAF bins", ", ".join(f"{100 * a:g}-{100 * b:g}%: {n:,}"
                                              for a, b, n in zip(MAF_BINS[:-1], MAF_BINS[1:], counts)))

    data = training.get("data", {}) or {}
    t_train = table("Training")
    t_train.add_row("store", _fmt(data.get("store")))
    t_train.add_row("samples", f"{_fmt(data.get('train_samples'))} training, {_fmt(data.get('val_samples'))} validation")
    masking = data.get("masking") or {}
    if masking:
        desc = f"random {masking.get('min_rate')}-{masking.get('max_rate')}"
        if masking.get("array"):
            desc += f" (weight {masking.get('random')}); array {masking.get('array_sites')} (weight {masking.get('array')})"
        t_train.add_row("masking", desc)
    # model directories exported before data.seq_len took the name record it as "window"
    t_train.add_row("seq_len", f"{_fmt(data.get('seq_len', data.get('window')))} sites per sequence")
    t_train.add_row("steps", f"{_fmt(training.get('global_step'))} (epoch {_fmt(training.get('epoch'))})")
    t_train.add_row("init_from", _fmt(training.get("init_from")))
    t_train.add_row("checkpoint", _fmt(training.get("checkpoint")))

    vm = training.get("val_metrics", {}) or {}
    t_val = table("Validation (masked genotypes)")
    if vm:
        t_val.add_row("loss", _fmt(vm.get("val/loss")))
        t_val.add_row("accuracy", f"{_fmt(vm.get('val/acc'))}  (allele-frequency baseline {_fmt(vm.get('val/base_acc'))}, "
                      f"gain {vm.get('val/acc_gain', float('nan')):+.4f})")
        for key, label in (("hom_ref", "hom-ref"), ("het", "het"), ("hom_alt", "hom-alt")):
            if f"val/acc_{key}" in vm:
                t_val.add_row(f"  true {label}", f"{_fmt(vm[f'val/acc_{key}'])}  (baseline {_fmt(vm.get(f'val/base_acc_{key}'))})")
        for a, b in zip(MAF_BINS[:-1], MAF_BINS[1:]):
            k = f"{a:g}-{b:g}"
            if f"val/acc_maf_{k}" in vm:
                t_val.add_row(f"  MAF {100 * a:g}-{100 * b:g}%", f"{_fmt(vm[f'val/acc_maf_{k}'])}  "
                              f"(baseline {_fmt(vm.get(f'val/base_acc_maf_{k}'))})")
        if "val/n_scored" in vm:
            t_val.add_row("scored genotypes", f"{int(vm['val/n_scored']):,}")
    else:
        t_val.add_row("-", "no validation metrics recorded")

    sessions = training.get("provenance") or []
    first = sessions[0] if sessions else {}
    t_prov = table("Provenance")
    versions = prov.get("versions") or first.get("versions") or {}
    t_prov.add_row("trained", f"{first.get('timestamp', '-')} on {first.get('host', '-')}, "
                   f"git {first.get('git_revision') or '-'}" + (f", {len(sessions)} sessions" if len(sessions) > 1 else ""))
    t_prov.add_row("exported", f"{prov.get('timestamp', '-')}, git {prov.get('git_revision') or '-'}")
    t_prov.add_row("versions", ", ".join(f"{k} {v}" for k, v in versions.items() if v))

    buf = io.StringIO()
    console = Console(file=buf, width=110, no_color=True, force_terminal=False, highlight=False)
    for t in (t_model, t_sites, t_train, t_val, t_prov):
        console.print(t)
        console.print()
    return "\n".join(line.rstrip() for line in buf.getvalue().rstrip().splitlines()) + "\n"
