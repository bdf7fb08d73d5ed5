"""The model directory (``snpbag export`` output): its file names, how it is written, read
and described (``snpbag info``), and its format version. No other module names these files.

A model directory is everything inference needs, without Hydra, Lightning or the training
store::

    model.safetensors   weights: encoder.* and head.*, including the site allele-frequency
                        prior (buffers, listed in the header's "buffers" metadata)
    model.json          {"format": "snpbag-model", "version": 2, "model": ModelConfig fields,
                        "head": {"name": ..., "options": {...}}}
    sites.npz           the site vocabulary: chrom, position, REF, ALT, training AF, tiles
    vocab.json          vocabulary metadata (chromosome names, tile length, min MAF)
    neighbours.npz      retrieval models only: the training genomes' dosages (snpbag.retrieval.genomes),
    haplotypes.npz      or their phased haplotypes (snpbag.retrieval.haplotypes), per model.retrieval
    training.json       run config, steps, validation metrics, data summary, training provenance
    provenance.json     the export: versions, git revision, checkpoint path

``model.json`` carries the format version, checked whenever a directory is read: version 2
made the site prior part of the weights, so version 1 directories (and directories from a
newer snpbag) are refused with a message saying what to do. Activation checkpointing and
torch.compile do not rename parameters, so a directory loads whatever those options were
when it was written or are when it is read.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from snpbag.config import ModelConfig
from snpbag.errors import CheckpointError, ConfigError
from snpbag.fileio import atomic_output
from snpbag.store.vocab import SiteVocab
from snpbag.eval import MAF_BINS

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
SITES_FILE = "sites.npz"
VOCAB_FILE = "vocab.json"
PANEL_FILES = {"genomes": "neighbours.npz", "haplotypes": "haplotypes.npz"}  # by model.retrieval
TRAINING_FILE = "training.json"
PROVENANCE_FILE = "provenance.json"
FILES = (WEIGHTS_FILE, CONFIG_FILE, SITES_FILE, VOCAB_FILE, *PANEL_FILES.values(), TRAINING_FILE, PROVENANCE_FILE)

FORMAT = "snpbag-model"
FORMAT_VERSION = 2  # 2: the site allele-frequency prior is part of the weights


@dataclass
class LoadedModel:
    """A model directory in memory: the network, its site vocabulary and its records."""

    path: Path
    model: Any  # snpbag.model.model.SnpbagModel, in eval mode
    vocab: SiteVocab
    training: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    retrieval_panel: Any = None  # the retrieval panel of a retrieval model (snpbag.retrieval.kinds), else None

    @property
    def device(self):
        return next(self.model.parameters()).device


# --- the format ------------------------------------------------------------------------------


def panel_file(kind: str) -> str:
    """The file name of a ``model.retrieval`` kind's panel (in a model or run directory)."""
    if kind not in PANEL_FILES:
        raise ConfigError(f"model.retrieval={kind!r}; choose one of {sorted(PANEL_FILES)}")
    return PANEL_FILES[kind]


def panel_files_in(directory: str | Path) -> list[str]:
    """The retrieval panel files a model directory holds: the only files of a model
    directory with individual-level genotypes (the training genomes). Empty for a
    panel-free model (model.retrieval=none), whose directory holds weights, the site list
    and the training cohort's allele frequencies only."""
    return [name for name in PANEL_FILES.values() if (Path(directory) / name).is_file()]


def read_meta(directory: str | Path) -> dict[str, Any]:
    """``model.json`` of a model directory, after checking its format and version.

    Raises
    ------
    CheckpointError : no such directory, not a model directory, unreadable, or another
        format or version.
    """
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model directory; create one with `snpbag export RUN_DIR {path}`")
    cfg_file = path / CONFIG_FILE
    if not cfg_file.is_file():
        raise CheckpointError(f"{path}: not a model directory (no {CONFIG_FILE}); create one with `snpbag export`")
    meta = _read_json(cfg_file)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file}: format {meta.get('format')!r} is not {FORMAT!r}; "
                              "create the model directory with `snpbag export`")
    version = meta.get("version", 0)
    if isinstance(version, int) and version < FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: model directory format version {version} predates the site allele-frequency prior "
            f"(version {FORMAT_VERSION}); retrain with this snpbag, or load it with the snpbag that wrote it"
        )
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: model directory format version {version!r}, but this snpbag reads version "
                              f"{FORMAT_VERSION}; upgrade snpbag, or re-export the model with this one")
    return meta


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); re-export the model directory") from None


