"""``snpbag embed``: genomes in, one vector per patch of sites out.

Order of work, as in ``snpbag impute``: load the model directory (its head must be the patch
embedding head, task=embed), match the input's sites onto the model's vocabulary (a VCF
through snpbag.inference.sitematch, a store through snpbag.inference.storeinput: same rules,
same one-line report, same early stop on a wrong build or chromosome), then run the encoder
and the head's compressor over sample batches x tiles and write each batch as it
is done. Memory: one batch of tiles plus one batch of embeddings (a VCF input is held as
its typed calls, as for impute).

Untyped sites and missing calls enter as MASK tokens, as the embedding head was trained with
partially masked input. A patch where fewer than ``min_typed`` of its sites are typed is still
embedded but flagged in the patch table (and left out of ``--pool mean``): its vector says
more about the model's prior than about the genome.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag import modeldir
from snpbag.errors import InputError
from snpbag.fileio import atomic_output
from snpbag.inference import embedout
from snpbag.inference.impute import model_batch, tile_jobs
from snpbag.inference.sitematch import read_targets
from snpbag.inference.storeinput import store_targets
from snpbag.progress import progress_bar

log = logging.getLogger(__name__)


@dataclass
class EmbedSummary:
    output: Path
    n_samples: int
    n_patches: int
    n_flagged: int
    dims: int
    bytes_per_genome: int
    seconds: float
    site_report: str

    def line(self) -> str:
        return (f"{self.n_samples:,} genomes x {self.n_patches:,} patches x {self.dims} numbers "
                f"({self.bytes_per_genome:,} bytes per genome) in {self.seconds:.1f} s; "
                f"{self.n_flagged:,} patches flagged for too few typed sites")


def _check_options(fmt: str, dtype: str, pool: str, batch_size: int, device: str, min_typed: float) -> None:
    embedout.check_format(fmt)
    if dtype not in embedout.DTYPES:
        raise InputError(f"--dtype {dtype}: choose one of {', '.join(embedout.DTYPES)}")
    if pool not in embedout.POOLS:
        raise InputError(f"--pool {pool}: choose one of {', '.join(embedout.POOLS)}")
    if batch_size < 1:
        raise InputError(f"--batch-size {batch_size}: must be at least 1")
    if not 0.0 <= min_typed <= 1.0:
        raise InputError(f"--min-typed {min_typed}: a fraction of a patch's sites, in [0, 1]")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA device is available here; use --device cpu")


def read_input(path: str | Path, vocab, *, samples=None):
    """A VCF/BCF or a snpbag store, matched onto ``vocab`` (TargetGenotypes or StoreTargets)."""
    p = Path(path)
    if p.is_dir():
        return store_targets(p, vocab, samples=samples)
    return read_targets(p, vocab, samples=samples)


def patch_table(vocab, targets, jobs, patch: int, *, min_typed: float) -> tuple[embedout.Patches, list[int]]:
    """The patches of every tile the input covers, and the first patch of each job."""
    chrom, first, last, n_sites, n_typed, base = [], [], [], [], [], []
    typed = np.zeros(targets.n_rows, bool)
    typed[targets.typed_rows] = True
    for tile, rows in jobs:
        base.append(len(first))
        sites = targets.site_index[rows]
        for k in range(0, sites.size, patch):
            s = sites[k:k + patch]
            chrom.append(vocab.tile_chrom_name(tile))
            first.append(int(vocab.position[s[0]]))
            last.append(int(vocab.position[s[-1]]))
            n_sites.append(s.size)
            n_typed.append(int(typed[rows.start + k: rows.start + k + s.size].sum()))
    n_sites_a, n_typed_a = np.asarray(n_sites, np.int64), np.asarray(n_typed, np.int64)
    patches = embedout.Patches(np.asarray(chrom, dtype=str), np.asarray(first, np.int64), np.asarray(last, np.int64),
                           n_sites_a, n_typed_a, n_typed_a < min_typed * n_sites_a)
    return patches, base


def embed_batch(loaded, targets, jobs, base: list[int], n_patches: int, samples: np.ndarray) -> np.ndarray:
    """float32 (n, n_patches, dims) patch embeddings of one sample batch."""
    import torch

    head = loaded.model.head
    out = None
    for (tile, rows), t0 in zip(jobs, base):
        batch = model_batch(loaded, targets, tile, rows, samples)
        with torch.inference_mode():
            e = head.embed(loaded.model.encoder(batch), batch)["embedding"]  # (n, patches, V, dim)
        e = e.float().reshape(e.shape[0], e.shape[1], -1).cpu().numpy()
        if out is None:
            out = np.zeros((len(samples), n_patches, e.shape[-1]), np.float32)
        out[:, t0:t0 + e.shape[1]] = e
    return out


def embed(
    *,
    model: str | Path,
    input: str | Path,
    output: str | Path,
    fmt: str = "zarr",
    dtype: str = "bf16",
    pool: str = "none",
    samples: str | Path | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    min_typed: float = 0.5,
    progress: bool = True,
) -> EmbedSummary:
    """Write the patch embeddings of every genome of ``input``.

    Parameters
    ----------
    model : a model directory whose head is the patch embedding head (``task=embed``).
    input : VCF/BCF (any chromosome naming) or a store written by ``snpbag convert``.
    output : path of the embeddings file (a Zarr group, an npy directory or a parquet file);
        written under a temporary name and renamed when complete; must not exist.
    fmt : ``zarr``, ``npy`` or ``parquet`` (needs pyarrow).
    dtype : ``bf16``, ``f16`` or ``f32``.
    pool : ``none`` (samples x patches x dims) or ``mean`` (samples x dims, over unflagged patches).
    samples : file with one sample id per line (default: all).
    batch_size : samples per model batch.
    device : ``cpu`` or ``cuda``.
    min_typed : a patch with fewer than this fraction of its sites typed is flagged.

    Returns
    -------
    EmbedSummary

    Raises
    ------
    CheckpointError : the model directory cannot be loaded.
    InputError : bad options, an existing output, a model without the embedding head.
    SiteMismatchError : implausibly small overlap (wrong build or chromosome).
    SampleError : unknown or duplicated samples.
    """
    _check_options(fmt, dtype, pool, batch_size, device, min_typed)
    if Path(output).exists():
        raise InputError(f"{output}: output already exists; remove it or choose another --output")
    t0 = time.perf_counter()
    loaded = modeldir.read(model, device=device)
    head = loaded.model.head
    if head.level != "patch":
        raise InputError(f"--model {model}: its head {head.name!r} makes no embeddings; train one with "
                         f"`snpbag train task=embed task.init_from={model}` and export it")
    targets = read_input(input, loaded.vocab, samples=samples)
    report = targets.report.line()
    log.info("%s", report)
    jobs = tile_jobs(loaded.vocab, targets)
    patches, base = patch_table(loaded.vocab, targets, jobs, head.patch, min_typed=min_typed)
    if patches.flagged.any():
        log.warning("%s: %d of %d patches have fewer than %g of their sites typed; they are flagged in the output",
                    input, int(patches.flagged.sum()), len(patches), min_typed)
    dims = head.shape[0] * head.shape[1]
    # model_dir: where the model was, so `snpbag classify train` finds its decoder unasked
    attrs = {"model": modeldir.identity(model, loaded.vocab), "model_dir": str(Path(model).resolve()),
             "patch": head.patch, "shape": list(head.shape), "min_typed": min_typed}
    n = targets.n_samples
    keep = ~patches.flagged
    with atomic_output(output) as tmp:
        writer = embedout.EmbeddingWriter(tmp, fmt, samples=list(targets.samples), patches=patches, dims=dims,
                                          dtype=dtype, pool=pool, attrs=attrs)
        with progress_bar(total=n, description="embedding", unit="genomes", enabled=progress) as advance:
            for lo in range(0, n, batch_size):
                b = np.arange(lo, min(lo + batch_size, n))
                e = embed_batch(loaded, targets, jobs, base, len(patches), b)
                if pool == "mean":
                    e = e[:, keep].mean(1) if keep.any() else np.full((b.size, dims), np.nan, np.float32)
                writer.write(lo, lo + b.size, e)
                advance(b.size)
        writer.close()
    itemsize = embedout.storage_dtype(dtype).itemsize
    per_genome = dims * itemsize * (1 if pool == "mean" else len(patches))
    return EmbedSummary(Path(output), n, len(patches), int(patches.flagged.sum()), dims, per_genome,
                        time.perf_counter() - t0, report)
