"""A tiny genotype store for training tests: deterministic, with linkage disequilibrium.

Haplotypes are mosaics of a few founder haplotypes (a crude copying model), so
neighbouring sites are correlated and a model can beat the per-site allele-frequency
baseline. Written as a plain VCF and converted with snpbag's own converter; the numbers
depend only on numpy's PCG64 stream, so pinned losses stay reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# a tiny model, a handful of steps, nothing logged but CSV
TINY_TRAIN = [
    "trainer=cpu", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=1", "trainer.val_check_interval=3", "trainer.max_steps=6",
    "model=tiny", "model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.window=32", "model.block_size=32",
    "data.seq_len=64", "data.batch_size=4", "data.buffer_size=8", "data.block_samples=16",
    "logger=none", "callbacks.checkpoint.every_n_steps=3", "callbacks.checkpoint.save_top_k=1",
    "callbacks.throughput=false", "callbacks.lr_monitor=false", "scheduler.warmup_steps=1", "optim.lr=3e-3", "seed=3",
]


def tiny_vcf(path: Path, *, n_samples: int = 20, n_sites: int = 300, seed: int = 0, chrom: str = "22",
             n_founders: int = 6, switch_rate: float = 0.02, missing_rate: float = 0.01) -> Path:
    rng = np.random.default_rng(seed)
    founders = (rng.random((n_founders, n_sites)) < rng.uniform(0.05, 0.6, n_sites)).astype(np.int8)
    haps = np.empty((2 * n_samples, n_sites), dtype=np.int8)
    for h in range(2 * n_samples):
        src = rng.integers(n_founders)
        for j in range(n_sites):
            if rng.random() < switch_rate:
                src = rng.integers(n_founders)
            haps[h, j] = founders[src, j]
    # a little noise so no site is perfectly predictable from its neighbours
    flip = rng.random(haps.shape) < 0.01
    haps = np.where(flip, 1 - haps, haps)
    missing = rng.random((n_samples, n_sites)) < missing_rate
    positions = np.cumsum(rng.integers(50, 500, n_sites)) + 16_000_000
    ref_alt = [("A", "G"), ("C", "T"), ("G", "A"), ("T", "C")]
    lines = ["##fileformat=VCFv4.2", f"##contig=<ID={chrom},length=51304566>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
             + "\t".join(f"S{i:03d}" for i in range(n_samples))]
    for j in range(n_sites):
        ref, alt = ref_alt[j % 4]
        gts = ["./." if missing[i, j] else f"{haps[2 * i, j]}|{haps[2 * i + 1, j]}" for i in range(n_samples)]
        lines.append(f"{chrom}\t{positions[j]}\t.\t{ref}\t{alt}\t.\tPASS\t.\tGT\t" + "\t".join(gts))
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_store(directory: Path, *, tile_len: int = 100, min_maf: float = 0.01, **kw) -> Path:
    """Write ``directory/tiny.vcf`` and convert it to ``directory/tiny.zarr``; return the store."""
    from snpbag.store.convert import convert

    directory.mkdir(parents=True, exist_ok=True)
    vcf = tiny_vcf(directory / "tiny.vcf", **kw)
    out = directory / "tiny.zarr"
    convert(str(vcf), str(out), min_maf=min_maf, tile_len=tile_len, threads=1)
    return out