# --- write -------------------------------------------------------------------------------------


def save_model(model, directory: str | Path) -> Path:
    """Write a SnpbagModel's weights and ``model.json`` into ``directory`` (created if
    needed). Each file is written atomically; a model already there is replaced."""
    from safetensors.torch import save_file

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "head": {"name": model.head_name, "options": model.head.options},
    }
    with atomic_output(path / WEIGHTS_FILE, overwrite=True) as tmp:
        buffers = ",".join(k for k, _ in model.named_buffers() if k in tensors)  # data, not parameters
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "head": model.head_name, "buffers": buffers})
    with atomic_output(path / CONFIG_FILE, overwrite=True) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def save_vocab(vocab: SiteVocab, directory: str | Path) -> None:
    """Write a site vocabulary's two files into ``directory`` (created if needed)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    vocab.save(path / SITES_FILE, path / VOCAB_FILE)


def write(directory: str | Path, *, model, vocab: SiteVocab, training: dict[str, Any],
          provenance: dict[str, Any], panel: str | Path | None = None) -> Path:
    """Write a whole model directory; it appears under its name only when complete.

    ``panel`` is the retrieval panel file of a retrieval model (copied as is).

    Raises
    ------
    InputError : ``directory`` already exists.
    """
    with atomic_output(directory) as tmp:
        save_model(model, tmp)
        save_vocab(vocab, tmp)
        if panel is not None:
            shutil.copyfile(panel, tmp / panel_file(model.config.retrieval))
        (tmp / TRAINING_FILE).write_text(json.dumps(training, indent=2, default=str) + "\n")
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return Path(directory)


# --- read --------------------------------------------------------------------------------------


def load_vocab(directory: str | Path) -> SiteVocab:
    """The site vocabulary written by :func:`save_vocab` (CheckpointError if unreadable)."""
    path = Path(directory)
    return SiteVocab.load(path / SITES_FILE, path / VOCAB_FILE)


def has_vocab(directory: str | Path) -> bool:
    return (Path(directory) / VOCAB_FILE).is_file()


def load_model(directory: str | Path, *, head: str | None = None, map_location="cpu",
               head_options: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None):
    """Rebuild the SnpbagModel of a model directory.

    ``head`` other than the saved one keeps the encoder weights and starts that head fresh
    (fine-tuning). ``overrides`` may change RUNTIME_FIELDS (e.g. ``{"backend": "local"}``
    to run a GPU-trained model on CPU).

    Raises
    ------
    CheckpointError : not a model directory of this format, or weights that do not match it.
    ConfigError : an override of a non-runtime field.
    """
    from safetensors.torch import load_file

    # snpbag.model imports torch: describe() and the format check need none of it
    from snpbag.model.builders import build_model
    from snpbag.model.model import RUNTIME_FIELDS

    path = Path(directory)
    meta = read_meta(path)
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CheckpointError(f"{weights_file}: missing; re-export the model directory")
    bad = set(overrides or {}) - set(RUNTIME_FIELDS)
    if bad:
        raise ConfigError(f"cannot override {sorted(bad)} when loading; only {list(RUNTIME_FIELDS)}")
    try:
        cfg = ModelConfig.from_dict({**meta["model"], **(overrides or {})})
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: bad model config ({e}); re-export the model") from None
    saved_head = meta["head"]["name"]
    name = head or saved_head
    same_head = name == saved_head
    options = (meta["head"].get("options") or {}) if same_head and head_options is None else (head_options or {})
    model = build_model(cfg, name, head_options=options)

    state = load_file(str(weights_file), device="cpu")
    if not same_head:
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        log.info("loaded encoder of %s; head %r replaces %r and starts untrained", path, name, saved_head)
    target = model if same_head else model.encoder
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(line.strip() for line in str(e).strip().splitlines()[:2])
        raise CheckpointError(f"{weights_file}: weights do not match {CONFIG_FILE} ({detail})") from None
    if not same_head:  # the new head takes the encoder's site prior
        model.set_site_prior(model.site_af)
    return model.to(map_location)


def load_panel(directory: str | Path, model_config: ModelConfig, n_sites: int):
    """The retrieval panel shipped in a model directory; CheckpointError if it is missing or
    does not cover the vocabulary."""
    # snpbag.retrieval compiles with numba
    from snpbag.retrieval.kinds import KINDS

    kind = model_config.retrieval
    path = Path(directory) / panel_file(kind)
    if not path.is_file():
        raise CheckpointError(f"{directory}: the model reads a {kind} retrieval panel but {path.name} is missing; "
                              "re-export it")
    panel = KINDS[kind].load(path)
    have = panel.by_site.shape[0]
    if have != n_sites:
        raise CheckpointError(f"{path}: {have} sites, the vocabulary {n_sites}; re-export the model directory")
    return panel


def read_panel(directory: str | Path, *, kind: str = "haplotypes"):
    """(vocabulary, retrieval panel) of a model directory without its network (no torch):
    what imputation with the copying model alone reads.

    Raises
    ------
    CheckpointError : not a model directory, or its model reads no ``kind`` panel.
    """
    path = Path(directory)
    meta = read_meta(path)
    try:
        cfg = ModelConfig.from_dict(meta["model"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: bad model config ({e}); re-export the model") from None
    if not cfg.retrieval_k or cfg.retrieval != kind:
        raise CheckpointError(f"{path}: the model reads no {kind} retrieval panel (model.retrieval={cfg.retrieval}, "
                              f"retrieval_k={cfg.retrieval_k}); use the whole model (drop --copying-only) or --ref")
    vocab = load_vocab(path)
    return vocab, load_panel(path, cfg, vocab.n_sites)


def read(directory: str | Path, *, device: str = "cpu", head: str | None = None,
         overrides: dict[str, Any] | None = None) -> LoadedModel:
    """A model directory in memory: model (eval mode) on ``device``, vocabulary, retrieval
    panel (retrieval models), training and provenance records. See snpbag.api.load_model."""
    path = Path(directory)
    model = load_model(path, head=head, map_location=device, overrides=overrides).eval()
    vocab = load_vocab(path)
    if vocab.n_sites != model.config.n_sites:
        raise CheckpointError(f"{path}: vocabulary has {vocab.n_sites} sites but the model {model.config.n_sites}; "
                              "re-export the model directory")
    panel = load_panel(path, model.config, vocab.n_sites) if model.config.uses_panel else None
    return LoadedModel(path=path, model=model, vocab=vocab, training=_read_json(path / TRAINING_FILE),
                       provenance=_read_json(path / PROVENANCE_FILE), retrieval_panel=panel)


def identity(directory: str | Path, vocab: SiteVocab | None = None) -> dict[str, Any]:
    """What outputs of a model directory record to name their model: its directory name, the
    SHA-256 of its weights file and of its site list's content (chromosome, position, REF, ALT).
    Two outputs with equal hashes come from the same weights on the same sites."""
    import hashlib

    import numpy as np

    path = Path(directory)
    h = hashlib.sha256()
    with open(path / WEIGHTS_FILE, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    vocab = vocab if vocab is not None else load_vocab(path)
    v = hashlib.sha256()
    v.update("\0".join(vocab.chrom_names).encode())
    v.update(np.ascontiguousarray(vocab.site_chrom, np.int16).tobytes())
    v.update(np.ascontiguousarray(vocab.position, np.int64).tobytes())
    v.update("\0".join(map(str, vocab.ref)).encode() + b"\1" + "\0".join(map(str, vocab.alt)).encode())
    return {"name": path.resolve().name, "weights_sha256": h.hexdigest(), "vocab_sha256": v.hexdigest()}


# --- describe ----------------------------------------------------------------------------------


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


def _panel_line(path: Path) -> str:
    """"yes (N panel haplotypes|genomes in FILE ...)" for every retrieval panel file the
    directory holds (:func:`panel_files_in`: it is then as sensitive as the panel's
    genotypes), else "no" (panel-free). Found by file, whatever model.json says, so a panel
    copied into a panel-free directory is reported too. Reads array headers only."""
    import zipfile

    import numpy as np

    names = panel_files_in(path)
    if not names:
        return "no: weights, site list and allele frequencies only (panel-free)"
    found = []
    for name in names:
        panel = path / name
        try:
            with zipfile.ZipFile(panel) as z:
                if name == PANEL_FILES["haplotypes"]:
                    with z.open("n_haplotypes.npy") as f:
                        n, what = int(np.lib.format.read_array(f)), "panel haplotypes"
                else:
                    with z.open("dosage.npy") as f:
                        fmt = np.lib.format
                        header = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
                        n, what = header(f)[0][0], "panel genomes"
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
            raise CheckpointError(f"{panel}: unreadable retrieval panel ({e}); re-export the model directory") from None
        found.append(f"{n:,} {what} in {name}")
    return f"yes ({'; '.join(found)}: share the directory as you would the panel)"


def describe(directory: str | Path) -> str:
    """A human-readable description of a model directory (what ``snpbag info`` prints).

    Reads only the small files and the weights' header: architecture, parameter count,
    sites, tiles and chromosomes, the training data and run, validation metrics next to
    the allele-frequency baseline, and provenance.

    Raises
    ------
    CheckpointError : not a model directory of this format, or its files are unreadable.
    """
    import numpy as np
    from rich.console import Console
    from rich.table import Table


    p = Path(directory)
    meta = read_meta(p)
    mcfg, head = meta.get("model", {}), meta.get("head", {})
    if not (p / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{p / WEIGHTS_FILE}: missing; re-export the model directory")
    total, parts = _parameter_count(p / WEIGHTS_FILE)
    vocab = load_vocab(p)
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
    if mcfg.get("site_code", "table") != "table" or mcfg.get("ffn", "gelu") != "gelu" \
            or mcfg.get("norm", "layernorm") != "layernorm":
        t_model.add_row("design", f"site code {mcfg.get('site_code', 'table')}, feed-forward {mcfg.get('ffn', 'gelu')}, "
                        f"norm {mcfg.get('norm', 'layernorm')}")
    t_model.add_row("contains genotypes", _panel_line(p))

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



def write_small_model(directory: str | Path, *, config_file: str, weights_file: str, meta: dict[str, Any],
                      state_dict: dict[str, Any], extra: dict[str, str] | None = None) -> Path:
    """Write a small model's directory (see :func:`read_small_model`) as a whole, under a
    temporary name renamed when complete: the weights, ``meta`` as JSON and ``extra``
    (file name -> text) beside them.

    Raises
    ------
    InputError : ``directory`` exists.
    """
    from safetensors.torch import save_file

    with atomic_output(directory) as tmp:
        tmp.mkdir(parents=True)
        save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp / weights_file))
        (tmp / config_file).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text)
    return Path(directory)


def read_small_model(directory: str | Path, *, config_file: str, weights_file: str, fmt: str, version: int,
                     kind: str, writer: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metadata, weights) of a small model's directory: a JSON with ``format``/``version``/
    ``config`` beside a safetensors file (the population classifier, the relatedness
    classifier). Each format's file names stay with its command; the checks are shared here.

    Raises
    ------
    CheckpointError : no such directory or JSON, unreadable JSON, another format or version.
    """
    from safetensors.torch import load_file

    meta = read_small_model_meta(directory, config_file=config_file, fmt=fmt, version=version, kind=kind,
                                 writer=writer)
    return meta, load_file(str(Path(directory) / weights_file))


def read_small_model_meta(directory: str | Path, *, config_file: str, fmt: str, version: int, kind: str,
                          writer: str) -> dict[str, Any]:
    """The checked metadata of a small model's directory (:func:`read_small_model`), for a
    reader that streams its weights file."""
    p = Path(directory)
    cfg_file = p / config_file
    if not cfg_file.is_file():
        raise CheckpointError(f"{p}: not a {kind} directory (no {config_file}); write one with `{writer}`")
    try:
        meta = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({e}); write it again with `{writer}`") from None
    if meta.get("format") != fmt or meta.get("version") != version:
        raise CheckpointError(f"{cfg_file}: format {meta.get('format')} version {meta.get('version')}, "
                              f"this snpbag reads {fmt} version {version}; retrain with `{writer}`")
    return meta

