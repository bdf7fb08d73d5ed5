"""Masked-genotype accuracy, overall / per MAF bin / per true genotype, next to what a
per-site allele-frequency guess achieves on the same positions.

The baseline answers "what does the model add": at every hidden site it predicts the most
likely genotype under Hardy-Weinberg equilibrium given the site's ALT frequency p,
argmax((1-p)^2, 2p(1-p), p^2) — hom-ref for p < 1/3, het up to 2/3, hom-alt above. That is
the best guess a model that ignores linkage disequilibrium can make.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from snpbag.data.tokens import IGNORE_INDEX
from snpbag.eval import MAF_BINS
from snpbag.eval import metrics as eval_metrics

GENOTYPE_NAMES = ("hom_ref", "het", "hom_alt")


def maf_bin_labels(edges: tuple[float, ...] = MAF_BINS) -> list[str]:
    """Metric-name suffixes of the bins of :func:`maf_bin_index`: ``0.01-0.02``, ...,
    ``0.2-0.5`` and, last, ``<0.01`` for sites below the first edge."""
    return [f"{a:g}-{b:g}" for a, b in zip(edges[:-1], edges[1:])] + [f"<{edges[0]:g}"]


def maf_bin_index(af: np.ndarray | torch.Tensor, edges: tuple[float, ...] = MAF_BINS) -> torch.Tensor:
    """Bin of each site's MAF min(p, 1 - p), as snpbag.eval.metrics.maf_bin_index (so
    training logs and evaluation tables agree), with sites below the first edge in an
    extra last bin."""
    af = np.asarray(af, dtype=np.float64)
    idx = eval_metrics.maf_bin_index(np.minimum(af, 1 - af), edges)
    idx[idx < 0] = len(edges) - 1
    return torch.as_tensor(idx, dtype=torch.long)


def hwe_guess(af: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Most likely genotype (0/1/2) per site under HWE given ALT frequency ``af``
    (snpbag.eval.metrics.af_baseline)."""
    called, _ = eval_metrics.af_baseline(np.nan_to_num(np.asarray(af, dtype=np.float64)))
    return torch.as_tensor(called, dtype=torch.long)


class GenotypeAccuracy(Metric):
    """Accumulates correct/total counts for the model and the AF baseline.

    Counts are summed over steps and, under DDP, over ranks (torchmetrics syncs them in
    ``compute``), so the numbers are exact over the whole validation set rather than an
    average of per-batch accuracies.
    """

    full_state_update = False

    def __init__(self, site_af: np.ndarray | torch.Tensor) -> None:
        super().__init__()
        self.labels = maf_bin_labels()
        n_bins = len(self.labels)
        # per-site lookups (narrow dtypes: ~14 bytes per site, 84 MB at 6 M sites); buffers
        # so they follow the module to its device
        self.register_buffer("site_bin", maf_bin_index(site_af).to(torch.int8), persistent=False)
        self.register_buffer("site_guess", hwe_guess(site_af).to(torch.int8), persistent=False)
        # -log P(genotype) under HWE at the site's AF: the baseline's cross-entropy, to set
        # beside the model's loss (AF clipped away from 0/1 so the log stays finite)
        p = np.clip(np.nan_to_num(np.asarray(site_af, dtype=np.float64)), 1e-4, 1 - 1e-4)
        nll = -np.log(eval_metrics.hwe_genotype_probs(p))
        self.register_buffer("site_nll", torch.as_tensor(nll, dtype=torch.float32), persistent=False)
        self.add_state("base_nll", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        for who in ("model", "base"):
            self.add_state(f"{who}_bin_correct", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")
            self.add_state(f"{who}_cls_correct", torch.zeros(3, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("bin_total", torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("cls_total", torch.zeros(3, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor, site_index: torch.Tensor) -> None:  # type: ignore[override]
        scored = target != IGNORE_INDEX  # (B, L)
        y = target[scored]  # (N,)
        sites = site_index[scored]
        pred = logits[scored].argmax(dim=-1)
        base = self.site_guess[sites].long()
        bins = self.site_bin[sites].long()
        n_bins = self.bin_total.numel()
        self.bin_total += torch.bincount(bins, minlength=n_bins)
        self.base_nll += self.site_nll[sites, y].double().sum()
        self.cls_total += torch.bincount(y, minlength=3)[:3]
        for who, guess in (("model", pred), ("base", base)):
            ok = guess == y
            getattr(self, f"{who}_bin_correct").add_(torch.bincount(bins[ok], minlength=n_bins))
            getattr(self, f"{who}_cls_correct").add_(torch.bincount(y[ok], minlength=3)[:3])

    def compute(self) -> dict[str, torch.Tensor]:
        """``acc``, ``base_acc``, ``acc_gain``, ``base_loss`` (the baseline's cross-entropy,
        comparable with val/loss) and per-bin/per-class accuracies; bins and
        classes with no scored position are left out rather than reported as NaN."""
        out: dict[str, torch.Tensor] = {}
        total = self.bin_total.sum()
        if total == 0:
            return out
        for who, prefix in (("model", "acc"), ("base", "base_acc")):
            bin_ok = getattr(self, f"{who}_bin_correct")
            cls_ok = getattr(self, f"{who}_cls_correct")
            out[prefix] = bin_ok.sum().double() / total
            for i, label in enumerate(self.labels):
                if self.bin_total[i] > 0:
                    out[f"{prefix}_maf_{label}"] = bin_ok[i].double() / self.bin_total[i]
            for c, name in enumerate(GENOTYPE_NAMES):
                if self.cls_total[c] > 0:
                    out[f"{prefix}_{name}"] = cls_ok[c].double() / self.cls_total[c]
        out["acc_gain"] = out["acc"] - out["base_acc"]
        out["base_loss"] = self.base_nll / total
        out["n_scored"] = total.double()
        return {k: v.float() for k, v in out.items()}


def step_accuracy(logits: torch.Tensor, target: torch.Tensor, site_guess: torch.Tensor,
                  site_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(model, baseline) masked accuracy of one batch, for the per-step training log.
    Masks instead of boolean indexing: no host-device sync on a GPU (NaN without targets)."""
    scored = target != IGNORE_INDEX  # (B, L)
    n = scored.sum()
    model = ((logits.argmax(dim=-1) == target) & scored).sum() / n
    base = ((site_guess[site_index] == target) & scored).sum() / n
    return model.float(), base.float()
