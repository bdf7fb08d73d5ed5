"""HEADS maps the head name saved in a model directory (and used in configs/) to its class."""

from snpbag.model.heads.base import LEVELS, Head
from snpbag.model.heads.embed import PatchEmbeddingHead
from snpbag.model.heads.genotype import MaskedGenotypeHead

HEADS: dict[str, type[Head]] = {
    MaskedGenotypeHead.name: MaskedGenotypeHead,
    PatchEmbeddingHead.name: PatchEmbeddingHead,
}

__all__ = ["HEADS", "LEVELS", "Head", "MaskedGenotypeHead", "PatchEmbeddingHead"]
