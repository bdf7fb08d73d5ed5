"""SnpbagModel = Encoder + Head. It opens no file: a model directory is written and read by
snpbag.modeldir.

The state dict includes the site allele-frequency prior (``encoder.embed.site_af`` and, for
heads that use it, ``head.site_af``): a model directory predicts with the frequencies of
the cohort it was trained on, whatever the target data's frequencies are.
"""

from __future__ import annotations

import torch
from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.errors import ConfigError
from snpbag.model.encoder import Encoder
from snpbag.model.heads.base import Head
from snpbag.model.outputs import EncoderOutput, HeadOutput

# ModelConfig fields that change how the model runs, not its weights: loading a model directory
# may override them (snpbag.modeldir.load_model)
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
