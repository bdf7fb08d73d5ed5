"""Loaders of TileDataset batches, and the Lightning DataModule over a genotype store.

:func:`make_loader` builds the DataLoader (epoch-aware under Lightning, packed transport
from workers, seeded workers); :class:`GenotypeDataModule` adds the sample split and the
train/val/predict stages. It takes the masking and augmentation as the typed objects of
:mod:`snpbag.config` (snpbag.train.run passes the composed ones), other options as plain
values.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from snpbag.config import AugmentConfig, MaskingConfig
from snpbag.data.batch import Batch, collate
from snpbag.data.dataset import TileDataset
from snpbag.store.genotypes import GenotypeStore, open_store
from snpbag.data.tokens import IGNORE_INDEX, MISSING
from snpbag.io.vcf import read_sample_file
from snpbag.errors import ConfigError, SampleError

log = logging.getLogger(__name__)


# --- loaders --------------------------------------------------------------------------------


class _EpochSampler(Sampler):
    """Stands in for the DataLoader's dummy sampler of an IterableDataset and forwards
    ``set_epoch`` - which Lightning calls on ``loader.sampler`` at every epoch start - to
    the dataset."""

    def __init__(self, dataset: TileDataset) -> None:
        self.dataset = dataset

    def __iter__(self):
        while True:
            yield None

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


class GenotypeLoader(DataLoader):
    """DataLoader over a TileDataset: epoch-aware under Lightning (see _EpochSampler) and
    resolves the DDP rank in the main process before workers start."""

    @property
    def sampler(self):
        return self.__dict__["_snpbag_sampler"]

    @sampler.setter
    def sampler(self, value) -> None:
        if isinstance(self.dataset, TileDataset):
            value = _EpochSampler(self.dataset)
        self.__dict__["_snpbag_sampler"] = value

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __iter__(self):
        if isinstance(self.dataset, TileDataset):
            self.dataset.resolve_rank()
        it = super().__iter__()
        if self.collate_fn is collate_compact:
            return _Widening(it, pin=self.pin_memory and torch.cuda.is_available())
        return it


class _Widening:
    """Iterator that turns compact batches from workers into the long-typed Batch contract."""

    def __init__(self, it, *, pin: bool) -> None:
        self.it, self.pin = it, pin

    def __iter__(self):
        return self

    def __next__(self) -> Batch:
        return widen(next(self.it), pin=self.pin)

    def __len__(self) -> int:
        return len(self.it)


# Field → dtype in a packed batch: int8 tokens and targets (IGNORE_INDEX = -100 fits), int32
# sites and positions, int64 per-sequence scalars.
_PACKED = {"genotype": np.int8, "truth": np.int8, "target": np.int8, "site_index": np.int32, "position": np.int32,
           "valid": np.bool_, "haplotypes": np.int8, "retrieval": np.float32, "phase_prior": np.float32, "tile": np.int64, "sample": np.int64,
           "offset": np.int64}
_PAD = {"genotype": MISSING, "truth": MISSING, "target": IGNORE_INDEX, "haplotypes": -1, "phase_prior": np.nan}
_TORCH = {np.dtype(np.int8): torch.int8, np.dtype(np.int32): torch.int32, np.dtype(np.int64): torch.int64,
          np.dtype(np.bool_): torch.bool, np.dtype(np.float32): torch.float32}


@dataclass
class PackedBatch:
    """A Batch in one uint8 buffer: ``layout`` is (field, numpy dtype, shape, byte offset)."""

    buf: torch.Tensor
    layout: list[tuple[str, str, tuple[int, ...], int]]


def collate_compact(items: list[dict[str, Any]]) -> PackedBatch:
    """Like snpbag.data.batch.collate, packed into one buffer of narrow dtypes (12 bytes per
    site instead of 41, one tensor instead of nine).

    Used in DataLoader workers: moving a batch to the main process costs time per tensor and
    per byte (shared-memory segments and page faults; ~10 ms for a nine-tensor 1 MB batch on
    the 2-core VM, docs/benchmarks.md), so workers send packed batches and the loader
    widens them (:func:`widen`) in the main process.
    """
    L = max(len(it["genotype"]) for it in items)
    B = len(items)
    shapes: dict[str, tuple[int, ...]] = {}
    for key in ("genotype", "site_index", "position", "target", "truth", "haplotypes", "retrieval", "phase_prior"):
        if items[0].get(key) is not None:
            shapes[key] = (B, L) + np.shape(items[0][key])[1:]
    shapes["valid"] = (B, L)
    shapes.update(tile=(B,), sample=(B,), offset=(B,))
    layout, off = [], 0
    for key, shape in shapes.items():
        dt = np.dtype(_PACKED[key])
        layout.append((key, dt.str, shape, off))
        off += -(-int(np.prod(shape)) * dt.itemsize // 8) * 8  # keep every field 8-byte aligned
    buf = np.empty(off, dtype=np.uint8)
    views = {k: buf[o:o + int(np.prod(sh)) * np.dtype(d).itemsize].view(d).reshape(sh) for k, d, sh, o in layout}
    for key in shapes:
        if key in ("tile", "sample", "offset"):
            views[key][:] = [int(it.get(key, 0)) for it in items]
            continue
        v = views[key]
        v[...] = _PAD.get(key, 0)
        for i, it in enumerate(items):
            n = len(it["genotype"])
            v[i, :n] = True if key == "valid" else it[key]
    return PackedBatch(torch.from_numpy(buf), layout)


def widen(packed: PackedBatch, *, pin: bool = False) -> Batch:
    """The Batch contract (long tensors, bool ``valid``) from a packed batch; optionally
    page-locked."""
    out: dict[str, torch.Tensor | None] = {"truth": None, "haplotypes": None, "retrieval": None, "phase_prior": None}
    for key, dt, shape, off in packed.layout:
        d = np.dtype(dt)
        raw = packed.buf[off:off + int(np.prod(shape)) * d.itemsize].view(_TORCH[d]).reshape(shape)
        v = raw.clone() if d.kind in "bf" else raw.long()  # copies: the shared buffer can go
        out[key] = v.pin_memory() if pin else v
    return Batch(**out)


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: seed numpy's and Python's global RNGs from the worker's torch seed
    (the dataset itself uses only its own seeded generators)."""
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def make_loader(
    dataset: TileDataset,
    *,
    num_workers: int = 0,
    persistent_workers: bool = False,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
    multiprocessing_context: str | None = None,
) -> GenotypeLoader:
    """A DataLoader for ``dataset`` with its batch size, the Batch collate and seeded workers.

    Parameters
    ----------
    dataset : the TileDataset (its ``batch_size`` is the loader's).
    num_workers : worker processes (0: load in the main process).
    persistent_workers : keep workers between epochs (needs num_workers > 0).
    pin_memory : page-locked batches for faster host-to-GPU copies.
    prefetch_factor : batches prefetched per worker (None: torch's default).
    multiprocessing_context : "fork", "spawn" or "forkserver" (None: the platform default).

    Returns
    -------
    GenotypeLoader yielding snpbag.data.batch.Batch (long tensors). Workers send compact
    batches (see :func:`collate_compact`) that the loader widens in the main process;
    ``pin_memory`` pins the widened tensors (Batch has no ``pin_memory`` method of its own).
    """
    kw: dict[str, Any] = {}
    if num_workers > 0:
        kw.update(persistent_workers=persistent_workers, worker_init_fn=seed_worker,
                  multiprocessing_context=multiprocessing_context)
        if prefetch_factor is not None:
            kw["prefetch_factor"] = prefetch_factor
    elif persistent_workers:
        log.info("persistent_workers ignored with num_workers=0")
    return GenotypeLoader(dataset, batch_size=dataset.batch_size, num_workers=num_workers,
                          collate_fn=collate_compact if num_workers > 0 else collate, pin_memory=pin_memory, **kw)


