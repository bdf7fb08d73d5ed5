"""The Hydra config hub: every experiment composes and instantiates, every group option
composes, typos fail at compose time with a clear message, heads match configs/task/."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from snpbag.errors import ConfigError
from tiny_data import tiny_store

torch.set_num_threads(1)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
GROUPS = ("data", "masking", "model", "task", "optim", "scheduler", "trainer", "callbacks", "logger", "paths")
#: Group options composed on their own by another command, not into the genotype schema:
#: task=seq2king (snpbag.inference.seq2king; tests/test_seq2king.py composes it).
OWN_SCHEMA = {"task": ("seq2king",)}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("tiny"))


def _cfg(*overrides: str):
    from snpbag.train.run import compose_config, to_train_config

    return to_train_config(compose_config(list(overrides)))


def test_there_are_experiments():
    assert {"pretrain_demo", "pretrain_chr22", "pretrain_genome"} <= set(EXPERIMENTS)


def _experiment(name: str, store: Path, tmp_path: Path) -> tuple[list[str], Path]:
    """Overrides that make experiment ``name`` run on the tiny store (and that store): an
    array site list for fine-tuning, a store without missing calls for a haplotype panel."""
    extra = []
    if name.startswith("impute_"):  # fine-tuning: an array site list of the store's sites, no pretrained model
        from snpbag.store.genotypes import open_store

        v = open_store(store).vocab
        sites = tmp_path / "array_sites.tsv"
        sites.write_text("".join(f"{c}\t{p}\t{r}\t{a}\n" for c, p, r, a in
                                 list(zip(v.chrom(), v.position, v.ref, v.alt))[::5]))
        extra = [f"masking.array_sites={sites}", "task.init_from=null"]
    cfg = _cfg(f"experiment={name}", f"data.store={store}", *extra)
    if cfg.model.retrieval_k and cfg.model.retrieval == "haplotypes":  # a phased panel without missing calls
        store = tiny_store(tmp_path / "complete", missing_rate=0.0)
    return [f"experiment={name}", f"data.store={store}", "data.num_workers=0", "data.persistent_workers=false",
            *extra], store


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_instantiates(name, store, tmp_path):
    """Model built (meta device: no memory even for the base model), datamodule set up on
    the tiny store; CPU experiments also run one batch through a real model and build
    their Trainer."""
    from snpbag.train.run import build_callbacks, build_datamodule, build_trainer, model_for_run

    overrides, store = _experiment(name, store, tmp_path)
    cfg = _cfg(*overrides)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    vocab = dm.store.vocab
    with torch.device("meta"):
        model = model_for_run(cfg, vocab)
    assert model.config.n_sites == vocab.n_sites and model.config.name == cfg.model.name
    if cfg.trainer.accelerator == "cpu":
        model = model_for_run(cfg, vocab)
        batch = next(iter(dm.train_dataloader()))
        out = model(batch)
        assert out.logits.shape == (*batch.genotype.shape, 3) and torch.isfinite(out.loss)
        trainer = build_trainer(cfg, tmp_path, loggers=[], callbacks=build_callbacks(cfg, tmp_path))
        assert trainer.max_steps == cfg.trainer.max_steps


# a model and sequences small enough for one CPU step; everything else is the experiment's
ONE_STEP = ["model.n_layers=1", "model.d_model=32", "model.n_heads=2", "model.window=32", "model.block_size=32",
            "data.seq_len=64", "data.val_seq_len=64", "data.batch_size=2", "data.buffer_size=4",
            "data.block_samples=8", "trainer.max_steps=1", "trainer.num_sanity_val_steps=0",
            "trainer.enable_progress_bar=false", "logger=none", "callbacks.throughput=false"]


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trainer_runs_a_step(name, store, tmp_path, monkeypatch):
    """Every experiment with its own trainer config: one optimiser step with its precision,
    gradient clipping and the AdamW its device would get. Where its accelerator is missing
    (a GPU experiment here), the step runs on CPU with the optimiser the module would build
    on CUDA (a fused AdamW unless clipping under mixed precision), which is what failed at
    every GPU run's first step."""
    from snpbag.train import lit_module
    from snpbag.train.lit_module import use_fused_adamw
    from snpbag.train.run import _precision, train

    overrides, store = _experiment(name, store, tmp_path)
    cfg = _cfg(*overrides)
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda")
    assert cfg.trainer.accelerator in ("cpu", "gpu"), "experiments name their accelerator"
    precision = _precision(cfg)
    if on_gpu:
        assert precision == "bf16-mixed" and cfg.trainer.strategy == "ddp"
    device = "cuda" if on_gpu else "cpu"
    fused = use_fused_adamw(device, precision=precision, grad_clip=cfg.optim.grad_clip or None)
    emulate = on_gpu and not torch.cuda.is_available()
    if emulate:  # the CPU has a fused AdamW and bf16 autocast: Lightning's clipping check is the same
        overrides += ["trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto"]
        monkeypatch.setattr(lit_module, "use_fused_adamw", lambda _device, **kw: use_fused_adamw("cuda", **kw))
    elif on_gpu:  # one process: DDP on one device, not a launch per GPU from inside pytest
        overrides += ["trainer.devices=1"]
    built = []
    real_adamw = torch.optim.AdamW
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **kw: built.append(kw.get("fused")) or real_adamw(*a, **kw))
    run = train([*overrides, *ONE_STEP, f"paths.run_dir={tmp_path / 'run'}"])
    assert built == [fused]
    ckpts = list(run.rglob("*.ckpt"))
    assert ckpts and torch.load(ckpts[0], map_location="cpu", weights_only=False)["global_step"] == 1


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group, store):
    options = sorted(p.stem for p in (CONFIGS / group).glob("*.yaml") if p.stem not in OWN_SCHEMA.get(group, ()))
    assert options, f"configs/{group}/ is empty"
    for opt in options:
        extra = ["masking.array_sites=sites.tsv"] if (group, opt) in {("masking", "array"), ("task", "impute")} else []
        cfg = _cfg(f"{group}={opt}", f"data.store={store}", *extra)
        assert cfg.data.store == str(store)


