"""A training run's terminal: snpbag's lines, Lightning's warnings, none of Lightning's INFO
chatter or promotional tips unless asked for with -vv."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from snpbag.train.quiet import LIGHTNING_LOGGERS, RANK_ZERO_LOGGERS, quiet_lightning

from tiny_data import TINY_TRAIN, tiny_store

ROOT = Path(__file__).resolve().parents[1]
CHATTER = ("Tip:", "litlogger", "litmodels", "GPU available", "TPU available", "LOCAL_RANK", "Seed set",
           "`Trainer.fit` stopped", "limit_val_batches")


def test_train_cli_prints_our_lines_and_no_lightning_chatter(tmp_path):
    store = tiny_store(tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-c", "from snpbag.cli import main; main()", "-v", "train", *TINY_TRAIN,
           f"data.store={store}", f"paths.run_dir={tmp_path / 'run'}"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "snpbag.train.lit_module: step 3: val/loss" in out
    assert "snpbag.train.run: run " in out and "finished at step 6" in out
    for chatter in CHATTER:
        assert chatter not in out, f"{chatter!r} printed:\n{out}"


@pytest.fixture
def lightning_loggers():
    """Restore the loggers quiet_lightning touches."""
    names = ("snpbag", *LIGHTNING_LOGGERS, *RANK_ZERO_LOGGERS, "torchmetrics")
    saved = {n: (logging.getLogger(n).level, logging.getLogger(n).propagate, list(logging.getLogger(n).filters))
             for n in names}
    yield
    for n, (level, propagate, filters) in saved.items():
        lg = logging.getLogger(n)
        lg.setLevel(level)
        lg.propagate = propagate
        lg.filters[:] = filters


@pytest.mark.parametrize("snpbag_level, lightning_info", [
    (logging.WARNING, False),  # snpbag
    (logging.INFO, False),     # snpbag -v: our steps only
    (logging.DEBUG, True),     # snpbag -vv: Lightning's INFO too
])
def test_lightning_follows_verbosity_one_step_later_and_keeps_warnings(lightning_loggers, snpbag_level,
                                                                       lightning_info):
    logging.getLogger("snpbag").setLevel(snpbag_level)
    quiet_lightning()
    for name in (*LIGHTNING_LOGGERS, *RANK_ZERO_LOGGERS, "lightning.pytorch.accelerators.cuda"):
        lg = logging.getLogger(name)
        assert lg.isEnabledFor(logging.INFO) is lightning_info, name
        assert lg.isEnabledFor(logging.WARNING), name


def test_tips_are_dropped_even_at_debug(lightning_loggers, caplog):
    logging.getLogger("snpbag").setLevel(logging.DEBUG)
    quiet_lightning()
    quiet_lightning()  # idempotent: one filter, not two
    for name in RANK_ZERO_LOGGERS:
        lg = logging.getLogger(name)
        assert sum(type(f).__name__ == "_NoTips" for f in lg.filters) == 1
        lg.propagate = True
        with caplog.at_level(logging.DEBUG, logger=name):
            lg.info("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger]")
            lg.info("GPU available: False, used: False")
            lg.warning("a real warning")
    messages = [r.getMessage() for r in caplog.records]
    assert not any("Tip" in m for m in messages)
    assert messages.count("GPU available: False, used: False") == len(RANK_ZERO_LOGGERS)
    assert messages.count("a real warning") == len(RANK_ZERO_LOGGERS)


def test_lightning_srun_hint_is_hidden_other_warnings_kept():
    """Outside a SLURM job on a machine with srun, Lightning's hint to use srun is noise
    (snpbag's sbatch scripts launch with srun); other warnings still show."""
    import warnings

    from snpbag.train.quiet import quiet_lightning

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_lightning()
        warnings.warn("The `srun` command is available on your system but is not used. HINT: ...", UserWarning)
        warnings.warn("something else went wrong", UserWarning)
    assert [str(w.message) for w in seen] == ["something else went wrong"]