def n_batches(dataset: TileDataset) -> int:
    """Batches per rank per epoch, the same on every rank."""
    return math.ceil(len(dataset) / dataset.batch_size)


# --- the DataModule ---------------------------------------------------------------------------


def _plain(x: Any) -> Any:
    """OmegaConf containers → plain Python (Hydra passes nested configs as DictConfig)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return x
    if isinstance(x, (DictConfig, ListConfig)):
        return OmegaConf.to_container(x, resolve=True)
    return x


def split_samples(n: int, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random (train, val) split of rows ``0..n-1``; both sorted.

    ``round(val_fraction * n)`` validation samples, at least one when ``val_fraction > 0``
    and at least one training sample always.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction={val_fraction}: must be in [0, 1)")
    k = int(round(val_fraction * n))
    if val_fraction > 0:
        k = max(k, 1)
    k = min(k, n - 1)
    perm = np.random.default_rng([int(seed), 0x5EED]).permutation(n)
    return np.sort(perm[k:]), np.sort(perm[:k])


class GenotypeDataModule(L.LightningDataModule):
    """Train/val/predict loaders of (sample x tile stretch) sequences from one store.

    Parameters
    ----------
    store : store path or fsspec URL (``snpbag convert`` output).
    batch_size : sequences per batch (per rank).
    num_workers : DataLoader worker processes per rank (0: main process).
    seq_len : training sequence length in sites (a random crop of each tile); None →
        whole tiles.
    val_seq_len : evaluation sequence length; default ``seq_len``. Validation and prediction
        cut each tile into consecutive sequences (the last shorter).
    samples : file of sample ids (one per line) to use at all; default every store sample.
    val_samples : file of held-out sample ids; overrides ``val_fraction``.
    val_fraction : fraction of samples held out for validation, chosen at random by
        ``seed`` (0 → no validation loader).
    predict_samples : file of sample ids for ``predict_dataloader``; default all samples.
    tiles : indices of the vocabulary tiles to use (list of ints); default all.
    masking : which genotypes training hides; default ``MaskingConfig()`` (random 85-99 %).
    val_masking : masking of validation sequences; default ``masking``. Validation masks
        are fixed by ``seed`` (the same every epoch).
    predict_masking : masking for prediction; default None (nothing hidden, no targets).
    augment : synthetic training genomes recombined from the training samples when
        ``augment.enabled`` (validation always uses real held-out samples); None: none.
    seed : seeds the split, shuffles, crops, masks and augmentation.
    persistent_workers : keep workers alive between epochs.
    pin_memory : page-locked batches (GPU training).
    prefetch_factor : batches prefetched per worker (None: torch default of 2).
    block_samples : samples read together per stretch of a tile; None → ~262,144 sites per read (see
        TileDataset).
    buffer_size : training shuffle buffer, in sequences; None → 4 x block_samples.
    uneven : "pad" or "drop": how ranks are given equal item counts (see TileDataset).
    return_haplotypes : add phased alleles to batches (phasing heads).
    phase_prior : add the copying model's relative phase to batches (the phasing head's
        prior; needs a haplotype ``retrieval`` panel, see TileDataset).
    retrieval : the retrieval options of a model (snpbag.retrieval.kinds.options: kind, k,
        span, genetic_map), or None: batches then carry the panel's (L, 3) input, the panel
        being built from the training samples.
    storage_options : fsspec options for URL stores.
    multiprocessing_context : "fork", "spawn" or "forkserver" for workers (None: default).

    Raises
    ------
    ConfigError : invalid values (checked when the datasets are built in ``setup``).
    SampleError : sample files naming absent samples, validation covering all samples.
    StoreFormatError : the store cannot be opened.
    """

    def __init__(
        self,
        store: str,
        *,
        batch_size: int = 8,
        num_workers: int = 0,
        seq_len: int | None = 1024,
        val_seq_len: int | None = None,
        samples: str | None = None,
        val_samples: str | None = None,
        val_fraction: float = 0.1,
        predict_samples: str | None = None,
        tiles: list[int] | None = None,
        masking: MaskingConfig | None = None,
        val_masking: MaskingConfig | None = None,
        predict_masking: MaskingConfig | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        prefetch_factor: int | None = None,
        block_samples: int | None = None,
        buffer_size: int | None = None,
        uneven: str = "pad",
        return_haplotypes: bool = False,
        phase_prior: bool = False,
        retrieval: dict | None = None,
        storage_options: dict | None = None,
        multiprocessing_context: str | None = None,
    ) -> None:
        super().__init__()
        # the typed configs go into hparams as plain dicts: checkpoints stay loadable with
        # torch.load(weights_only=True), and loggers write them as ordinary values
        typed = ("masking", "val_masking", "predict_masking", "augment")
        self.save_hyperparameters(ignore=typed)
        self.hparams.update({k: None if v is None else asdict(v) for k, v in
                             zip(typed, (masking, val_masking, predict_masking, augment))})
        self.store_path = str(store)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.seq_len = seq_len
        self.val_seq_len = val_seq_len if val_seq_len is not None else seq_len
        self.samples_file, self.val_samples_file = samples, val_samples
        self.val_fraction = float(val_fraction)
        self.predict_samples_file = predict_samples
        self.tiles = _plain(tiles)
        self.masking = MaskingConfig() if masking is None else masking
        self.val_masking = self.masking if val_masking is None else val_masking
        self.predict_masking = predict_masking
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = int(seed)
        self.persistent_workers, self.pin_memory = bool(persistent_workers), bool(pin_memory)
        self.prefetch_factor = prefetch_factor
        self.block_samples, self.buffer_size = block_samples, buffer_size
        self.uneven = uneven
        self.return_haplotypes = bool(return_haplotypes)
        self.phase_prior = bool(phase_prior)
        self.retrieval_options = _plain(retrieval)  # {"kind": .., "k": .., "span": ..} or None
        self._retrieval_panel = None
        self.storage_options = _plain(storage_options)
        self.multiprocessing_context = multiprocessing_context
        if self.batch_size < 1 or self.num_workers < 0:
            raise ConfigError(
                f"batch_size={batch_size}, num_workers={num_workers}: need batch_size >= 1 and num_workers >= 0"
            )
        self._store: GenotypeStore | None = None
        self.train_dataset: TileDataset | None = None
        self.val_dataset: TileDataset | None = None
        self.predict_dataset: TileDataset | None = None

    # --- store and samples ---------------------------------------------------------------------
    @property
    def store(self) -> GenotypeStore:
        if self._store is None:
            self._store = open_store(self.store_path, storage_options=self.storage_options)
        return self._store

    @property
    def n_sites(self) -> int:
        """Vocabulary size (the model's ``n_sites``)."""
        return self.store.vocab.n_sites

    def _rows(self, path: str | None) -> np.ndarray | None:
        return None if path is None else np.sort(self.store.sample_index(read_sample_file(path)))

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, val rows) of the store, sorted."""
        pool = self._rows(self.samples_file)
        if pool is None:
            pool = np.arange(self.store.n_samples, dtype=np.int64)
        if self.val_samples_file is not None:
            val = self._rows(self.val_samples_file)
            outside = np.setdiff1d(val, pool)
            if outside.size:
                ids = self.store.sample_ids[outside[:5]].tolist()
                raise SampleError(f"{self.val_samples_file}: validation samples {ids} are not in the --samples list")
            train = np.setdiff1d(pool, val)
        else:
            tr, va = split_samples(pool.size, val_fraction=self.val_fraction, seed=self.seed)
            train, val = pool[tr], pool[va]
        if train.size == 0:
            raise SampleError(
                f"{self.store_path}: no training samples left after holding out {val.size} for validation"
            )
        return train, val

    @property
    def train_sample_ids(self) -> list[str]:
        return self.store.sample_ids[self.split()[0]].tolist()

    @property
    def val_sample_ids(self) -> list[str]:
        return self.store.sample_ids[self.split()[1]].tolist()

    def use_retrieval(self, options: dict | None) -> None:
        """Set the ``retrieval`` option before the datasets are built (a fine-tuned model's
        retrieval settings come from its pretrained model, known only after it loads)."""
        options = _plain(options)
        if options != self.retrieval_options:
            if self.train_dataset is not None or self.val_dataset is not None:
                raise ConfigError("retrieval: set it before the datasets are built")
            self.retrieval_options, self._retrieval_panel = options, None

    @property
    def retrieval_panel(self):
        """The training samples as a retrieval panel (snpbag.retrieval.kinds; None unless
        ``retrieval`` was given): every split's sequences retrieve from the training genomes."""
        if self.retrieval_options is not None and self._retrieval_panel is None:
            from snpbag.retrieval import kinds as retrieval

            self._retrieval_panel = retrieval.build(self.store, self.split()[0], self.retrieval_options)
            log.info("data: %s retrieval panel of %d training genomes (%s)", type(self._retrieval_panel).__name__,
                     self._retrieval_panel.n_genomes, self.retrieval_options)
        return self._retrieval_panel

    # --- Lightning hooks -----------------------------------------------------------------------
    def _dataset(self, samples, *, training: bool, seq_len, masking, augment=None) -> TileDataset:
        return TileDataset(
            self.store, samples=samples, tiles=self.tiles, seq_len=seq_len, training=training, masking=masking,
            augment=augment, seed=self.seed, batch_size=self.batch_size, uneven=self.uneven,
            block_samples=self.block_samples, buffer_size=self.buffer_size,
            return_haplotypes=self.return_haplotypes, phase_prior=self.phase_prior, retrieval=self.retrieval_panel,
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of a stage. Called by Lightning after DDP is initialised, so each
        dataset takes its rank from torch.distributed."""
        if stage in (None, "fit", "validate"):
            train, val = self.split()
            if stage in (None, "fit"):
                self.train_dataset = self._dataset(train, training=True, seq_len=self.seq_len, masking=self.masking,
                                                   augment=self.augment)
            self.val_dataset = None if val.size == 0 else self._dataset(
                val, training=False, seq_len=self.val_seq_len, masking=self.val_masking)
            log.info("data: %d training and %d validation samples, %d tiles, %d sites",
                     train.size, val.size, self.store.n_tiles, self.n_sites)
        if stage in (None, "predict"):
            rows = self._rows(self.predict_samples_file)
            self.predict_dataset = self._dataset(rows, training=False, seq_len=self.val_seq_len,
                                                 masking=self.predict_masking)

    def _loader(self, ds: TileDataset) -> GenotypeLoader:
        return make_loader(ds, num_workers=self.num_workers, persistent_workers=self.persistent_workers,
                           pin_memory=self.pin_memory, prefetch_factor=self.prefetch_factor,
                           multiprocessing_context=self.multiprocessing_context)

    def train_dataloader(self) -> GenotypeLoader:
        if self.train_dataset is None:
            self.setup("fit")
        return self._loader(self.train_dataset)

    def val_dataloader(self):
        if self.val_dataset is None and self.train_dataset is None:
            self.setup("validate")
        return [] if self.val_dataset is None else self._loader(self.val_dataset)

    def predict_dataloader(self) -> GenotypeLoader:
        if self.predict_dataset is None:
            self.setup("predict")
        return self._loader(self.predict_dataset)

    def set_epoch(self, epoch: int) -> None:
        """Set the training epoch by hand (Lightning does it through the loader's sampler)."""
        if self.train_dataset is not None:
            self.train_dataset.set_epoch(epoch)

    def describe(self) -> dict[str, Any]:
        """Plain summary for logs and model directories."""
        train, val = self.split()
        return {"store": self.store_path, "n_sites": self.n_sites, "n_tiles": self.store.n_tiles,
                "train_samples": int(train.size), "val_samples": int(val.size), "seq_len": self.seq_len,
                "masking": asdict(self.masking), "augment": None if self.augment is None else asdict(self.augment)}