def test_heads_registry_matches_task_configs():
    from snpbag.model.heads import HEADS

    names = {yaml.safe_load(p.read_text())["head"]["name"] for p in (CONFIGS / "task").glob("*.yaml")
             if p.stem not in OWN_SCHEMA["task"]}
    assert names == set(HEADS), "every head needs a configs/task/ entry and every task a registered head"


def test_presets_are_defined_once_in_yaml():
    """configs/model/*.yaml are the presets: Python's preset() and Hydra's model=NAME read the
    same files into the same ModelConfig, and a preset names only architecture keys (the
    schema keeps every other default)."""
    from snpbag.config import ModelConfig, preset, preset_names

    assert preset_names() == ["base", "small", "snpbag_paper", "tiny"]
    required = {k for k, f in ModelConfig.__dataclass_fields__.items() if f.default is f.default_factory}
    # architecture choices with a default (snpbag's own design) that a preset may name
    choices = {"d_ff", "site_code", "site_dim", "genotype_dim", "ffn", "norm"}
    for name in preset_names():
        assert preset(name) == _cfg(f"model={name}", "data.store=x").model, name
        keys = set(yaml.safe_load((CONFIGS / "model" / f"{name}.yaml").read_text()))
        assert required <= keys <= required | choices, name
    assert preset("small", n_sites=7).n_sites == 7


def test_renamed_keys_are_refused_with_the_new_name(tmp_path, monkeypatch):
    """Old names fail at compose time (override, +override, experiment YAML, preset YAML,
    preset()) with a message naming the new key."""
    from snpbag.config import RENAMED, preset
    from snpbag.train.run import compose_config

    assert RENAMED["model.neighbours_k"] == "model.retrieval_k"
    assert RENAMED["model.neighbours_window"] == "model.retrieval_span"
    assert RENAMED["data.contigs"] == "data.tiles"
    with pytest.raises(ConfigError, match=r"^override data.contigs=\[0\]: data.contigs was renamed data.tiles"):
        compose_config(["data.contigs=[0]"])
    assert _cfg("data.store=x", "data.tiles=[0,2]").data.tiles == [0, 2]
    with pytest.raises(ConfigError, match=r"^override model.neighbours_k=3: model.neighbours_k was renamed "
                                          r"model.retrieval_k; use model.retrieval_k$"):
        compose_config(["model.neighbours_k=3"])
    with pytest.raises(ConfigError, match=r"^model.neighbours_window was renamed model.retrieval_span"):
        _cfg("data.store=x", "+model.neighbours_window=3")
    with pytest.raises(ConfigError, match=r"tiny.yaml: model.neighbours_k was renamed model.retrieval_k"):
        preset("tiny", neighbours_k=3)
    shutil.copytree(CONFIGS, tmp_path / "configs")
    (tmp_path / "configs" / "experiment" / "old.yaml").write_text("# @package _global_\nmodel:\n  neighbours_k: 4\n")
    (tmp_path / "configs" / "model" / "old.yaml").write_text(
        (CONFIGS / "model" / "tiny.yaml").read_text() + "neighbours_window: 64\n")
    monkeypatch.setenv("SNPBAG_CONFIG_DIR", str(tmp_path / "configs"))
    with pytest.raises(ConfigError, match=r"experiment/old.yaml: model.neighbours_k was renamed model.retrieval_k"):
        compose_config(["experiment=old"])
    with pytest.raises(ConfigError, match=r"model/old.yaml: model.neighbours_window was renamed model.retrieval_span"):
        compose_config(["model=old"])


