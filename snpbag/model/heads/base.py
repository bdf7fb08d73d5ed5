"""The head contract: a module that reads an EncoderOutput and a Batch and returns a HeadOutput.

Heads are composed with the encoder (snpbag.model.model.SnpbagModel), never subclassed from
it, so swapping a head keeps the encoder weights. A head declares the level it works at;
pooling over sites (sample heads) or pairing samples (pair heads) is the head's own job.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from snpbag.config import ModelConfig
from snpbag.data.batch import Batch
from snpbag.model.outputs import EncoderOutput, HeadOutput

LEVELS = ("site", "patch", "sample", "pair")  # patch: one output per fixed run of sites (embed)


class Head(nn.Module):
    name: ClassVar[str] = ""  # key in snpbag.model.heads.HEADS and in saved model directories
    level: ClassVar[str] = "site"  # one of LEVELS
    # Batch fields the head reads beyond the encoder's (the data module is asked for them)
    inputs: ClassVar[tuple[str, ...]] = ()
    needs_panel: ClassVar[bool] = False  # refuses a panel-free model (model.retrieval=none)

    def __init__(self, cfg: ModelConfig, **options: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.options = dict(options)  # saved with the model so load() rebuilds the same head

    def forward(self, enc_out: EncoderOutput, batch: Batch) -> HeadOutput:
        raise NotImplementedError
