"""Exponential moving average (EMA) of a model's weights, for validation and export.

With a small cohort the weights after any one step carry the noise of the last few
batches; the average over the last ~1 / (1 - decay) steps is a lower-variance estimate
(Polyak averaging; timm's ``ModelEmaV3``, the EMA of diffusion models). snpbag keeps it in
the LightningModule (``optim.ema_decay``; 0 turns it off):

* after every optimiser step, ``ema = d_n * ema + (1 - d_n) * weights`` at update ``n``
  with ``d_n = decay * (1 - decay**(n-1)) / (1 - decay**n)``: the bias-corrected average
  (as Adam corrects its moments), i.e. exactly
  ``sum_k decay**(n-k) * w_k / sum_k decay**(n-k)`` over the weights after updates
  ``1..n``. The random initial weights never enter, and ``decay`` means the same thing at
  every step (a ``(1 + n) / (10 + n)`` warm-up would cap the decay below 0.99 for the
  first ~900 steps of a short run);
* validation runs with the averaged weights swapped in, so ``val/*`` metrics, the top-k
  checkpoints ranked by them and the exported model all describe the same weights;
* checkpoints keep the live weights (training resumes from them) and the average under
  ``"snpbag_ema"``; ``snpbag export`` writes the average.

Only trainable floating-point parameters are averaged; buffers (the site AF prior) are the
model's own. The average is kept in float32 whatever the parameters' dtype.

Under FSDP (``trainer.strategy=fsdp``) each rank keeps the average of its own shards only:
:meth:`WeightAverage.shard_like` lays the average out as the sharded parameters (DTensors,
whose element-wise updates and copies stay local), checkpoints gather it into whole tensors
(a collective: every rank saves) and a resumed run re-shards them, so the average costs
each rank 1/N of the model, and the checkpoint, resume and export are those of DDP.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor, distribute_tensor

from snpbag.errors import CheckpointError, ConfigError

#: checkpoint key of the averaged weights
CHECKPOINT_KEY = "snpbag_ema"


def ema_factor(decay: float, updates: int) -> float:
    """Weight of the old average at update number ``updates`` (1-based): 0 at the first
    update, tending to ``decay`` (bias-corrected EMA, module doc)."""
    return decay * (1.0 - decay ** (updates - 1)) / (1.0 - decay**updates)


class WeightAverage:
    """EMA of ``module``'s trainable floating-point parameters (module doc)."""

    def __init__(self, module: nn.Module, *, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"optim.ema_decay={decay}: must be in (0, 1), or 0 to turn the average off")
        self.decay = float(decay)
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().float().clone() for name, p in self._params(module)
        }

    @staticmethod
    def _params(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
        for m in module.modules():
            if isinstance(m, FSDPModule):
                # FSDP2 leaves the root's parameters gathered after a forward pass; the
                # average pairs with the shards (a no-op where they are sharded already)
                m.reshard()
        for name, p in module.named_parameters():
            if p.requires_grad and p.is_floating_point():
                yield name, p

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = ema_factor(self.decay, self.updates)
        names, params = zip(*self._params(module))
        shadow = [self.shadow[n] for n in names]
        if shadow[0].device != params[0].device:
            self.to(params[0].device)
            shadow = [self.shadow[n] for n in names]
        torch._foreach_lerp_(shadow, [p.detach().float() for p in params], 1.0 - d)

    def shard_like(self, module: nn.Module) -> None:
        """Lay the average out as ``module``'s parameters after FSDP sharded them: each rank
        keeps the slice of its own shards (module doc); unsharded parameters stay whole."""
        for name, p in self._params(module):
            if isinstance(p, DTensor) and not isinstance(self.shadow[name], DTensor):
                whole = self.shadow[name].to(p.device)
                # every rank holds the whole tensor: cut out its own slice, no communication
                self.shadow[name] = distribute_tensor(whole, p.device_mesh, p.placements, src_data_rank=None)

    def to(self, device: torch.device | str) -> WeightAverage:
        self.shadow = {k: v.to(device) for k, v in self.shadow.items()}
        return self

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Overwrite ``module``'s averaged parameters with the average."""
        for name, p in self._params(module):
            p.copy_(self.shadow[name].to(p.dtype))

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """``module`` holds the average inside the block and its own weights again after."""
        with torch.no_grad():
            saved = {name: p.detach().clone() for name, p in self._params(module)}
        self.copy_to(module)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self._params(module):
                    p.copy_(saved[name])

    def state_dict(self) -> dict[str, Any]:
        """Whole tensors on the CPU; sharded averages are gathered (call it on every rank)."""
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {k: whole_tensor(v).detach().cpu().clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise CheckpointError(f"averaged weights in the checkpoint do not match the model ({sorted(missing)[:3]})")
        shadow = {}
        for k, v in state["shadow"].items():
            now = self.shadow[k]
            v = v.float().to(now.device)
            shadow[k] = (distribute_tensor(v, now.device_mesh, now.placements, src_data_rank=None)
                         if isinstance(now, DTensor) else v.clone())
        self.shadow = shadow
        self.updates = int(state["updates"])


def whole_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself, or the whole tensor of a sharded (DTensor) one: a collective, on every rank."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def apply_checkpoint_average(model: nn.Module, checkpoint: dict[str, Any], *, prefix: str = "model.") -> bool:
    """Load the averaged weights of a training checkpoint (if it has them) into ``model``;
    names in the checkpoint carry the LightningModule's ``prefix``. True if applied."""
    state = checkpoint.get(CHECKPOINT_KEY)
    if not state:
        return False
    shadow = {k[len(prefix):]: v for k, v in state["shadow"].items() if k.startswith(prefix)}
    params = dict(WeightAverage._params(model))
    if set(shadow) != set(params):
        diff = sorted(set(shadow) ^ set(params))[:3]
        raise CheckpointError(f"averaged weights in the checkpoint do not match the model ({diff})")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(shadow[name].to(p.dtype))
    return True
