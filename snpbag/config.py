"""Typed configuration schemas, one per concept, each validated in its ``__post_init__``.
Registered with Hydra's ConfigStore (see register()) so YAML in configs/ extends a schema
and a typo fails at compose time.

The model schema is used without Hydra too: a model directory stores it as JSON and
inference rebuilds the model from it; :func:`preset` reads a named preset from
configs/model/ for Python callers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from snpbag.errors import ConfigError

MISSING = "???"  # omegaconf.MISSING, without importing omegaconf for inference users
CONFIG_ENV = "SNPBAG_CONFIG_DIR"
ROOT_CONFIG = "config"  # configs/config.yaml: the root of the Hydra config tree

ATTENTION_BACKENDS = ("auto", "flash", "flex", "local", "dense")
RETRIEVAL_KINDS = ("none", "genomes", "haplotypes")
SITE_CODES = ("table", "binary")
FFN_KINDS = ("gelu", "swiglu")
NORM_KINDS = ("layernorm", "rmsnorm")

#: config keys that were renamed: old full key -> new full key. A config (YAML, override,
#: preset) that uses an old key is refused with the new name; a saved model's config
#: (model.json, a checkpoint) is read under the new names, so existing model directories load.
RENAMED: dict[str, str] = {
    "model.neighbours_k": "model.retrieval_k",
    "model.neighbours_window": "model.retrieval_span",
    "data.contigs": "data.tiles",
}


def renamed_message(old: str) -> str:
    """The one-line refusal for a renamed key (``old`` as a full key, e.g. model.x)."""
    return f"{old} was renamed {RENAMED[old]}; use {RENAMED[old]}"


def config_dir() -> Path:
    """The directory holding config.yaml and the config groups.

    ``$SNPBAG_CONFIG_DIR`` when set (a user's own config tree), else the configs installed
    with the package (snpbag/configs/: setup.py maps the source tree's configs/ there in a
    wheel), else ``configs/`` beside the snpbag package (a source checkout or an editable
    install, where configs/ is the one copy the developers edit).

    Raises
    ------
    ConfigError : neither exists.
    """
    env = os.environ.get(CONFIG_ENV)
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve()
    candidates += [here.parent / "configs", here.parents[1] / "configs"]
    for c in candidates:
        if (c / f"{ROOT_CONFIG}.yaml").is_file():
            return c.resolve()
    raise ConfigError(
        f"no snpbag configs found (looked in {', '.join(str(c) for c in candidates)}); "
        f"set {CONFIG_ENV}=/path/to/snpbag/configs or reinstall snpbag (pip install snpbag ships its configs)"
    )


@dataclass(kw_only=True)
class ModelConfig:
    """Encoder architecture and how it runs, validated here and nowhere else.

    The architecture fields without a default (name, n_layers, n_heads, d_model, window,
    block_size) come from a preset, configs/model/<name>.yaml (see
    :func:`preset`), or from a saved model's config; every other field has one default,
    below.

    ``window`` is the TOTAL attention span in tokens: a token attends to keys within
    ``window // 2`` positions on either side (itself included).

    ``site_code``, ``ffn`` and ``norm`` choose between snpbag's own design (a learned
    factorised site table, GELU, LayerNorm: the defaults) and the published SNPBag design
    (a fixed binary code of the site index, SwiGLU, RMSNorm: configs/model/snpbag_paper.yaml);
    docs/scaling.md compares them at equal compute."""

    name: str
    n_layers: int
    n_heads: int
    d_model: int
    d_ff: int | None = None  # default 4 * d_model
    window: int
    backend: str = "auto"
    block_size: int  # sites per attention block of the local and flex backends (compiled flex: rounded up to 128s)
    n_sites: int = 0  # vocabulary size the site embedding covers (0: set from the data before building)
    # site identity: "table" = a narrow learned per-site table of width site_dim (and a
    # per-site allele direction), projected to d_model; "binary" = the site index's fixed
    # SITE_CODE_BITS-bit binary code concatenated with a genotype embedding of width
    # genotype_dim, projected to d_model: no per-site parameters at any vocabulary size
    site_code: str = "table"
    site_dim: int | None = None  # site_code=table: width of the per-site tables (required)
    genotype_dim: int = 32  # site_code=binary: width of the genotype embedding beside the code
    ffn: str = "gelu"  # feed-forward: "gelu" (fc2(gelu(fc1 x))) or "swiglu" (fc2(silu(a) * b), [a|b] = fc1 x)
    norm: str = "layernorm"  # pre-norm of every block and the final norm: "layernorm" or "rmsnorm"
    dropout: float = 0.0
    activation_checkpointing: bool = False
    compile: bool = False
    # retrieval input (snpbag.retrieval.kinds): retrieval_k > 0 adds, per token, what the
    # training panel says about the site given the visible ones; the panel ships with the
    # exported model. retrieval "none" (or retrieval_k 0): no panel, in training or in the
    # exported model directory, which then holds no individual-level genotypes. retrieval "genomes": the genotype votes of the retrieval_k
    # genomes nearest within retrieval_span sites either side; "haplotypes": genotype
    # probabilities of a haplotype-copying (Li-Stephens) model over retrieval_k panel
    # haplotypes per block of retrieval_span visible sites (phased panels only).
    # retrieval_span is not the attention window: the two are independent.
    retrieval_k: int = 0
    retrieval_span: int = 128
    retrieval: str = "genomes"
    # genetic map for the haplotype retrieval's switch distances: PLINK .map (chrom id cM
    # bp; Beagle's map=) or HapMap-style (chrom bp rate cM), read when the panel is built
    # (its cM positions ship with the panel); None: 1 cM/Mb
    genetic_map: str | None = None

    def __post_init__(self) -> None:
        for key in ("n_layers", "n_heads", "d_model", "window", "block_size", "genotype_dim"):
            _check_positive(f"model.{key}", getattr(self, key))
        for key, allowed in (("site_code", SITE_CODES), ("ffn", FFN_KINDS), ("norm", NORM_KINDS)):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"model.{key}={getattr(self, key)!r}; choose one of {allowed}")
        if self.site_code == "table":
            if self.site_dim is None:
                raise ConfigError("model.site_dim is not set: site_code=table needs the width of its per-site table")
            _check_positive("model.site_dim", self.site_dim)
        elif self.site_dim is not None:
            raise ConfigError(f"model.site_dim={self.site_dim}: site_code=binary has no per-site table; "
                              "drop model.site_dim (model.genotype_dim sets the genotype embedding's width)")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}")
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        _check_positive("model.d_ff", self.d_ff)
        _check_positive("model.n_sites", self.n_sites, zero_ok=True)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1)")
        if self.backend not in ATTENTION_BACKENDS:
            raise ConfigError(f"model.backend={self.backend!r}; choose one of {ATTENTION_BACKENDS}")
        _check_positive("model.retrieval_k", self.retrieval_k, zero_ok=True)
        _check_positive("model.retrieval_span", self.retrieval_span)
        if self.retrieval not in RETRIEVAL_KINDS:
            raise ConfigError(f"model.retrieval={self.retrieval!r}; choose one of {RETRIEVAL_KINDS}")
        if self.retrieval == "none" and self.retrieval_k:
            raise ConfigError(f"model.retrieval=none with model.retrieval_k={self.retrieval_k}: set model.retrieval_k=0 "
                              "for a panel-free model, or choose model.retrieval=genomes|haplotypes")
        if self.genetic_map and (self.retrieval != "haplotypes" or not self.uses_panel):
            raise ConfigError(f"model.genetic_map={self.genetic_map!r} is read by the haplotype retrieval only; "
                              "set model.retrieval=haplotypes and model.retrieval_k > 0, or drop the map")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def uses_panel(self) -> bool:
        """Whether the model reads a retrieval panel (and its directory ships one)."""
        return self.retrieval != "none" and self.retrieval_k > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, saved: bool = True) -> "ModelConfig":
        """From plain values. ``saved`` (a model directory's or a checkpoint's config): keys
        renamed since it was written are read under their new names. Otherwise (a preset
        file) a renamed key is refused with its new name. Unknown keys are refused."""
        d = dict(d)
        for old in [k for k in d if f"model.{k}" in RENAMED]:
            new = RENAMED[f"model.{old}"].removeprefix("model.")
            if not saved:
                raise ConfigError(renamed_message(f"model.{old}"))
            d.setdefault(new, d.pop(old))
        fields = cls.__dataclass_fields__
        unknown = set(d) - set(fields)
        if unknown:
            raise ConfigError(f"unknown model config keys {sorted(unknown)}; known: {sorted(fields)}")
        missing = [k for k, f in fields.items() if k not in d and f.default is f.default_factory]  # both MISSING
        if missing:
            raise ConfigError(f"model config lacks {missing}; a preset or saved config sets every architecture key")
        return cls(**d)


def preset_names() -> list[str]:
    """The model presets: the files of configs/model/."""
    return sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))


def preset(name: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of the named preset, with field overrides (e.g. ``n_sites=81920``).

    The presets are the YAML files of configs/model/, read here as Hydra reads them for
    ``snpbag train model=NAME``: each names the architecture fields only, the rest keep
    their :class:`ModelConfig` defaults. YAML is the one home because the training CLI,
    experiments and users already edit presets there; Python reads the same files instead
    of restating them (tests/test_configs.py checks the two readings agree).

    Raises
    ------
    ConfigError : no such preset, a key the schema does not define (or one renamed), a bad value.
    """
    path = config_dir() / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown model preset {name!r}; choose one of {preset_names()}")
    values = yaml.safe_load(path.read_text()) or {}
    try:
        return ModelConfig.from_dict({**values, **overrides}, saved=False)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


