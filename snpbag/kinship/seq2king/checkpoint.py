"""The Seq2KING model directory: ``seq2king.json`` (config, individuals, split, anchors,
normalisation, input, embedding standardisation, training record, provenance) and ``seq2king.safetensors`` (weights).

It is not a genotype model directory (snpbag/modeldir.py): no sites, no vocabulary; the two
formats share nothing but the idea, so each has one owner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from snpbag.errors import CheckpointError
from snpbag.kinship.seq2king.config import Seq2KingConfig
from snpbag.kinship.seq2king.sentences import Normaliser

META_FILE = "seq2king.json"
WEIGHTS_FILE = "seq2king.safetensors"
FORMAT = "snpbag-seq2king"
FORMAT_VERSION = 1


def save(model, meta: dict[str, Any], directory: Path) -> None:
    """Write the weights and the metadata into ``directory`` (created)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(directory / WEIGHTS_FILE))
    (directory / META_FILE).write_text(json.dumps({"format": FORMAT, "version": FORMAT_VERSION, **meta}, indent=1) + "\n")


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The metadata of a Seq2KING model directory; CheckpointError when it is not one."""
    path = Path(directory) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"--model {directory}: not a Seq2KING model directory ({e}); "
                              "train one with `snpbag seq2king train`") from None
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"--model {directory}: format {meta.get('format')} v{meta.get('version')}, "
                              f"this snpbag reads {FORMAT} v{FORMAT_VERSION}; retrain with `snpbag seq2king train`")
    return meta


def load(directory: str | Path):
    """(model in eval mode, metadata, config, normaliser) of a Seq2KING model directory."""
    from safetensors.torch import load_file

    from snpbag.kinship.seq2king.model import Seq2King

    meta = read_meta(directory)
    cfg = Seq2KingConfig(**meta["config"])
    n_inputs = meta["embedding"]["dim"] if meta.get("embedding") else len(meta["anchors"])
    model = Seq2King(cfg, n_individuals=len(meta["ids"]), n_inputs=n_inputs)
    model.load_state_dict(load_file(str(Path(directory) / WEIGHTS_FILE)))
    model.eval()
    return model, meta, cfg, Normaliser(**meta["normaliser"])


def as_rows(ids: np.ndarray, names: list[str]) -> np.ndarray:
    """Row numbers of ``names`` in ``ids`` (all present: the model's own lists)."""
    pos = {s: i for i, s in enumerate(ids.tolist())}
    return np.array([pos[s] for s in names], dtype=np.int64)
