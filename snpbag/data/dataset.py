"""Per-sequence items (one sample x ``seq_len`` sites of one tile) streamed from a genotype store.

:class:`TileDataset` is an ``IterableDataset`` because good throughput needs control of
the read pattern: genotypes are chunked 16 samples x 8192 variants (snpbag.store.schema),
so the dataset reads a *block* of samples for one stretch of a tile at once (one decode per
chunk serves many sequences), then yields the block's sequences through a bounded shuffle
buffer so batches still mix tiles and samples.

The epoch plan (which blocks, in which order, who reads them) is a pure function of
``(seed, epoch)`` and the sharding, so:

* every (sample, tile[, sequence]) item is produced exactly once per epoch over all DDP
  ranks x DataLoader workers, plus at most ``world_size - 1`` repeats when
  ``uneven="pad"`` (the first items of the epoch's order, so every rank has the same
  count) or minus at most ``world_size - 1`` items with ``uneven="drop"`` (the last ones of
  the epoch's order; a different set each epoch). Equal counts per rank matter: Lightning
  DDP hangs when one rank runs out of batches before the others.
* a rank's items are split among its workers in whole batches, so the DataLoader yields
  exactly ``ceil(len(dataset) / batch_size)`` batches per rank (its reported length).
* masks and crops are functions of the item and epoch only, not of the worker layout:
  changing ``num_workers`` changes the order of items, never their content.

Training (``training=True``): items are shuffled, each (sample, tile) gets one random
stretch of ``seq_len`` sites (shared by the samples of a read block, so one read serves
them all), and masks differ from epoch to epoch. Evaluation (``training=False``): store
order, every tile cut into consecutive sequences of ``seq_len`` sites (the last one
shorter), masks fixed by ``seed`` so validation losses compare across epochs.

With ``augment`` the training items are synthetic genomes recombined on the fly from the
dataset's samples (snpbag.data.augment), ``sample = -1``.

Use :func:`snpbag.data.datamodule.make_loader` (the DataModule does): its loader forwards the
``sampler.set_epoch`` that Lightning calls each epoch to the dataset (also to persistent
workers, through a shared-memory epoch counter), and its workers send packed narrow-dtype
batches that it widens to the long-typed Batch contract in the main process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from snpbag.config import AugmentConfig, MaskingConfig
from snpbag.data.augment import flatten_panel, synthetic_genome
from snpbag.retrieval.haplotypes import HaplotypePanel
from snpbag.retrieval.relphase import copying_prior
from snpbag.io.genmap import GeneticMap, genetic_positions, read_genetic_map
from snpbag.data.masking import Masker, array_site_mask, genotype_tokens, unmasked
from snpbag.store.genotypes import GenotypeStore, open_store
from snpbag.errors import ConfigError, SampleError

log = logging.getLogger(__name__)

UNEVEN = ("pad", "drop")
# Independent random streams, mixed into every seed so crops, masks, ... never correlate.
_GROUPS, _ORDER, _CROP, _MASK, _BUFFER, _SYNTH = range(1, 7)


@dataclass
class _Plan:
    """One epoch's blocks. Block ``b`` covers samples ``order[lo[b]:hi[b]]`` of region ``region[b]``;
    its items are global indices ``cum[b]:cum[b+1]``."""

    order: np.ndarray  # (n_samples,) store rows, in the epoch's grouping order
    region: np.ndarray  # (n_blocks,) index into TileDataset._regions
    lo: np.ndarray  # (n_blocks,)
    cum: np.ndarray  # (n_blocks + 1,)

    @property
    def n_items(self) -> int:
        return int(self.cum[-1])


class TileDataset(IterableDataset):
    """Genotype sequences for (sample x tile stretch) items of a store; see the module docstring.

    Parameters
    ----------
    store : store path or fsspec URL, or an open GenotypeStore (it pickles by path).
    samples : store rows (ints) or sample ids (strs) to use; default all samples.
    tiles : indices of the vocabulary tiles to use; default all.
    seq_len : sites per sequence; None → whole tiles. Training crops one random stretch
        per (sample, tile); evaluation cuts each tile into consecutive sequences.
    training : shuffle, random crops, per-epoch masks and augmentation (see module docstring).
    masking : which genotypes are hidden; None → nothing hidden (prediction: input = truth,
        no targets).
    augment : synthetic training genomes (used when ``augment.enabled``); training only.
    seed : base seed of every random choice.
    batch_size : the DataLoader's batch size; workers get whole batches so the loader's
        length is exact. ``snpbag.data.datamodule.make_loader`` keeps the two in step.
    rank, world_size : DDP position; default from torch.distributed when initialised
        (resolved again when iteration starts), else 0 and 1.
    uneven : "pad" (repeat the first items) or "drop" (drop the last items) so every rank
        yields the same number of items.
    block_samples : samples read together for one stretch. Default: ~262,144 sites per read
        (``2**18 // seq_len``, a multiple of the store's 16-sample chunk, 16..1024), which
        amortises the per-read overhead for short sequences and bounds memory for long ones.
    buffer_size : shuffle-buffer capacity in sequences (training). Default: 4 x block_samples,
        so batches mix at least four blocks (tile stretches). Memory per worker ~
        buffer_size x seq_len x 4 bytes (6 with haplotypes) plus one block read
        (block_samples x seq_len x 3 bytes). With ``augment``: synthetic genomes made from one
        panel read (default at least ``augment.panel_size``).
    return_haplotypes : include phased alleles (L, 2) in items (phasing heads).
    phase_prior : include ``phase_prior`` (L,), the haplotype-copying model's relative phase of
        the item's visible genotypes against ``retrieval`` (a HaplotypePanel), its own genomes
        left out (:func:`snpbag.retrieval.relphase.copying_prior`; the phasing head's prior).
    retrieval : a retrieval panel (:mod:`snpbag.retrieval.kinds`, built from store rows):
        items carry ``retrieval`` (L, 3), the panel's genotype probabilities given the
        on the sequence's visible sites — never the sequence's own genome, nor, for a
        synthetic genome, the panel genomes it was recombined from.
    storage_options : fsspec options when ``store`` is a URL.

    Raises
    ------
    ConfigError : invalid seq_len, block/buffer sizes, uneven mode, rank/world or masking/augment config.
    SampleError : unknown, duplicate or out-of-range samples; no samples or tiles selected.
    StoreFormatError : the store cannot be opened (see snpbag.store.genotypes.open_store).
    """

    def __init__(
        self,
        store: str | Path | GenotypeStore,
        *,
        samples: Sequence[int] | Sequence[str] | np.ndarray | None = None,
        tiles: Sequence[int] | None = None,
        seq_len: int | None = None,
        training: bool = True,
        masking: MaskingConfig | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        batch_size: int = 1,
        rank: int | None = None,
        world_size: int | None = None,
        uneven: str = "pad",
        block_samples: int | None = None,
        buffer_size: int | None = None,
        return_haplotypes: bool = False,
        phase_prior: bool = False,
        retrieval=None,
        storage_options: dict | None = None,
    ) -> None:
        super().__init__()
        self.store = store if isinstance(store, GenotypeStore) else open_store(store, storage_options=storage_options)
        self._pid = os.getpid()
        if seq_len is not None and seq_len < 1:
            raise ConfigError(f"seq_len={seq_len}: must be >= 1 site (or None for whole tiles)")
        for name, v in (("batch_size", batch_size), ("block_samples", block_samples), ("buffer_size", buffer_size)):
            if v is not None and v < 1:
                raise ConfigError(f"{name}={v}: must be >= 1")
        if uneven not in UNEVEN:
            raise ConfigError(f"uneven={uneven!r}: choose one of {UNEVEN}")
        if (rank is None) != (world_size is None):
            raise ConfigError("give both rank and world_size, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise ConfigError(f"rank={rank}, world_size={world_size}: need 0 <= rank < world_size")
        self.seq_len, self.training, self.seed = seq_len, bool(training), int(seed)
        self.batch_size, self.uneven = int(batch_size), uneven
        self.return_haplotypes = bool(return_haplotypes)
        self.phase_prior = bool(phase_prior)
        if self.phase_prior and not isinstance(retrieval, HaplotypePanel):
            raise ConfigError("phase_prior needs a haplotype retrieval panel: set model.retrieval=haplotypes "
                              "and model.retrieval_k > 0")
        self.retrieval = retrieval
        self._explicit_rank = rank is not None
        self.rank, self.world_size = (rank, world_size) if rank is not None else (0, 1)
        self.resolve_rank()

        self.samples = self._select_samples(samples)
        self.tiles = self._select_tiles(tiles)
        vocab = self.store.vocab
        self.masking = masking
        array_mask = None
        if self.masking is not None and self.masking.array > 0:
            array_mask = array_site_mask(self.masking.array_sites, vocab)
        self.masker = None if self.masking is None else Masker(self.masking, array_mask=array_mask)
        enabled = augment is not None and augment.enabled
        self.augment = augment if enabled and self.training else None
        if enabled and not self.training:
            log.info("augment is ignored when training=False (evaluation uses real samples)")
        self._sample_chunk = self._store_sample_chunk()
        self._regions = self._make_regions()
        longest = int((self._regions[:, 2] - self._regions[:, 1]).max())
        length = min(self.seq_len, longest) if self.seq_len is not None else longest
        auto = max(16, min(1024, (2**18 // max(length, 1)) // 16 * 16))
        if self.augment is not None:  # a panel read should serve at least as many genomes as it reads
            auto = max(auto, self.augment.panel_size)
        self.block_samples = int(block_samples) if block_samples is not None else auto
        self.buffer_size = int(buffer_size) if buffer_size is not None else 4 * self.block_samples
        # Shared with DataLoader workers (fork or spawn), so set_epoch reaches persistent workers.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._genetic_map: GeneticMap | None = None

    # --- configuration ---------------------------------------------------------------------
    def _select_samples(self, samples) -> np.ndarray:
        n = self.store.n_samples
        if samples is None:
            idx = np.arange(n, dtype=np.int64)
        else:
            arr = np.asarray(list(samples) if not isinstance(samples, np.ndarray) else samples)
            if arr.size and arr.dtype.kind in "USO":
                idx = self.store.sample_index(arr.tolist())
            else:
                idx = arr.astype(np.int64).reshape(-1)
                bad = idx[(idx < 0) | (idx >= n)]
                if bad.size:
                    raise SampleError(f"{self.store.path}: sample rows {bad[:5].tolist()} out of range 0..{n - 1}")
            uniq, counts = np.unique(idx, return_counts=True)
            if (counts > 1).any():
                raise SampleError(f"{self.store.path}: duplicate samples {uniq[counts > 1][:5].tolist()} requested")
        if idx.size == 0:
            raise SampleError(f"{self.store.path}: no samples selected; check the sample list / validation split")
        return np.sort(idx)

    def _select_tiles(self, tiles) -> np.ndarray:
        n = self.store.n_tiles
        if tiles is None:
            c = np.arange(n, dtype=np.int64)
        else:
            c = np.unique(np.asarray(list(tiles), dtype=np.int64))
            if c.size and (c.min() < 0 or c.max() >= n):
                raise ConfigError(f"tiles {c.tolist()}: the store has tiles 0..{n - 1}")
        if c.size == 0:
            raise SampleError(f"{self.store.path}: no tiles selected (the store has {n})")
        return c

    def _store_sample_chunk(self) -> int:
        try:
            return int(self.store.group["call_genotype"].chunks[1])
        except (KeyError, AttributeError, IndexError, TypeError):  # a store-like object for tests
            return 16

    def _make_regions(self) -> np.ndarray:
        """(tile, start, stop) per region: one per tile in training (cropped per block),
        consecutive sequences of ``seq_len`` sites in evaluation."""
        vocab = self.store.vocab
        rows = []
        for c in self.tiles.tolist():
            length = int(vocab.tile_stop[c] - vocab.tile_start[c])
            if self.training or self.seq_len is None or self.seq_len >= length:
                rows.append((c, 0, length))
            else:
                rows.extend((c, s, min(s + self.seq_len, length)) for s in range(0, length, self.seq_len))
        return np.asarray(rows, dtype=np.int64).reshape(-1, 3)

    def resolve_rank(self) -> None:
        """Take rank/world from torch.distributed when initialised and not given explicitly.
        Called in the main process before workers start (datamodule.make_loader's loader does it)."""
        if self._explicit_rank:
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            self.rank, self.world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle/crops/masks; reaches already running (persistent) workers."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    # --- sizes -------------------------------------------------------------------------------
    def _n_items_total(self) -> int:
        if self.augment is not None:
            return int(self.augment.items_per_epoch or self.samples.size * self.tiles.size)
        return int(self.samples.size * len(self._regions))

    def _sequence(self, epoch: int, g: int) -> int | None:
        """Training item ``g`` of ``epoch`` counted from the first epoch's first item."""
        return epoch * self._n_items_total() + g if self.training else None

    def _per_rank(self) -> int:
        n, w = self._n_items_total(), self.world_size
        return -(-n // w) if self.uneven == "pad" else n // w

    def __len__(self) -> int:
        """Items this rank yields per epoch (equal on every rank)."""
        return self._per_rank()

    # --- the epoch plan ----------------------------------------------------------------------
    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *[int(k) for k in keys]])

    def _plan(self, epoch: int) -> _Plan:
        """Blocks of samples x regions. In training, runs of store rows (a quarter block, at
        least one 16-sample chunk) are shuffled and cut into blocks, so a block is read in at
        most ~4 contiguous slices and its sample mix changes every epoch; the blocks are
        shuffled too. Evaluation keeps store order."""
        s = self.samples
        if self.training:
            granule = max(self._sample_chunk, self.block_samples // 4 // self._sample_chunk * self._sample_chunk)
            groups = np.unique(s // granule, return_inverse=True)[1]
            perm = self._rng(_GROUPS, epoch).permutation(int(groups.max()) + 1)
            order = s[np.argsort(perm[groups], kind="stable")]
        else:
            order = s
        starts = np.arange(0, order.size, self.block_samples, dtype=np.int64)
        sizes = np.minimum(starts + self.block_samples, order.size) - starts
        n_regions = len(self._regions)
        region = np.repeat(np.arange(n_regions, dtype=np.int64), starts.size)
        lo = np.tile(starts, n_regions)
        size = np.tile(sizes, n_regions)
        if self.training:
            p = self._rng(_ORDER, epoch).permutation(region.size)
            region, lo, size = region[p], lo[p], size[p]
        cum = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
        return _Plan(order=order, region=region, lo=lo, cum=cum)

    def _my_range(self) -> tuple[int, int]:
        """Global item range [lo, hi) of this rank and worker (before pad wrapping)."""
        n_r = self._per_rank()
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        n_batches = -(-n_r // self.batch_size)
        b0, b1 = (wid * n_batches) // nw, ((wid + 1) * n_batches) // nw
        base = self.rank * n_r
        return base + min(b0 * self.batch_size, n_r), base + min(b1 * self.batch_size, n_r)

    # --- reading -----------------------------------------------------------------------------
    def _ensure_open(self) -> None:
        """Reopen the store in a new process (a fork copies the parent's open handles)."""
        if self._pid != os.getpid():
            self.store = open_store(self.store.path, storage_options=self.store.storage_options)
            self._pid = os.getpid()

    def _read(self, tile: int, samples: np.ndarray, start: int, stop: int) -> np.ndarray:
        """(len(samples), stop - start, 2) int8 for samples in the given order.

        Reads runs of nearby rows as contiguous slices (gaps up to one sample chunk are read
        and discarded): zarr's orthogonal integer indexing is ~30x slower than a slice
        covering the same chunks (docs/benchmarks.md).
        """
        srt = np.sort(samples)
        out = np.empty((samples.size, stop - start, 2), dtype=np.int8)
        breaks = np.flatnonzero(np.diff(srt) > self._sample_chunk) + 1
        where = np.searchsorted(srt, samples)  # row of each requested sample in srt
        for run in np.split(srt, breaks):
            lo, hi = int(run[0]), int(run[-1]) + 1
            block = self.store.read_haplotypes(int(tile), np.arange(lo, hi), int(start), int(stop))
            sel = (srt[where] >= lo) & (srt[where] < hi)
            out[sel] = block[samples[sel] - lo]
        return out

    def _crop(self, length: int, rng: np.random.Generator) -> tuple[int, int]:
        if self.seq_len is None or self.seq_len >= length:
            return 0, length
        start = int(rng.integers(0, length - self.seq_len + 1))
        return start, start + self.seq_len

    def _block_sites(self, tile: int, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Global vocabulary indices and positions of a block's sites (shared, read-only, by its items)."""
        first = int(self.store.vocab.tile_start[tile]) + start
        sites = np.arange(first, first + length, dtype=np.int64)
        return sites, self.store.vocab.position[first:first + length]

    def _item(self, haps: np.ndarray | None, truth: np.ndarray, tile: int, sample: int, start: int,
              block_sites: tuple[np.ndarray, np.ndarray], mask_key: tuple[int, ...],
              sources: np.ndarray | None = None, sequence: int | None = None) -> dict[str, Any]:
        """``sequence``: the item's number in training order over all epochs (the masking
        curriculum's clock); None outside training."""
        sites, position = block_sites
        if self.masker is None:
            genotype, target = unmasked(truth)
        else:
            genotype, target = self.masker(truth, sites, self._rng(_MASK, *mask_key), sequence=sequence)
        item = {
            "genotype": genotype, "site_index": sites, "position": position, "target": target, "truth": truth,
            "tile": int(tile), "sample": int(sample), "offset": int(start),
        }
        if self.return_haplotypes:
            item["haplotypes"] = haps
        if self.retrieval is not None:  # leave-one-out: a genome (or its sources) never votes for itself
            own = sources if sources is not None else np.array([sample])
            exclude = self.retrieval.rows_of_store(own)
            item["retrieval"] = self.retrieval.votes(genotype, sites, exclude=exclude)
            if self.phase_prior:
                item["phase_prior"] = copying_prior(self.retrieval, genotype, sites, exclude=exclude)
        return item

    def _real_items(self, plan: _Plan, lo: int, hi: int, epoch: int) -> Iterator[dict[str, Any]]:
        n = plan.n_items
        if n == 0:
            return
        g = lo
        while g < hi:
            gg = g % n  # pad: wrap around to the first items of the epoch's order
            b = int(np.searchsorted(plan.cum, gg, side="right")) - 1
            take = min(hi - g, int(plan.cum[b + 1]) - gg)
            first = int(plan.lo[b]) + gg - int(plan.cum[b])
            samples = plan.order[first:first + take]
            tile, r_start, r_stop = (int(x) for x in self._regions[plan.region[b]])
            if self.training:
                # one crop per (block, epoch): every sample of the block shares the read
                crop_rng = self._rng(_CROP, epoch, int(plan.region[b]), int(plan.lo[b]))
                start, stop = self._crop(r_stop - r_start, crop_rng)
            else:
                start, stop = r_start, r_stop
            haps = self._read(tile, samples, start, stop)
            truth = genotype_tokens(haps)
            block_sites = self._block_sites(tile, start, stop - start)
            mask_epoch = epoch if self.training else 0
            for i, s in enumerate(samples.tolist()):
                # copies: a buffered item must not pin its whole block in memory
                h = haps[i].copy() if self.return_haplotypes else None
                yield self._item(h, truth[i].copy(), tile, s, start, block_sites, (mask_epoch, tile, start, s + 1),
                                 sequence=self._sequence(epoch, g + i))
            g += take

    def _map(self) -> GeneticMap | None:
        if self.augment is not None and self.augment.genetic_map and self._genetic_map is None:
            self._genetic_map = read_genetic_map(self.augment.genetic_map)
        return self._genetic_map

    def _synthetic_items(self, lo: int, hi: int, epoch: int) -> Iterator[dict[str, Any]]:
        """Item g belongs to virtual block g // block_samples; a block draws a tile, a crop
        and a panel subset, reads the panel once and makes its genomes from it."""
        cfg = self.augment
        assert cfg is not None
        vocab = self.store.vocab
        bs = self.block_samples
        g = lo
        while g < hi:
            b = g // bs
            take = min(hi, (b + 1) * bs) - g
            rng = self._rng(_SYNTH, epoch, b)
            tile = int(self.tiles[rng.integers(self.tiles.size)])
            length = int(vocab.tile_stop[tile] - vocab.tile_start[tile])
            start, stop = self._crop(length, rng)
            panel = self._panel(rng)
            flat = flatten_panel(self._read(tile, panel, start, stop))
            first = int(vocab.tile_start[tile])
            gcm = genetic_positions(vocab.position[first + start:first + stop], chrom=vocab.tile_chrom_name(tile),
                                    rate=cfg.rate, genetic_map=self._map())
            block_sites = self._block_sites(tile, start, stop - start)
            for j in range(g, g + take):
                genome = synthetic_genome(flat, gcm, self._rng(_SYNTH, epoch, b, j), generations=cfg.generations)
                yield self._item(genome, genotype_tokens(genome), tile, -1, start, block_sites,
                                 (epoch, tile, start, 0, j), sources=panel, sequence=self._sequence(epoch, j))
            g += take

    def _panel(self, rng: np.random.Generator) -> np.ndarray:
        """A random reference panel of ``augment.panel_size`` samples, drawn as whole store
        chunks of samples (random chunks, then random samples of the last one) so that its
        read decodes no more chunks than needed, even in a biobank-sized store."""
        k = min(self.augment.panel_size, self.samples.size)
        groups = self.samples // self._sample_chunk
        chosen = rng.permutation(np.unique(groups))
        counts = np.bincount(np.searchsorted(np.unique(groups), groups))  # samples per chunk
        ends = np.cumsum(counts[np.searchsorted(np.unique(groups), chosen)])
        n_full = int(np.searchsorted(ends, k, side="left")) + 1  # chunks needed to reach k
        pool = self.samples[np.isin(groups, chosen[:n_full])]
        return np.sort(rng.choice(pool, size=k, replace=False))

    def _shuffled(self, items: Iterator[dict[str, Any]], rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        buf: list[dict[str, Any]] = []
        for it in items:
            if len(buf) < self.buffer_size:
                buf.append(it)
                continue
            j = int(rng.integers(self.buffer_size))
            yield buf[j]
            buf[j] = it
        for j in rng.permutation(len(buf)).tolist():
            yield buf[j]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self._ensure_open()
        if get_worker_info() is None:
            self.resolve_rank()
        epoch = self.epoch
        lo, hi = self._my_range()
        if self.augment is not None:
            items = self._synthetic_items(lo, hi, epoch)
        else:
            items = self._real_items(self._plan(epoch), lo, hi, epoch)
        if not self.training:
            yield from items
            return
        info = get_worker_info()
        wid = info.id if info is not None else 0
        yield from self._shuffled(items, self._rng(_BUFFER, epoch, self.rank, wid))

    def items_of_epoch(self, epoch: int) -> list[tuple[int, int, int]]:
        """(sample, tile, offset) of every real item of an epoch over all ranks, in plan
        order, before padding/dropping: the reference the sharding tests compare with."""
        if self.augment is not None:
            raise ConfigError("items_of_epoch lists real items; this dataset is augmented")
        plan = self._plan(epoch)
        out = []
        for b in range(plan.region.size):
            tile, r_start, _ = (int(x) for x in self._regions[plan.region[b]])
            n = int(plan.cum[b + 1] - plan.cum[b])
            for s in plan.order[plan.lo[b]:plan.lo[b] + n].tolist():
                out.append((s, tile, r_start))
        return out
