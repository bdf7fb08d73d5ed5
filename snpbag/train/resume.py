"""Exact resume in the middle of an epoch.

The training stream of snpbag.data.dataset.TileDataset is a pure function of
``(seed, epoch)``, but it is an IterableDataset with a shuffle buffer, so a run resumed
after ``k`` batches of an epoch cannot start "at item k": Lightning would restart the epoch
from its first batch and train on batches 0, 1, ... again. ResumableLoader records how
many batches of the current epoch it has handed out (Lightning stores that in every
checkpoint, because the loader has ``state_dict``/``load_state_dict``) and, after a resume,
fast-forwards the same epoch's stream past them: data is read and masked again, but no
model work is repeated. The cost is at most one epoch of data loading.

The loader also defers creating the underlying iterator to the first ``next()``, i.e.
after Lightning has set the epoch on the sampler; worker processes therefore always start
on the right epoch, including the first epoch after a resume.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from snpbag.data.datamodule import GenotypeDataModule

log = logging.getLogger(__name__)


class ResumableLoader:
    """Wraps a training DataLoader whose batch stream depends only on the epoch."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self._epoch_seen: int | None = None
        self._served = 0
        self._pending: dict[str, int] | None = None

    # Lightning reads these off the loader: epoch setting, length, batch size
    @property
    def sampler(self):
        return self.loader.sampler

    @property
    def dataset(self):
        return self.loader.dataset

    @property
    def batch_size(self):
        return self.loader.batch_size

    def __len__(self) -> int:
        return len(self.loader)

    def _epoch(self) -> int:
        return int(getattr(self.loader.dataset, "epoch", 0))

    def __iter__(self) -> Iterator[Any]:
        # a generator: nothing below runs until the first next(), after set_epoch
        epoch = self._epoch()
        skip = 0
        if self._pending is not None:
            if self._pending["epoch"] == epoch and self._pending["batches"] < len(self.loader):
                skip = self._pending["batches"]
            self._pending = None
        self._epoch_seen, self._served = epoch, skip
        it = iter(self.loader)
        if skip:
            log.info("resume: fast-forwarding %d batches of epoch %d", skip, epoch)
            for _ in range(skip):
                next(it)
        for batch in it:
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch_seen if self._epoch_seen is not None else self._epoch(),
                "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._pending = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


class ResumableDataModule(GenotypeDataModule):
    """GenotypeDataModule whose training loader is a ResumableLoader."""

    def train_dataloader(self) -> ResumableLoader:  # type: ignore[override]
        return ResumableLoader(super().train_dataloader())