def test_model_config_is_validated_where_it_is_defined():
    """Every ModelConfig check lives in its __post_init__: presets, overrides and saved
    configs all pass through it, with the key named and the fix implied."""
    from snpbag.config import ModelConfig, preset

    for bad, match in [
        ({"window": 0}, r"model.window=0 must be > 0"), ({"block_size": 0}, r"model.block_size=0 must be > 0"),
        ({"n_layers": 0}, r"model.n_layers=0 must be > 0"), ({"site_dim": 0}, r"model.site_dim=0 must be > 0"),
        ({"n_heads": 0}, r"model.n_heads=0 must be > 0"), ({"d_ff": 0}, r"model.d_ff=0 must be > 0"),
        ({"n_sites": -1}, r"model.n_sites=-1 must be >= 0"),
        ({"dropout": 1.0}, r"model.dropout=1.0 must be in \[0, 1\)"),
        ({"backend": "nope"}, r"model.backend='nope'; choose one of"),
        ({"d_model": 30}, r"model.d_model=30 is not divisible by model.n_heads=4"),
        ({"colour": 1}, r"tiny.yaml: unknown model config keys \['colour'\]"),
    ]:
        with pytest.raises(ConfigError, match=match):
            preset("tiny", **bad)
    with pytest.raises(ConfigError, match=r"model.window=0 must be > 0"):
        _cfg("data.store=x", "model.window=0")
    with pytest.raises(ConfigError, match=r"model config lacks \['n_layers'\]"):
        ModelConfig.from_dict({k: v for k, v in preset("tiny").to_dict().items() if k != "n_layers"})


def test_typo_in_override_fails_at_compose_time():
    from snpbag.train.run import compose_config

    with pytest.raises(ConfigError, match=r"Key 'bach_size' not in 'DataConfig'; full_key: data.bach_size"):
        compose_config(["data.bach_size=3"])
    with pytest.raises(ConfigError, match=r"Could not find 'model/huge'; Available options in 'model': base, small, snpbag_paper, tiny"):
        compose_config(["model=huge"])
    with pytest.raises(ConfigError, match=r"Value 'abc' of type 'str' could not be converted to Integer"):
        compose_config(["data.batch_size=abc"])
    with pytest.raises(ConfigError, match=r"data.bach: no such key in DataConfig"):
        _cfg("+data.bach=3", "data.store=x")


def test_typo_in_yaml_fails_at_compose_time(tmp_path, monkeypatch):
    from snpbag.train.run import compose_config

    shutil.copytree(CONFIGS, tmp_path / "configs")
    (tmp_path / "configs" / "optim" / "typo.yaml").write_text("lr: 1.0e-3\nweight_decy: 0.1\n")
    monkeypatch.setenv("SNPBAG_CONFIG_DIR", str(tmp_path / "configs"))
    with pytest.raises(ConfigError, match=r"In 'optim/typo'.*Key 'weight_decy' not in 'OptimConfig'"):
        compose_config(["optim=typo"])


def test_values_are_validated():
    with pytest.raises(ConfigError, match=r"data.store is not set; pass data.store=\.\.\."):
        _cfg()
    with pytest.raises(ConfigError, match=r"masking.min_rate=0.9 exceeds masking.max_rate=0.5"):
        _cfg("data.store=x", "masking.min_rate=0.9", "masking.max_rate=0.5")
    with pytest.raises(ConfigError, match=r"model.d_model=30 is not divisible by model.n_heads=4"):
        _cfg("data.store=x", "model.d_model=30")
    with pytest.raises(ConfigError, match=r"logger.wandb.mode='sometimes'"):
        _cfg("data.store=x", "logger.wandb.mode=sometimes")
    with pytest.raises(ConfigError, match=r"masking.array=1.0 needs masking.array_sites=FILE"):
        _cfg("data.store=x", "masking.array=1")
    with pytest.raises(ConfigError, match=r"model.retrieval='phased'; choose one of \('none', 'genomes', 'haplotypes'\)"):
        _cfg("data.store=x", "model.retrieval_k=4", "model.retrieval=phased")


