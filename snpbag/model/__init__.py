"""The SNPBag encoder, its heads and presets (no file I/O: snpbag.modeldir saves and loads). See docs/model.md."""

from snpbag.model.builders import PRESETS, build_encoder, build_head, build_model, parameter_counts, preset
from snpbag.model.encoder import Encoder
from snpbag.model.heads import HEADS, Head
from snpbag.model.model import SnpbagModel
from snpbag.model.outputs import EncoderOutput, HeadOutput

__all__ = [
    "HEADS", "PRESETS", "Encoder", "EncoderOutput", "Head", "HeadOutput", "SnpbagModel",
    "build_encoder", "build_head", "build_model", "parameter_counts", "preset",
]
