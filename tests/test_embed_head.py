"""The patch-embedding head (task=embed): patch layout, shapes, the decoder reads the bottleneck
only, options are validated, the task config composes, and a short run learns (its
reconstruction from the embedding beats the allele-frequency baseline on held-out genomes)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from snpbag.data.batch import Batch
from snpbag.errors import ConfigError
from snpbag.config import preset
from snpbag.model import build_model
from snpbag.model.heads.embed import from_patches, patch_layout, to_patches
from tiny_data import tiny_store

torch.set_num_threads(1)


def _batch(offset, lengths, L=40, n_sites=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(offset)
    offset = torch.tensor(offset)
    valid = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    site = (offset[:, None] + torch.arange(L)).clamp_max(n_sites - 1)
    geno = torch.randint(0, 3, (B, L), generator=g)
    return Batch(genotype=geno, site_index=site, position=site * 100, valid=valid,
                 target=torch.full((B, L), -100), tile=torch.zeros(B, dtype=torch.long), sample=torch.arange(B),
                 offset=offset, truth=geno.clone())


def _model(**options):
    cfg = preset("tiny", n_sites=500, d_model=32, n_heads=2, window=32, block_size=32)
    return build_model(cfg, "embed", head_options={"patch": 16, "shape": [2, 4], "hidden": 32, **options})


def test_patch_layout_follows_the_tile_grid():
    b = _batch([0, 5, 16], [40, 40, 30])
    slot, first, n = patch_layout(b.offset, b.valid, 16)
    assert first.tolist() == [0, 0, 1] and n == 3
    # site offset + i lies in the tile's patch (offset + i) // 16, slot (offset + i) % 16
    local = b.offset[:, None] + torch.arange(40)
    assert torch.equal((first[:, None] * 16 + slot), local)
    x = torch.arange(3 * 40).view(3, 40)
    t = to_patches(x, slot, b.valid, n, 16, fill=-1)
    assert t.shape == (3, 3, 16)
    assert t[1, 0, :5].tolist() == [-1] * 5 and t[1, 0, 5].item() == x[1, 0].item()  # shifted by the offset
    assert (t[2, 2] == -1).all()  # row 2 covers sites 16..45: its third patch is padding
    back = from_patches(t, slot)
    assert torch.equal(back[b.valid], x[b.valid])


def test_shapes_and_patch_counts():
    m = _model()
    out = m(_batch([0, 5, 16], [40, 40, 30]))
    assert out.logits.shape == (3, 40, 3)
    assert out.extras["embedding"].shape == (3, 3, 2, 4)  # (B, patches, n_vectors, vector_dim)
    assert out.extras["n_sites"].tolist() == [[16, 16, 8], [11, 16, 13], [16, 14, 0]]
    assert torch.isfinite(out.loss)
    assert m.head.level == "patch"


DECODERS = [{"query_mix": "add"}, {"query_mix": "multiply"}, {"decoder": "site"}, {"decoder": "slot", "rank": 3},
            {"decoder": "site", "readout_scale": 30.0}]


def _say_something(head):
    """Decoders start at the AF prior (zero output layer): give them random weights."""
    torch.nn.init.normal_(head.decode[-1].weight if head.decoder == "mlp" else head.readout.weight)


@pytest.mark.parametrize("options", DECODERS)
def test_decoder_reads_only_the_bottleneck(options):
    """Changing genotypes of one patch changes its embedding and its reconstruction, never the
    reconstruction of another patch once the embeddings are given."""
    torch.manual_seed(0)
    m = _model(**options).eval()
    _say_something(m.head)
    b = _batch([0], [32], L=32)
    enc = m.encoder(b)
    e = m.head.embed(enc, b)
    logits = m.head.reconstruct(e["embedding"], b.site_index, e["slot"])
    assert torch.allclose(logits, m(b).logits)
    # swap patch 0's embedding for another's: patch 1's logits stay, patch 0's move
    other = e["embedding"].clone()
    other[:, 0] = torch.randn_like(other[:, 0])
    moved = m.head.reconstruct(other, b.site_index, e["slot"])
    assert torch.equal(moved[:, 16:], logits[:, 16:])
    assert not torch.allclose(moved[:, :16], logits[:, :16])


@pytest.mark.parametrize("options", DECODERS)
def test_untrained_decoder_predicts_the_af_prior(options):
    from snpbag.model.embedding import hwe_log_prior

    m = _model(**options)
    af = torch.rand(500)
    m.set_site_prior(af)
    b = _batch([0], [32], L=32)
    assert torch.allclose(m(b).logits, hwe_log_prior(af[b.site_index]), atol=1e-6)


def test_readouts_are_per_site_or_per_patch_slot():
    """decoder=site gives every model site its own readout; decoder=slot shares one per patch
    slot, so two patches with the same embedding decode alike (up to their sites' AF prior)."""
    torch.manual_seed(0)
    b = _batch([0], [32], L=32)
    for decoder, rows in (("site", 500), ("slot", 16)):
        m = _model(decoder=decoder).eval()
        _say_something(m.head)
        assert m.head.readout.num_embeddings == rows and m.head.rank == 8  # rank: the bottleneck's 2 x 4
        e = m.head.embed(m.encoder(b), b)
        same = e["embedding"][:, :1].expand(-1, 2, -1, -1)  # patch 0's embedding for both patches
        logits = m.head.reconstruct(same, b.site_index, e["slot"])
        assert torch.allclose(logits[:, :16], logits[:, 16:]) == (decoder == "slot")


def test_readout_scale_multiplies_the_stored_readout():
    """readout_scale changes the learning speed of the readout table, not the function: the same
    effective weights give the same logits."""
    torch.manual_seed(0)
    a, b = _model(decoder="site"), _model(decoder="site", readout_scale=30.0)
    b.load_state_dict(a.state_dict())
    _say_something(a.head)
    with torch.no_grad():
        b.head.readout.weight.copy_(a.head.readout.weight / 30.0)
    x = _batch([0], [32], L=32)
    assert torch.allclose(a.eval()(x).logits, b.eval()(x).logits, atol=1e-5)


def test_the_last_short_patch_reads_only_its_sites():
    """A window ending inside a patch: the padding slots of the short patch (and padding sites
    of the row) change nothing, whatever genotypes they hold."""
    torch.manual_seed(0)
    m = _model(decoder="site").eval()
    b = _batch([0], [24], L=32)  # patch 1 holds 8 of its 16 sites
    out = m(b)
    assert out.extras["n_sites"].tolist() == [[16, 8]]
    noisy = b.replace(genotype=torch.where(b.valid, b.genotype, (b.genotype + 1) % 3))
    again = m(noisy)
    assert torch.equal(again.extras["embedding"], out.extras["embedding"])
    assert torch.equal(again.logits[b.valid], out.logits[b.valid])
    assert torch.equal(again.loss, out.loss)


@pytest.mark.parametrize("options", DECODERS)
def test_export_round_trip(options, tmp_path):
    """A saved embedding model reloads with the same head options and gives the same embeddings
    and reconstruction."""
    from snpbag import modeldir

    torch.manual_seed(0)
    m = _model(**options).eval()
    _say_something(m.head)
    modeldir.save_model(m, tmp_path / "m")
    back = modeldir.load_model(tmp_path / "m").eval()
    assert back.head.options == m.head.options
    b = _batch([0, 5], [32, 30], L=32)
    a, z = m(b), back(b)
    assert torch.equal(a.extras["embedding"], z.extras["embedding"]) and torch.equal(a.logits, z.logits)


@pytest.mark.parametrize("options, match", [
    ({"shape": [3, 4]}, r"patch=16: must be .* a multiple of n_vectors=3"),
    ({"shape": [4]}, r"shape=\[4\]: give \[n_vectors, vector_dim\]"),
    ({"recon_weight": 0.0}, r"recon_weight=0.0, token_weight=0.0"),
    ({"hidden": 0}, r"hidden=0"),
    ({"query_mix": "concat"}, r"query_mix='concat': choose one of add, multiply"),
    ({"decoder": "conv"}, r"decoder='conv': choose one of mlp, site, slot"),
    ({"decoder": "site", "rank": 0}, r"rank=0: must be >= 1"),
    ({"decoder": "site", "readout_scale": 0.0}, r"readout_scale=0.0: must be > 0"),
])
def test_bad_options_fail_clearly(options, match):
    with pytest.raises(ConfigError, match=match):
        _model(**options)


def test_token_loss_is_composed():
    m = _model(token_weight=0.5)
    b = _batch([0], [32], L=32)
    b = b.replace(target=b.truth.masked_fill(torch.rand(1, 32) < 0.5, -100))
    out = m(b)
    assert "token_loss" in out.extras and torch.isfinite(out.loss)
    assert "token.mlp.0.weight" in dict(m.head.named_parameters())


def test_task_embed_composes():
    from snpbag.train.run import compose_config, to_train_config

    cfg = to_train_config(compose_config(["task=embed", "data.store=x.zarr"]))
    assert cfg.task.head.name == "embed" and cfg.task.freeze_encoder is True
    assert cfg.task.head.options["patch"] == 2048 and list(cfg.task.head.options["shape"]) == [1, 128]
    assert (cfg.masking.min_rate, cfg.masking.max_rate) == (0.0, 0.5)
    cfg = to_train_config(compose_config(["task=embed", "data.store=x.zarr", "task.head.options.shape=[16,8]"]))
    m = build_model(preset("tiny", n_sites=4096), "embed", head_options=dict(cfg.task.head.options))
    assert m.head.shape == (16, 8) and m.head.segment == 128


EMBED_TRAIN = [
    "trainer=cpu", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=50", "trainer.val_check_interval=400", "trainer.max_steps=400",
    "model=tiny", "model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.window=32", "model.block_size=32",
    "data.seq_len=64", "data.batch_size=8", "data.buffer_size=8", "data.block_samples=16", "data.val_fraction=0.2",
    "logger=none", "callbacks.checkpoint.save_top_k=0", "callbacks.checkpoint.every_n_steps=1000",
    "callbacks.throughput=false", "callbacks.lr_monitor=false", "scheduler.warmup_steps=5", "optim.lr=3e-3", "seed=3",
    "task=embed", "task.head.options.patch=32", "task.head.options.shape=[1,16]", "task.head.options.hidden=64",
]


def test_frozen_encoder_stays_put(tmp_path):
    from snpbag.train.run import compose_config, model_for_run, to_train_config
    from snpbag.store.genotypes import open_store

    store = tiny_store(tmp_path / "d", n_samples=12, n_sites=64, tile_len=64)
    cfg = to_train_config(compose_config([*EMBED_TRAIN, f"data.store={store}"]))
    model = model_for_run(cfg, open_store(str(store)).vocab)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_short_run_beats_the_af_baseline(tmp_path):
    """Held-out genomes (data.val_fraction) reconstructed from their patch embeddings alone:
    better than the per-site allele-frequency guess on the same genotypes."""
    from snpbag.train import rundir
    from snpbag.train.run import train

    store = tiny_store(tmp_path / "d", n_samples=60, n_sites=256, tile_len=128)
    run = train([*EMBED_TRAIN, "task.freeze_encoder=false", f"data.store={store}", f"paths.run_dir={tmp_path / 'run'}"])
    with open(rundir.metrics_csv(run), newline="") as f:
        val = [r for r in csv.DictReader(f) if r.get("val/acc")][-1]
    acc, base = float(val["val/acc"]), float(val["val/base_acc"])
    assert float(val["val/n_scored"]) > 2000  # every called genotype of the held-out genomes, not only masked ones
    assert acc > base + 0.04, (acc, base)
    assert float(val["val/loss"]) < float(val["val/base_loss"])


def test_a_frozen_encoder_trains_without_dropout(tmp_path):
    from snpbag.config import OptimConfig, SchedulerConfig
    from snpbag.train.lit_module import SnpbagModule

    cfg = preset("tiny", n_sites=500, d_model=32, n_heads=2, window=32, block_size=32, dropout=0.5)
    model = build_model(cfg, "embed", head_options={"patch": 16, "shape": [2, 4], "hidden": 32})
    model.encoder.requires_grad_(False)
    module = SnpbagModule(model, optim=OptimConfig(), scheduler=SchedulerConfig(), max_steps=1,
                          site_af=torch.full((500,), 0.3).numpy())
    module.train()
    module.on_train_batch_start(None, 0)
    assert not model.encoder.training and model.head.training
    b = _batch([0], [32], L=32)
    assert torch.equal(model.encoder(b).hidden, model.encoder(b).hidden)  # no dropout noise
