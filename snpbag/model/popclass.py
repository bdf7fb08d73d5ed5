"""The population classifier on genome embeddings (``snpbag classify``). Two kinds:

- ``mlp``, after the SNPBag paper: a bottleneck compresses the embedding further (36 numbers
  by default), a class head reads the bottleneck, and a decoder reconstructs the
  (standardised) embedding from it so the bottleneck keeps the genome's structure rather than
  only what separates the training labels;
- ``linear``: multinomial logistic regression on the standardised embedding (its L2 penalty
  is chosen by the trainer), which separated fine-scale sub-populations better than the mlp
  on the benchmark (docs/benchmarks.md): with a few hundred labelled genomes, every extra
  layer is more to overfit.

The linear kind reads, by default, the dosages that the embedding model's own decoder reads out
of the embedding (``features: decoded``; snpbag.inference.decoded), else the embedding itself;
on decoded features it is fitted through the Gram matrix of the samples
(:func:`kernel_features`), as they number one per site.

Calibration is a single temperature on the logits (Guo et al. 2017), fitted on
held-out samples. No file I/O: snpbag.inference.classify saves and loads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from snpbag.errors import ConfigError


KINDS = ("linear", "mlp")
#: what the classifier reads: the embedding as stored, or the expected ALT dosage of every site that
#: the embedding model's own decoder reads out of it (a fixed nonlinear map; linear kind only)
FEATURES = ("embedding", "decoded")


@dataclass
class PopClassConfig:
    kind: str = "linear"  # linear: logistic regression on the standardised embedding; mlp: the paper's
    features: str = "decoded"  # the decoder's expected dosage per site (snpbag.inference.decoded); or embedding
    n_inputs: int = 0  # embedding numbers per genome (tiles x dims, flattened); set from the data
    n_classes: int = 0
    bottleneck: int = 36
    hidden: int = 256
    dropout: float = 0.2
    recon_weight: float = 0.1  # weight of the embedding reconstruction beside the class loss

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"classifier kind={self.kind!r}: choose one of {', '.join(KINDS)}")
        if self.features not in FEATURES:
            raise ConfigError(f"classifier features={self.features!r}: choose one of {', '.join(FEATURES)}")
        if self.features == "decoded" and self.kind != "linear":
            raise ConfigError(f"classifier features=decoded kind={self.kind}: decoded features (one per site) "
                              "train the linear kind only; set kind: linear or features: embedding")
        if self.bottleneck < 1 or self.hidden < 1:
            raise ConfigError(f"classifier bottleneck={self.bottleneck}, hidden={self.hidden}: must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"classifier dropout={self.dropout}: must be in [0, 1)")
        if self.recon_weight < 0:
            raise ConfigError(f"classifier recon_weight={self.recon_weight}: must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


class PopClassifier(nn.Module):
    """(B, n_inputs) embeddings -> (B, n_classes) logits, (B, n_inputs) reconstruction of the
    standardised embeddings (``mlp``; ``linear`` returns None)."""

    def __init__(self, cfg: PopClassConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mean", torch.zeros(cfg.n_inputs))
        self.register_buffer("scale", torch.ones(cfg.n_inputs))
        self.register_buffer("temperature", torch.ones(()))
        if cfg.kind == "linear":
            self.linear = nn.Linear(cfg.n_inputs, cfg.n_classes)
            return
        self.encode = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(cfg.n_inputs, cfg.hidden), nn.GELU(),
                                    nn.Linear(cfg.hidden, cfg.bottleneck))
        self.classify = nn.Sequential(nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.bottleneck, cfg.n_classes))
        self.decode = nn.Sequential(nn.Linear(cfg.bottleneck, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, cfg.n_inputs))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z = (x - self.mean) / self.scale  # (B, n_inputs)
        if self.cfg.kind == "linear":
            return self.linear(z), None  # (B, n_classes)
        b = self.encode(z)  # (B, bottleneck)
        return self.classify(b), self.decode(b)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mlp's training loss (the linear kind is fitted by :func:`fit_linear`)."""
        logits, recon = self(x)
        target = (x - self.mean) / self.scale
        return F.cross_entropy(logits, y) + self.cfg.recon_weight * F.mse_loss(recon, target)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities (B, n_classes)."""
        logits, _ = self(x)
        return torch.softmax(logits / self.temperature, dim=-1)


def fit_linear(model: PopClassifier, x: torch.Tensor, y: torch.Tensor, *, l2: float, max_iter: int = 500) -> None:
    """Fit a ``linear`` classifier in place: the minimum of the summed cross-entropy plus
    ``l2 / 2 * |W|²`` (not on the intercepts), a strictly convex problem, by L-BFGS on the whole
    batch; ``x`` is standardised by the model's own mean and scale."""
    w, b = model.linear.weight, model.linear.bias
    with torch.no_grad():
        w.zero_()
        b.zero_()
    z = ((x - model.mean) / model.scale).double()  # (N, n_inputs)
    w64 = w.detach().double().requires_grad_(True)
    b64 = b.detach().double().requires_grad_(True)
    opt = torch.optim.LBFGS([w64, b64], max_iter=max_iter, tolerance_grad=1e-7, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w64.T + b64, y, reduction="sum") + 0.5 * l2 * (w64 ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        w.copy_(w64)
        b.copy_(b64)


def fit_temperature(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T):
    a golden-section search on log T in [1/20, 20] (the NLL is unimodal in T)."""
    logits = logits.double()

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(logits / float(torch.exp(torch.tensor(log_t))), y))

    lo, hi = -3.0, 3.0
    g = (5 ** 0.5 - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(torch.exp(torch.tensor((lo + hi) / 2)))


def kernel_features(gram: torch.Tensor, train: torch.Tensor, rows: torch.Tensor, *,
                    rtol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (len(rows), k), basis (len(train), k))`` of samples whose feature vectors z
    are known only through their Gram matrix ``gram`` = Z Zᵀ (N, N), centred on the mean of the
    ``train`` rows: features = Kc[rows, train] @ basis with Kc[train, train] = U S Uᵀ and
    basis = U S^-1/2 (eigenvalues above ``rtol`` x the largest kept), so the train rows get
    U S^1/2.

    Why: an L2-penalised linear model on these k ≤ len(train) features has the same logits and
    the same penalty as one on the centred z themselves (the optimal weights lie in the span
    of the training vectors), so a linear classifier on millions of features trains from an
    N x N matrix; its weights on z are ``a @ basisᵀ @ (Z[train] - mean)`` for weights ``a`` on
    the features. Float64 in, float64 out.
    """
    k_rt = gram[rows][:, train]  # (R, T)
    k_tt = gram[train][:, train]  # (T, T)
    col = k_tt.mean(0)  # (T,) z_j · mean
    grand = col.mean()  # mean · mean
    kc_tt = k_tt - col[:, None] - col[None, :] + grand
    kc_rt = k_rt - k_rt.mean(1, keepdim=True) - col[None, :] + grand
    s, u = torch.linalg.eigh(kc_tt)
    keep = s > rtol * s.max().clamp_min(torch.finfo(s.dtype).tiny)
    basis = u[:, keep] / s[keep].sqrt()  # (T, k)
    return kc_rt @ basis, basis