@dataclass
class HeadConfig:
    """Which head sits on the encoder, by its HEADS registry name, plus its options."""

    name: str = "genotype"
    options: dict[str, Any] = field(default_factory=dict)


# --- training schemas ---------------------------------------------------------------------
# One dataclass per Hydra group. configs/config.yaml starts from the root schema
# ("snpbag_schema", below), so every group YAML, experiment and command-line override
# is merged into a typed node: an unknown key or a wrong type fails at compose time.
# Value checks live in __post_init__ and run when snpbag.train.run turns the composed
# config into these objects (OmegaConf.to_object).

SCHEDULERS = ("cosine", "constant")
WANDB_MODES = ("offline", "online", "disabled")


def _check_fraction(name: str, value: float, *, low: float = 0.0, high: float = 1.0) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} must lie in [{low}, {high}]")


def _check_positive(name: str, value: int | float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{name}={value} must be {'>= 0' if zero_ok else '> 0'}")


@dataclass
class AugmentConfig:
    """On-the-fly synthetic genomes recombined from the training samples
    (:mod:`snpbag.data.augment`; the dataset reads this object as is). Training only:
    validation always reads real held-out samples.

    Attributes
    ----------
    enabled : make synthetic training genomes at all.
    rate : uniform recombination rate in cM/Mb, used when no genetic map is given.
    genetic_map : PLINK ``.map`` (chrom id cM bp) or HapMap-style (chrom bp rate cM, with
        header) file covering the store's chromosomes; overrides ``rate``.
    generations : crossovers per Morgan (RESHAPE's 8th-generation offspring: 8).
    panel_size : reference genomes read per block of synthetic genomes (bounds memory:
        panel_size x seq_len x 2 bytes); each block draws a new random panel subset.
    items_per_epoch : synthetic sequences per epoch over all ranks; default: as many as
        the real training items (samples x tiles).
    """

    enabled: bool = False
    rate: float = 1.0
    genetic_map: str | None = None
    generations: float = 8.0
    panel_size: int = 256
    items_per_epoch: int | None = None

    def __post_init__(self) -> None:
        _check_positive("data.augment.rate", self.rate, zero_ok=True)
        _check_positive("data.augment.generations", self.generations, zero_ok=True)
        _check_positive("data.augment.panel_size", self.panel_size)
        if self.items_per_epoch is not None:
            _check_positive("data.augment.items_per_epoch", self.items_per_epoch)


@dataclass
class DataConfig:
    """Where the genotypes come from and how they are batched (arguments of
    snpbag.data.datamodule.GenotypeDataModule)."""

    store: str = MISSING  # genotype store written by `snpbag convert` (path or URL)
    seq_len: int | None = 1024  # sites per training sequence: a random stretch of a tile; null = whole tiles
    val_seq_len: int | None = None  # sites per validation sequence; default seq_len
    batch_size: int = 8  # sequences per device per step
    val_fraction: float = 0.1  # fraction of samples held out for validation (chosen by seed)
    # validation hides exactly this fraction of sites at random (the issue's "accuracy at 90 %
    # masking"), so validation numbers do not move with the training masking; null = the
    # training masking (array fine-tuning keeps validating on the array pattern)
    val_mask_rate: float | None = None
    samples: str | None = None  # file of sample ids to train on; default all
    val_samples: str | None = None  # file of held-out sample ids; overrides val_fraction
    tiles: list[int] | None = None  # indices of the vocabulary tiles to use (snpbag.store.vocab); default all
    num_workers: int = 0
    persistent_workers: bool = False
    pin_memory: bool = False
    prefetch_factor: int | None = None
    # samples read together per stretch of a tile (None: ~262,144 sites per read). Small
    # blocks fill batches with near-identical sequences; 64 left the tiny model at its AF prior (measured)
    block_samples: int | None = None
    buffer_size: int | None = None  # training shuffle buffer, in sequences (None: 4 x block_samples)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        for name in ("seq_len", "val_seq_len"):
            v = getattr(self, name)
            if v is not None:
                _check_positive(f"data.{name}", v)
        _check_positive("data.batch_size", self.batch_size)
        _check_positive("data.num_workers", self.num_workers, zero_ok=True)
        if self.block_samples is not None:
            _check_positive("data.block_samples", self.block_samples)
        if self.buffer_size is not None:
            _check_positive("data.buffer_size", self.buffer_size)
        _check_fraction("data.val_fraction", self.val_fraction, high=0.9)
        if self.val_mask_rate is not None:
            _check_fraction("data.val_mask_rate", self.val_mask_rate)


@dataclass
class MaskingConfig:
    """Which genotypes are hidden (and become targets); :class:`snpbag.data.masking.Masker`
    applies this object as is.

    Each sequence picks a strategy with probability weight / (random + array):
    ``random`` hides a rate drawn uniformly in [min_rate, max_rate] (SNPBag pretraining:
    0.85-0.99); ``array`` hides every site absent from ``array_sites`` (a genotyping
    array's tab-separated chrom/pos/ref/alt list), as in imputation fine-tuning. The
    weights need not sum to one.

    ``curriculum_sequences`` > 0 makes the random rate a curriculum: over the first that many
    training sequences (all ranks, counted across epochs) the bounds move linearly from
    [start_min_rate, start_max_rate] to [min_rate, max_rate], so training starts on the
    easier, BERT-like problem (most neighbours visible) and ends on the pre-training one.
    0 (the default): the bounds are fixed."""

    random: float = 1.0
    min_rate: float = 0.85
    max_rate: float = 0.99
    array: float = 0.0
    array_sites: str | None = None
    curriculum_sequences: int = 0
    start_min_rate: float = 0.15
    start_max_rate: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_rate", "max_rate", "start_min_rate", "start_max_rate"):
            _check_fraction(f"masking.{name}", getattr(self, name))
        for lo, hi in (("min_rate", "max_rate"), ("start_min_rate", "start_max_rate")):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(f"masking.{lo}={getattr(self, lo)} exceeds masking.{hi}={getattr(self, hi)}")
        _check_positive("masking.curriculum_sequences", self.curriculum_sequences, zero_ok=True)
        if self.random < 0 or self.array < 0 or self.random + self.array <= 0:
            raise ConfigError(f"masking.random={self.random}, masking.array={self.array}: weights must be >= 0, not both 0")
        if self.array > 0 and not self.array_sites:
            raise ConfigError(f"masking.array={self.array} needs masking.array_sites=FILE (the array's site list)")


@dataclass
class TaskConfig:
    """What is trained: a head (HEADS registry name) on the encoder, optionally starting
    from a pretrained model directory (``snpbag export`` output). With ``init_from`` the
    encoder weights are loaded; the head's too when the saved head has the same name.
    ``freeze_encoder`` trains the head alone (the embedding task's default: its embeddings
    then describe what the pretrained encoder already knows)."""

    name: str = "pretrain"
    head: HeadConfig = field(default_factory=HeadConfig)
    init_from: str | None = None
    freeze_encoder: bool = False


@dataclass
class OptimConfig:
    """AdamW. Weight decay applies to matrices only: never to norms, biases or embeddings."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    # exponential moving average of the weights, used for validation and export
    # (snpbag.train.ema); 0 disables it
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("optim.lr", self.lr)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay={self.ema_decay} must be in [0, 1) (0: no weight average)")
        _check_positive("optim.weight_decay", self.weight_decay, zero_ok=True)
        _check_positive("optim.grad_clip", self.grad_clip, zero_ok=True)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas={list(self.betas)} must be two numbers in [0, 1)")


@dataclass
class SchedulerConfig:
    """Linear warm-up to optim.lr, then cosine decay to ``min_lr_ratio * lr`` at
    ``total_steps`` (default trainer.max_steps; ``constant``: flat after warm-up). Set
    total_steps to stop a run early and resume it later on the same schedule."""

    name: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    total_steps: int | None = None

    def __post_init__(self) -> None:
        if self.name not in SCHEDULERS:
            raise ConfigError(f"scheduler.name={self.name!r}; choose one of {SCHEDULERS}")
        if self.total_steps is not None:
            _check_positive("scheduler.total_steps", self.total_steps)
        _check_positive("scheduler.warmup_steps", self.warmup_steps, zero_ok=True)
        _check_fraction("scheduler.min_lr_ratio", self.min_lr_ratio)


@dataclass
class TrainerConfig:
    """Options passed to lightning.Trainer (step-based: validation every
    ``val_check_interval`` optimizer steps, across epoch boundaries)."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"  # auto: bf16-mixed on a GPU that supports it, else 32-true
    max_steps: int = 1000
    val_check_interval: int = 200
    limit_val_batches: Any = 1.0  # float: fraction of the validation set; int: batches
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    deterministic: bool = False
    enable_progress_bar: bool = True
    num_sanity_val_steps: int = 2  # validation batches run before training, to fail fast
    cpu_threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    # DDP: a collective waiting longer than this fails the job, naming the waiting rank
    collective_timeout_s: int = 1800

    def __post_init__(self) -> None:
        name = str(self.strategy).lower()
        if name.startswith("deepspeed") or (name.startswith("fsdp") and name != "fsdp"):
            # fsdp is snpbag's own FSDP2 preset (snpbag.train.run); Lightning's FSDPStrategy
            # and DeepSpeed write checkpoint directories that resume and export do not read
            raise ConfigError(f"trainer.strategy={self.strategy}: not supported; use trainer=fsdp (trainer.strategy=fsdp, "
                              "fully sharded) or trainer.strategy=ddp, see docs/training.md")
        _check_positive("trainer.collective_timeout_s", self.collective_timeout_s)
        _check_positive("trainer.max_steps", self.max_steps)
        _check_positive("trainer.val_check_interval", self.val_check_interval)
        _check_positive("trainer.num_nodes", self.num_nodes)
        _check_positive("trainer.accumulate_grad_batches", self.accumulate_grad_batches)
        _check_positive("trainer.log_every_n_steps", self.log_every_n_steps)


@dataclass
class CheckpointConfig:
    """``last.ckpt`` every ``every_n_steps`` steps and at the end (what resume=true
    continues from), plus the ``save_top_k`` checkpoints with the lowest ``monitor``."""

    every_n_steps: int = 100
    save_top_k: int = 2
    monitor: str = "val/loss"
    keep_preempt: int = 1  # pre-emption checkpoints (hpc_ckpt_*.ckpt) kept: the newest N

    def __post_init__(self) -> None:
        _check_positive("callbacks.checkpoint.every_n_steps", self.every_n_steps)
        _check_positive("callbacks.checkpoint.save_top_k", self.save_top_k, zero_ok=True)
        _check_positive("callbacks.checkpoint.keep_preempt", self.keep_preempt)


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    throughput: bool = True  # tokens/s, samples/s, peak memory every trainer.log_every_n_steps
    lr_monitor: bool = True
    item_log: bool = False  # RUN_DIR/items/rank<r>.tsv: every training item per rank (an audit)


@dataclass
class WandbConfig:
    """Weights & Biases. Offline by default (files under RUN_DIR/wandb, `wandb sync` later);
    online only when asked. The environment variable WANDB_MODE=disabled turns it off."""

    enabled: bool = True
    mode: str = "offline"
    project: str = "snpbag"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ConfigError(f"logger.wandb.mode={self.mode!r}; choose one of {WANDB_MODES}")


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    csv: bool = True
    tensorboard: bool = True


@dataclass
class PathsConfig:
    runs_dir: str = "runs"
    run_dir: str | None = None  # default: RUNS_DIR/NAME


@dataclass
class TrainConfig:
    """Everything `snpbag train` needs; configs/config.yaml composes one of these."""

    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    # MISSING, not a default instance: ModelConfig.__post_init__ fills d_ff from d_model, and a
    # filled-in default would survive a preset that changes d_model.
    model: ModelConfig = MISSING  # type: ignore[assignment]
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    name: str = "pretrain"
    seed: int = 0
    resume: bool = False  # continue RUN_DIR/checkpoints/last.ckpt (fresh start when there is none)


#: Hydra group name -> schema; each is registered as GROUP/schema, the root as snpbag_schema.
GROUP_SCHEMAS: dict[str, type] = {
    "data": DataConfig, "masking": MaskingConfig, "model": ModelConfig, "task": TaskConfig,
    "optim": OptimConfig, "scheduler": SchedulerConfig, "trainer": TrainerConfig,
    "callbacks": CallbacksConfig, "logger": LoggerConfig, "paths": PathsConfig,
}
ROOT_SCHEMA = "snpbag_schema"


def register() -> None:
    """Register the schemas with Hydra's ConfigStore (idempotent).

    configs/config.yaml lists ``snpbag_schema`` first in its defaults, so each group's
    YAML is merged into the typed node of its group. Experiments (``experiment/``) and
    debug presets (``debug/``) are ``@package _global_`` diffs of the same root schema.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name=ROOT_SCHEMA, node=TrainConfig)
    for group, schema in GROUP_SCHEMAS.items():
        cs.store(group=group, name="schema", node=schema)
