"""HEADS maps the head name saved in a model directory (and used in configs/) to its class."""

from snpbag.model.heads.base import LEVELS, Head
from snpbag.model.heads.embed import TileEmbeddingHead
from snpbag.model.heads.genotype import MaskedGenotypeHead

HEADS: dict[str, type[Head]] = {
    MaskedGenotypeHead.name: MaskedGenotypeHead,
    TileEmbeddingHead.name: TileEmbeddingHead,
}

__all__ = ["HEADS", "LEVELS", "Head", "MaskedGenotypeHead", "TileEmbeddingHead"]
