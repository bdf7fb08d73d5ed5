"""Seq2KING entry points that sit above ``kinship/``: genome embeddings as tokens, and the
Hydra task.

* The embeddings file of ``snpbag embed`` (owned by :mod:`snpbag.inference.embedout`, this
  layer) read into the one-vector-per-individual table that ``snpbag.kinship.seq2king``
  matches to the kinship individuals by sample id.
* ``snpbag train task=seq2king task.KEY=VALUE ...``: configs/task/seq2king.yaml composed by Hydra
  (an unknown key fails at compose time), then the same training as ``snpbag seq2king train``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snpbag.config import config_dir
from snpbag.errors import ConfigError, InputError
from snpbag.inference.embedout import read_embeddings as _read
from snpbag.kinship.seq2king import train as s2k_train
from snpbag.kinship.seq2king.config import Seq2KingConfig, make_config
from snpbag.kinship.seq2king.inputs import TokenVectors


def read_embeddings(path: str | Path) -> TokenVectors:
    """One float32 vector per sample: the pooled embedding (``--pool mean``) or, without pooling,
    the sample's patches side by side.

    Raises
    ------
    InputError : not an embeddings file of ``snpbag embed``; duplicated sample ids.
    """
    emb = _read(path)
    if len(set(emb.samples)) != len(emb.samples):
        raise InputError(f"--embeddings {path}: duplicated sample ids; embed each individual once")
    matrix = np.asarray(emb.matrix(flat=True), dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise InputError(f"--embeddings {path}: non-finite values; re-run `snpbag embed` (flagged patches "
                         "are left out with --pool mean)")
    return TokenVectors(list(emb.samples), matrix, str(path), emb.identity)


#: The ``snpbag train`` override that selects Seq2KING, and its config (configs/task/seq2king.yaml).
HYDRA_TASK = "task=seq2king"
TASK_CONFIG = "task/seq2king"
#: Keys of the task config that are inputs of :func:`snpbag.kinship.seq2king.train.train`, not model settings.
INPUT_KEYS = ("kinship", "out", "kinship_column", "embeddings", "overwrite")


def compose_task(overrides: list[str] | tuple[str, ...]) -> tuple[dict, Seq2KingConfig]:
    """(inputs, config) of ``snpbag train task=seq2king task.KEY=VALUE ...`` composed by Hydra from
    configs/task/seq2king.yaml.

    Raises
    ------
    ConfigError : an unknown key or a bad value (one line, Hydra's reason), task.kinship or task.out not given.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    rest = [o for o in overrides if o != HYDRA_TASK]
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3", job_name="snpbag"):
            cfg = compose(config_name=TASK_CONFIG, overrides=rest)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(f"snpbag train {HYDRA_TASK}: give {' '.join(f'{k}=...' for k in missing)} "
                              "(e.g. task.kinship=cohort.kin0 task.out=s2k_model)")
        values = OmegaConf.to_container(cfg)["task"]  # the file's keys sit under task., as every task's
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(f"snpbag train {HYDRA_TASK}: {str(e).strip().splitlines()[0]}") from None
    inputs = {k: values.pop(k) for k in INPUT_KEYS}
    return inputs, make_config("seq2king_paper", values)


def train_task(overrides: list[str] | tuple[str, ...]) -> Path:
    """``snpbag train task=seq2king ...``: compose, then train exactly as ``snpbag seq2king train``."""
    inputs, config = compose_task(overrides)
    embeddings = read_embeddings(inputs["embeddings"]) if inputs["embeddings"] else None
    return s2k_train.train(inputs["kinship"], out=inputs["out"], config=config, overwrite=inputs["overwrite"],
                           kinship_column=inputs["kinship_column"], embeddings=embeddings)
