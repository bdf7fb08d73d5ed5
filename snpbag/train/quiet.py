"""What Lightning itself says during a snpbag run.

A run's terminal shows snpbag's own lines, the progress bar and Lightning's warnings and
errors. Lightning's INFO lines (seed, GPU/TPU availability, LOCAL_RANK, "`Trainer.fit`
stopped") follow snpbag's verbosity one step later: they appear only when snpbag logs at
DEBUG (``snpbag -vv``), so ``-v`` shows snpbag's steps without Lightning's. Lightning's
promotional tips are dropped at every level.
"""

from __future__ import annotations

import logging
import warnings

# loggers Lightning sets to INFO on import (lightning/__init__.py and its pytorch/fabric
# packages); their children inherit from them
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
# rank_zero_info logs through lightning_utilities' module logger, which lightning renames
# to one of these on import
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
TIP_PREFIX = "💡 Tip:"


class _NoTips(logging.Filter):
    """Drops Lightning's advertisements (litlogger, litmodels), which it logs as INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith(TIP_PREFIX)


_NO_TIPS = _NoTips()


def quiet_lightning() -> None:
    """Set Lightning's loggers from snpbag's verbosity, drop its tips, hide its notes on
    things snpbag does on purpose, and stop its lines printing twice under the CLI's handler.

    Called by :func:`snpbag.train.run.fit` just before Lightning is used; idempotent.
    """
    snpbag_level = logging.getLogger("snpbag").getEffectiveLevel()
    level = logging.INFO if snpbag_level <= logging.DEBUG else logging.WARNING
    root_has_handlers = bool(logging.getLogger().handlers)
    for name in LIGHTNING_LOGGERS:
        lg = logging.getLogger(name)
        lg.setLevel(level)
        # Lightning adds its own handler; with the CLI's root handler too, each line would print twice
        if lg.handlers and root_has_handlers:
            lg.propagate = False
    tm = logging.getLogger("torchmetrics")
    if tm.handlers and root_has_handlers:
        tm.propagate = False
    for name in RANK_ZERO_LOGGERS:
        lg = logging.getLogger(name)
        if _NO_TIPS not in lg.filters:
            lg.addFilter(_NO_TIPS)
    # a sized IterableDataset (its length is exact per rank, see snpbag.data.dataset) and
    # appending to the CSV log on resume are on purpose; the LeafSpec deprecation is
    # inside Lightning's own calls to torch
    warnings.filterwarnings("ignore", message=r".*IterableDataset.*has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # on a machine with SLURM installed, outside a job: snpbag's sbatch scripts launch with srun
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system but is not used.*")
