"""HEADS maps the head name saved in a model directory (and used in configs/) to its class."""

from snpbag.model.heads.base import LEVELS, Head
from snpbag.model.heads.embed import PatchEmbeddingHead
from snpbag.model.heads.genotype import MaskedGenotypeHead
from snpbag.model.heads.phase import PhaseHead

HEADS: dict[str, type[Head]] = {
    MaskedGenotypeHead.name: MaskedGenotypeHead,
    PatchEmbeddingHead.name: PatchEmbeddingHead,
    PhaseHead.name: PhaseHead,
}

__all__ = ["HEADS", "LEVELS", "Head", "MaskedGenotypeHead", "PatchEmbeddingHead", "PhaseHead"]
