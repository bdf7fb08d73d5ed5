"""The Lightning wrapper around an encoder + head: optimisation, metrics, checkpoint metadata.

One module serves every task whose head returns a loss: masked-genotype pretraining and
array-masked imputation fine-tuning differ only in the data layer's masking and in the
weights the model starts from (snpbag.train.run builds both). Genotype metrics are
computed whenever the head returns per-site logits over the three genotypes.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch
from lightning import LightningModule
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from torch import nn
from torchmetrics import MeanMetric

from snpbag.config import OptimConfig, SchedulerConfig
from snpbag.train.ema import CHECKPOINT_KEY as EMA_KEY
from snpbag.train.ema import WeightAverage, whole_tensor
from snpbag.train.metrics import GenotypeAccuracy, step_accuracy

log = logging.getLogger(__name__)

#: Module types whose parameters never get weight decay (besides every bias / 1-D tensor).
_NO_DECAY_MODULES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.LayerNorm, nn.GroupNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)


def param_groups(model: nn.Module, *, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: decay on weight matrices of linear layers only.

    Norm scales, biases and embedding tables are left undecayed (decaying an embedding
    row that a rare site seldom updates would shrink it towards zero between visits).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for mod_name, mod in model.named_modules():
        leaf = mod_name.rsplit(".", 1)[-1].lower()
        for p_name, p in mod.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if (p.ndim < 2 or p_name.endswith("bias") or isinstance(mod, _NO_DECAY_MODULES)
                    or "norm" in leaf or "emb" in leaf):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]



def use_fused_adamw(device_type: str, *, precision: str, grad_clip: float | None) -> bool:
    """Fused AdamW on CUDA, except where Lightning clips gradients under mixed precision.

    Lightning's mixed-precision plugin refuses, at the first optimiser step, to clip the
    gradients of an optimiser that unscales them internally (a fused one); clipping at the
    default 1.0 with the GPU default ``bf16-mixed`` would stop every GPU run there.
    """
    if device_type != "cuda":
        return False
    mixed = str(precision).endswith("-mixed") or str(precision) in ("16", "bf16")
    return not (mixed and grad_clip)

class WarmupCosine:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay from 1 to
    ``min_ratio`` at ``total`` steps (flat at ``min_ratio`` afterwards). A callable object,
    not a lambda, so LambdaLR can checkpoint it."""

    def __init__(self, *, warmup: int, total: int, min_ratio: float, cosine: bool = True) -> None:
        self.warmup, self.total, self.min_ratio, self.cosine = warmup, total, min_ratio, cosine

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        if not self.cosine:
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class SnpbagModule(LightningModule):
    """Trains ``model`` (an encoder + head whose forward(batch) returns a HeadOutput).

    Parameters
    ----------
    model : the SnpbagModel to train.
    optim, scheduler : optimiser and LR schedule settings.
    max_steps : optimiser steps of the whole run (the cosine schedule ends there).
    site_af : ALT allele frequency of every vocabulary site (the store's AF, which
        ``snpbag convert`` computes over all the store's samples, held-out ones included;
        the model's site prior is the same array): used for MAF bins and the
        allele-frequency baseline.
    meta : JSON-serialisable facts stored in every checkpoint under ``"snpbag"`` (model
        config, head, run config, store) so a checkpoint can be exported on its own.
    """

    def __init__(self, model: nn.Module, *, optim: OptimConfig, scheduler: SchedulerConfig, max_steps: int,
                 site_af: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model
        self.optim_cfg = optim
        self.sched_cfg = scheduler
        self.max_steps = max_steps
        self.meta = dict(meta or {})
        self.val_acc = GenotypeAccuracy(site_af)
        self.val_loss = MeanMetric()
        self.last_val_metrics: dict[str, float] = {}
        self._rng_to_restore: dict[str, Any] | None = None
        # weight average (optim.ema_decay > 0): updated after every optimiser step, swapped in
        # for validation, saved in checkpoints next to the live weights (snpbag.train.ema)
        self.ema = WeightAverage(self, decay=optim.ema_decay) if optim.ema_decay > 0 else None
        self._ema_swap = None

    # --- steps ---------------------------------------------------------------------------

    def configure_model(self) -> None:
        """trainer.strategy=fsdp: shard every encoder block, then the rest, over all ranks
        (FSDP2: each block's parameters are gathered only while it runs), and the weight
        average with them. A no-op otherwise."""
        mesh = self.device_mesh
        if mesh is None:
            return
        from torch.distributed.fsdp import fully_shard

        mesh = mesh["data_parallel"]
        for block in self.model.encoder.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(self.model, mesh=mesh)
        if self.ema is not None:
            self.ema.shard_like(self)
        if self.global_rank == 0:
            local = sum(p.to_local().numel() for p in self.model.parameters())
            log.info("fsdp: rank 0 holds %d of the model's %d parameters (%d ranks)", local,
                     sum(p.numel() for p in self.model.parameters()), mesh.size())

    def forward(self, batch):  # noqa: D401 - Lightning convention
        return self.model(batch)

    def _loss(self, out, batch) -> torch.Tensor:
        if out.loss is not None:
            return out.loss
        # No target in this batch (everything hidden was uncalled): a zero that still
        # touches every parameter, so DDP ranks stay in step.
        return out.logits.sum() * 0.0

    @staticmethod
    def _scored(out, batch) -> torch.Tensor:
        """What the logits are scored against: the head's own target when it names one (the
        embedding head reconstructs every called genotype), else the batch's masked sites."""
        return out.extras.get("target", batch.target)

    def _is_genotype_logits(self, out, batch) -> bool:
        return out.logits.dim() == 3 and out.logits.shape[-1] == 3 and out.logits.shape[:2] == batch.target.shape

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        out = self.model(batch)
        loss = self._loss(out, batch)
        bs = int(batch.genotype.shape[0])
        self.log("train/loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
        if self._is_genotype_logits(out, batch):
            with torch.no_grad():
                acc, base = step_accuracy(out.logits.detach(), self._scored(out, batch), self.val_acc.site_guess,
                                          batch.site_index)
            self.log("train/acc", acc, on_step=True, on_epoch=False, prog_bar=True, batch_size=bs)
            self.log("train/base_acc", base, on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # right after the weights move (once per accumulated step), before any callback's
        # on_train_batch_end can checkpoint them
        if self.ema is not None:
            self.ema.update(self)

    def on_validation_epoch_start(self) -> None:
        if self.ema is not None and self.ema.updates > 0:
            self._ema_swap = self.ema.applied(self)
            self._ema_swap.__enter__()

    def _ema_restore(self) -> None:
        if self._ema_swap is not None:
            swap, self._ema_swap = self._ema_swap, None
            swap.__exit__(None, None, None)

    def validation_step(self, batch, batch_idx: int) -> None:
        out = self.model(batch)
        target = self._scored(out, batch)
        n_scored = int((target >= 0).sum())
        if out.loss is not None and n_scored:
            # weighted by scored positions: the epoch value is the token-level mean
            self.val_loss.update(out.loss.detach().float(), weight=n_scored)
        if self._is_genotype_logits(out, batch):
            self.val_acc.update(out.logits.float(), target, batch.site_index)

    def on_validation_epoch_end(self) -> None:
        # the live weights are back before any checkpoint of this validation is written
        self._ema_restore()
        # torchmetrics sums the counts over ranks inside compute(), so every rank logs the
        # same exact numbers (no sync_dist averaging of per-rank ratios).
        values: dict[str, torch.Tensor] = {}
        if self.val_loss.update_count:
            values["loss"] = self.val_loss.compute()
        if self.val_acc.update_count:
            values.update(self.val_acc.compute())
        self.val_loss.reset()
        self.val_acc.reset()
        if not values:
            return
        for k, v in values.items():
            self.log(f"val/{k}", v, prog_bar=k in ("loss", "acc", "base_acc"))
        if self.trainer.sanity_checking:
            return
        self.last_val_metrics = {f"val/{k}": float(v) for k, v in values.items()}
        if "val/acc" in self.last_val_metrics and self.trainer.is_global_zero:
            m = self.last_val_metrics
            log.info("step %d: val/loss %.4f (AF baseline %.4f)  masked acc %.4f (AF baseline %.4f, gain %+.4f)",
                     self.global_step, m.get("val/loss", float("nan")), m["val/base_loss"], m["val/acc"],
                     m["val/base_acc"], m["val/acc_gain"])

    # --- optimisation --------------------------------------------------------------------

    def configure_optimizers(self):
        o = self.optim_cfg
        groups = param_groups(self.model, weight_decay=o.weight_decay)
        trainer = self._trainer
        fused = use_fused_adamw(self.device.type, precision=trainer.precision if trainer else "32-true",
                                grad_clip=trainer.gradient_clip_val if trainer else None)
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps, fused=fused)
        s = self.sched_cfg
        factor = WarmupCosine(warmup=s.warmup_steps, total=self.max_steps, min_ratio=s.min_lr_ratio,
                              cosine=s.name == "cosine")
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step", "frequency": 1}}

    def on_before_optimizer_step(self, optimizer) -> None:
        every = self.trainer.log_every_n_steps if self.trainer else 0
        if every and self.global_step % every == 0:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            if grads:
                # a sharded (FSDP) gradient's norm is a partial DTensor: full_tensor() reduces it
                from torch.distributed.tensor import DTensor

                norms = [torch.linalg.vector_norm(g.float()) for g in grads]
                norm = torch.linalg.vector_norm(torch.stack([n.full_tensor() if isinstance(n, DTensor) else n
                                                             for n in norms]))
                self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    # --- checkpoints: metadata and exact resume -------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["snpbag"] = {**self.meta, "global_step": int(self.global_step),
                                "val_metrics": dict(self.last_val_metrics)}
        # Global RNG states (dropout, any torch/numpy/python randomness in the step): restored
        # right before the first step after a resume so a resumed run draws the same numbers.
        checkpoint["snpbag_rng"] = _rng_to_plain(_collect_rng_states(include_cuda=torch.cuda.is_available()))
        if self.ema is not None:
            checkpoint[EMA_KEY] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.last_val_metrics = dict(checkpoint.get("snpbag", {}).get("val_metrics", {}))
        self._rng_to_restore = checkpoint.get("snpbag_rng")
        if self.ema is not None:
            if EMA_KEY in checkpoint:
                self.ema.load_state_dict(checkpoint[EMA_KEY])
            else:  # a checkpoint from a run without the average: start it from these weights
                log.warning("checkpoint has no weight average; optim.ema_decay starts one from its weights")
                # FSDP has loaded the weights into the model already and left no state_dict here
                state = checkpoint.get("state_dict") or dict(self.state_dict())
                self.ema.load_state_dict({"updates": 0, "shadow": {k: whole_tensor(state[k]) for k in self.ema.shadow}})

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        encoder = getattr(self.model, "encoder", None)
        if encoder is not None and encoder.training and not any(p.requires_grad for p in encoder.parameters()):
            encoder.eval()  # a frozen encoder (task.freeze_encoder) runs as at inference: no dropout
        if self._rng_to_restore is not None:
            states, self._rng_to_restore = _rng_from_plain(self._rng_to_restore), None
            if not torch.cuda.is_available():
                states.pop("torch.cuda", None)
            _set_rng_states(states)


def _rng_to_plain(states: dict[str, Any]) -> dict[str, Any]:
    """RNG states as tensors and lists only, so checkpoints load with weights_only=True."""
    out = dict(states)
    if "numpy" in out:
        name, keys, pos, has_gauss, gauss = out["numpy"]
        out["numpy"] = [name, [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)]
    version, state, gauss = out["python"]
    out["python"] = [version, list(state), gauss]
    return out


def _rng_from_plain(states: dict[str, Any]) -> dict[str, Any]:
    out = dict(states)
    if "numpy" in out:
        name, keys, pos, has_gauss, gauss = out["numpy"]
        out["numpy"] = (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss)
    version, state, gauss = out["python"]
    out["python"] = (version, tuple(state), gauss)
    return out