def test_model_preset_changes_d_ff_default():
    """d_ff follows d_model unless set: the schema must not bake in the default preset's value."""
    assert _cfg("data.store=x", "model=small").model.d_ff == 4 * 128
    assert _cfg("data.store=x", "model.d_model=32", "model.n_heads=2").model.d_ff == 128


def test_config_dir_resolution(tmp_path, monkeypatch):
    from snpbag.config import config_dir

    assert config_dir() == CONFIGS
    monkeypatch.setenv("SNPBAG_CONFIG_DIR", str(tmp_path))  # no config.yaml there
    # the checkout's configs/ is still found as the fallback, so move the module away too
    monkeypatch.setattr("snpbag.config.__file__", str(tmp_path / "site-packages" / "snpbag" / "config.py"))
    with pytest.raises(ConfigError, match=r"no snpbag configs found.*set SNPBAG_CONFIG_DIR="):
        config_dir()
    (tmp_path / "config.yaml").write_text("defaults: []\n")
    assert config_dir() == tmp_path


def test_yaml_has_no_code():
    """No resolvers (``${eval:...}``, ``${oc.env:...}``), arithmetic or shell-outs in YAML
    values (STYLE.md): plain values and at most ``${key}`` references."""
    import re

    def strings(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from strings(v)
        elif isinstance(x, list):
            for v in x:
                yield from strings(v)
        elif isinstance(x, str):
            yield x

    for p in CONFIGS.rglob("*.yaml"):
        for v in strings(yaml.safe_load(p.read_text()) or {}):
            assert not re.search(r"\$\{[^}]*:", v) and "$(" not in v and "`" not in v, f"{p}: {v!r}"


def test_a_task_can_select_its_masking(tmp_path, monkeypatch):
    """The pattern fine-tuning tasks use (docs/training.md): a task's defaults list switches
    the masking group, and the command line can still override it."""
    shutil.copytree(CONFIGS, tmp_path / "configs")
    (tmp_path / "configs" / "task" / "finetune.yaml").write_text(
        "defaults:\n  - override /masking@_global_.masking: array\n"
        "name: finetune\nhead:\n  name: genotype\n  options: {}\ninit_from: models/base\n")
    monkeypatch.setenv("SNPBAG_CONFIG_DIR", str(tmp_path / "configs"))
    cfg = _cfg("task=finetune", "data.store=x", "masking.array_sites=a.tsv")
    assert cfg.task.init_from == "models/base" and cfg.masking.array == 0.9
    assert _cfg("task=finetune", "masking=random", "data.store=x").masking.array == 0.0


def test_val_mask_rate_fixes_the_validation_masking(store):
    """data.val_mask_rate validates at exactly that random masking rate whatever the training
    masking; null keeps the training masking; out-of-range values fail at compose time."""
    from snpbag.train.run import build_datamodule

    dm = build_datamodule(_cfg(f"data.store={store}", "data.val_mask_rate=0.9"))
    assert (dm.val_masking.random, dm.val_masking.min_rate, dm.val_masking.max_rate) == (1.0, 0.9, 0.9)
    assert (dm.masking.min_rate, dm.masking.max_rate) == (0.85, 0.99)
    dm = build_datamodule(_cfg(f"data.store={store}"))
    assert dm.val_masking == dm.masking
    with pytest.raises(ConfigError, match="data.val_mask_rate"):
        _cfg(f"data.store={store}", "data.val_mask_rate=1.5")


def test_model_genetic_map_reaches_the_haplotype_panel(tmp_path):
    """model.genetic_map=FILE composes, and the panel the datamodule builds takes its cM from it."""
    from snpbag.store.genotypes import open_store
    from snpbag.train.run import build_datamodule

    store = tiny_store(tmp_path / "complete", missing_rate=0.0)
    vocab = open_store(store).vocab
    gmap = tmp_path / "steep.map"
    gmap.write_text("".join(f"{c} . 0 0\n{c} . 200 1000000\n" for c in vocab.chrom_names))  # 200 cM/Mb
    cfg = _cfg("experiment=pretrain_panel", f"data.store={store}", "data.num_workers=0",
               "data.persistent_workers=false", f"model.genetic_map={gmap}")
    assert cfg.model.genetic_map == str(gmap)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    np.testing.assert_allclose(dm.retrieval_panel.cm, vocab.position * 2e-4)
    with pytest.raises(ConfigError, match="model.genetic_map=.* is read by the haplotype retrieval only"):
        _cfg(f"data.store={store}", f"model.genetic_map={gmap}")
