"""SnpbagModel = Encoder + Head, and the only file I/O in snpbag.model: save and load.

A saved model is two files in a directory (the exporter adds sites, provenance, ...):

* ``model.safetensors``: the state dict, keys ``encoder.*`` and ``head.*``;
* ``model.json``: ``{"format": "snpbag-model", "version": 2, "model": ModelConfig fields,
  "head": {"name": ..., "options": {...}}}``.

The state dict includes the site allele-frequency prior (``encoder.embed.site_af`` and, for
heads that use it, ``head.site_af``): a model directory predicts with the frequencies of
the cohort it was trained on, whatever the target data's frequencies are. Version 1
directories predate that prior and are refused with a message.

Activation checkpointing and torch.compile do not rename parameters, so a checkpoint loads
whatever those options were when it was written or are when it is read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.errors import CheckpointError, ConfigError
from snpbag.fileio import atomic_output
from snpbag.model.encoder import Encoder
from snpbag.model.heads.base import Head
from snpbag.model.outputs import EncoderOutput, HeadOutput

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"
FORMAT = "snpbag-model"
FORMAT_VERSION = 2  # 2: the site allele-frequency prior is part of the weights
# ModelConfig fields that change how the model runs, not its weights: load() may override them
RUNTIME_FIELDS = ("backend", "block_size", "activation_checkpointing", "compile", "dropout", "window")


class SnpbagModel(nn.Module):
    def __init__(self, encoder: Encoder, head: Head) -> None:
        super().__init__()
        if not head.name:
            raise ConfigError(f"{type(head).__name__} has no registry name; set its `name` and add it to HEADS")
        self.encoder = encoder
        self.head = head

    @property
    def config(self) -> ModelConfig:
        return self.encoder.cfg

    @property
    def head_name(self) -> str:
        return self.head.name

    @property
    def site_af(self) -> torch.Tensor:
        """(n_sites,) ALT allele frequency the model was built with (negative: unknown)."""
        return self.encoder.embed.site_af

    def set_site_prior(self, af) -> None:
        """Give the model the training cohort's ALT allele frequency of every vocabulary site
        (NaN where unknown): the encoder's AF features and, for heads that take it (the
        genotype head's Hardy-Weinberg log-prior), the head's. ConfigError on a wrong length
        or a value outside [0, 1]."""
        self.encoder.embed.set_site_prior(af)
        if hasattr(self.head, "set_site_prior"):
            self.head.set_site_prior(af)

    def embed(self, batch: Batch, *, return_attn: bool = False) -> EncoderOutput:
        return self.encoder(batch, return_attn=return_attn)

    def forward(self, batch: Batch, *, return_attn: bool = False) -> HeadOutput:
        enc = self.encoder(batch, return_attn=return_attn)
        out = self.head(enc, batch)
        if return_attn:
            out.extras["attentions"] = enc.attentions
        return out

    # --- checkpoint I/O --------------------------------------------------------------

    def save(self, dirpath: str | Path) -> Path:
        """Write weights and config into ``dirpath`` (created if needed). Each file is written
        atomically; an existing model in the directory is replaced."""
        from safetensors.torch import save_file

        path = Path(dirpath)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": self.config.to_dict(),
            "head": {"name": self.head_name, "options": self.head.options},
        }
        with atomic_output(path / WEIGHTS_FILE, overwrite=True) as tmp:
            buffers = ",".join(k for k, _ in self.named_buffers() if k in tensors)  # data, not parameters
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "head": self.head_name, "buffers": buffers})
        with atomic_output(path / CONFIG_FILE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(
        cls,
        dirpath: str | Path,
        head: str | None = None,
        map_location: str | torch.device = "cpu",
        *,
        head_options: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> "SnpbagModel":
        """Rebuild a saved model. ``head`` other than the saved one keeps the encoder weights
        and starts that head fresh (fine-tuning). ``overrides`` may change RUNTIME_FIELDS
        (e.g. ``{"backend": "local"}`` to run a GPU-trained model on CPU)."""
        from safetensors.torch import load_file

        from snpbag.model.builders import build_model

        path = Path(dirpath)
        cfg_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
        for f in (cfg_file, weights_file):
            if not f.is_file():
                raise CheckpointError(f"{f}: missing; is {path} a model directory written by `snpbag export`?")
        try:
            meta = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{cfg_file}: not valid JSON ({e}); re-export the model") from None
        if meta.get("format") == FORMAT and meta.get("version", 0) < FORMAT_VERSION:
            raise CheckpointError(
                f"{cfg_file}: format version {meta.get('version')!r} predates the site allele-frequency prior "
                f"(version {FORMAT_VERSION}); retrain with this snpbag, or load it with the snpbag that wrote it"
            )
        if meta.get("format") != FORMAT or meta.get("version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{cfg_file}: format {meta.get('format')!r} version {meta.get('version')!r} is not "
                f"{FORMAT!r} <= {FORMAT_VERSION}; upgrade snpbag or re-export the model"
            )
        bad = set(overrides or {}) - set(RUNTIME_FIELDS)
        if bad:
            raise ConfigError(f"cannot override {sorted(bad)} when loading; only {list(RUNTIME_FIELDS)}")
        try:
            cfg = ModelConfig.from_dict({**meta["model"], **(overrides or {})})
        except (ConfigError, KeyError, TypeError) as e:
            raise CheckpointError(f"{cfg_file}: bad model config ({e}); re-export the model") from None
        saved_head = meta["head"]["name"]
        name = head or saved_head
        same_head = name == saved_head
        options = (meta["head"].get("options") or {}) if same_head and head_options is None else (head_options or {})
        model = build_model(cfg, name, head_options=options)

        state = load_file(str(weights_file), device="cpu")
        if not same_head:
            state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
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
