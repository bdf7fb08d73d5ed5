"""The SNPBag encoder and its heads (no file I/O: snpbag.modeldir saves and loads; presets: snpbag.config.preset). See docs/model.md."""

from snpbag.model.builders import build_encoder, build_head, build_model, parameter_counts
from snpbag.model.encoder import Encoder
from snpbag.model.heads import HEADS, Head
from snpbag.model.model import SnpbagModel
from snpbag.model.outputs import EncoderOutput, HeadOutput

__all__ = [
    "HEADS", "Encoder", "EncoderOutput", "Head", "HeadOutput", "SnpbagModel",
    "build_encoder", "build_head", "build_model", "parameter_counts",
]
