"""Whole-genome tiles end to end on CPU: a store of two chromosomes cut into tiles of 81,920
sites (the pretrain_genome sequence length), a few training steps of a small model on full
81,920-token sequences with activation checkpointing, resume, export, and imputation from
the exported model."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from tiny_data import tiny_vcf

torch.set_num_threads(1)

TILE = 81_920


def two_chromosome_vcf(directory: Path, *, n_samples: int, n_sites: int, **kw) -> Path:
    """tiny_data's founder-mosaic genotypes on chromosomes 21 and 22, one VCF (``kw``: tiny_vcf's options)."""
    parts = [tiny_vcf(directory / f"chr{c}.vcf", n_samples=n_samples, n_sites=n_sites, seed=i, chrom=c,
                      **{"switch_rate": 0.002, **kw}).read_text().splitlines() for i, c in enumerate(("21", "22"))]
    header = [ln for ln in parts[0] if ln.startswith("##")]
    header.insert(1, "##contig=<ID=21,length=46709983>")
    body = [ln for p in parts for ln in p if not ln.startswith("#")]
    out = directory / "genome.vcf"
    out.write_text("\n".join([*header, parts[0][[i for i, ln in enumerate(parts[0]) if ln.startswith("#CHROM")][0]],
                              *body]) + "\n")
    return out


@pytest.mark.slow
def test_whole_genome_tiles_train_resume_export_impute(tmp_path):
    from snpbag.inference.impute import impute
    from snpbag.store.convert import convert
    from snpbag.store.genotypes import open_store
    from snpbag.train import rundir
    from snpbag.train.export import export
    from snpbag.train.run import train

    vcf = two_chromosome_vcf(tmp_path, n_samples=6, n_sites=TILE + 2_000)
    store = tmp_path / "genome.zarr"
    convert(str(vcf), str(store), min_maf=0.0, tile_len=TILE, threads=1)
    vocab = open_store(store).vocab
    assert sorted(set(vocab.chrom())) == ["21", "22"] and vocab.n_tiles == 4  # a full and an end tile each

    run = tmp_path / "run"
    common = [f"data.store={store}", f"paths.run_dir={run}", "model=tiny", "model.n_layers=1",
              "model.activation_checkpointing=true", f"data.seq_len={TILE}", "data.batch_size=1",
              "data.val_fraction=0.2", "data.buffer_size=2", "data.block_samples=2", "trainer=cpu",
              "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0", "trainer.log_every_n_steps=1",
              "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "logger=none",
              "callbacks.checkpoint.every_n_steps=2", "callbacks.checkpoint.save_top_k=0",
              "callbacks.throughput=false", "scheduler.warmup_steps=1", "masking.min_rate=0.5", "masking.max_rate=0.5"]
    train([*common, "trainer.max_steps=2"])
    train([*common, "trainer.max_steps=3", "resume=true"])
    ckpt = torch.load(next(rundir.checkpoints_dir(run).glob("last*.ckpt")), map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 3
    model = export(run, tmp_path / "model")

    # the array: every 10th site of the last two samples, imputed back to the model's sites
    lines = vcf.read_text().splitlines()
    keep = [ln for ln in lines if ln.startswith("##")] + [
        "\t".join(ln.split("\t")[:9] + ln.split("\t")[-2:])
        for i, ln in enumerate(ln for ln in lines if not ln.startswith("##")) if i == 0 or i % 10 == 0]
    targets = tmp_path / "targets.vcf"
    targets.write_text("\n".join(keep) + "\n")
    out = tmp_path / "imputed.vcf.gz"
    impute(model=model, input=targets, output=out, progress=False)
    with gzip.open(out, "rt") as f:
        chroms = [ln.split("\t", 1)[0] for ln in f if not ln.startswith("#")]
    assert chroms.count("21") == chroms.count("22") == vocab.n_sites // 2
