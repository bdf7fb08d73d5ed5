"""Python facade over model directories (``snpbag export`` output).

A model directory is self-contained (its format: snpbag.modeldir): inference needs neither
Hydra nor the store the model was trained on. Task functions (imputation, phasing,
embedding, kinship) live in snpbag.inference and start from a loaded model directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from snpbag import modeldir
from snpbag.inference import relate
from snpbag.modeldir import LoadedModel

__all__ = ["LoadedModel", "info", "load_model"]


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
    LoadedModel with the model in eval mode, its SiteVocab, retrieval panel (retrieval
    models), training and provenance records.

    Raises
    ------
    CheckpointError : not a model directory, or files missing, corrupt or of another format.
    ConfigError : an override of a non-runtime field.
    """
    return modeldir.read(path, device=device, head=head, overrides=overrides)


def info(model: str | Path) -> str:
    """A human-readable description of a model directory (what ``snpbag info`` prints).

    Reads only the small files and the weights' header: architecture, parameter count,
    sites, tiles and chromosomes, the training data and run, validation metrics next to
    the allele-frequency baseline, and provenance. A relate directory (``snpbag relate
    train``) is described by :func:`snpbag.inference.relate.describe`: its classes, training
    pairs and how it calls degrees.

    Parameters
    ----------
    model : model directory written by ``snpbag export``, or a relate directory.

    Returns
    -------
    Text with one table per topic.

    Raises
    ------
    CheckpointError : not a model directory of this format, or its files are unreadable.
    """
    if (Path(model) / relate.CONFIG_FILE).is_file():
        return relate.describe(model)
    return modeldir.describe(model)
