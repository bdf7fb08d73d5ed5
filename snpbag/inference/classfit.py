"""Fitting the population classifier of ``snpbag classify`` (snpbag.model.popclass) on
labelled samples: the linear kind with its L2 penalty chosen by an inner cross-validation and a
temperature on that cross-validation's out-of-fold logits, on the standardised embedding or,
through their Gram matrix, on decoded features (snpbag.inference.decoded); the mlp kind by
minibatch training with a held-out fifth for its temperature. No file I/O (snpbag.inference.classify
reads the inputs and writes the classifier directory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from snpbag.errors import ConfigError
from snpbag.eval import classify as metrics
from snpbag.inference import decoded
from snpbag.inference.embedout import Embeddings


@dataclass
class Fit:
    """The classifier's training loop (values: configs/classify/default.yaml)."""

    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(f"classifier fit epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}, "
                              f"weight_decay={self.weight_decay}: need epochs, batch_size >= 1, lr > 0, "
                              "weight_decay >= 0")



def _split_calibration(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, calibration rows): a stratified fifth of each class (at least one sample of
    classes with two or more) held out to fit the temperature."""
    rng = np.random.default_rng([seed, 1])
    calib = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        calib.extend(idx[: (idx.size // 5 or (1 if idx.size > 1 else 0))])
    calib = np.sort(np.asarray(calib, np.int64))
    return np.setdiff1d(np.arange(y.size), calib), calib


#: L2 penalties the linear classifier chooses from, by an inner cross-validation on its own
#: training samples (the outer test fold never takes part); a decade apart from weak to strong.
L2_GRID = (0.1, 1.0, 10.0, 100.0, 1000.0)
INNER_FOLDS = 5


def standardised_views(x):
    """views(train, test) -> (x[train], x[test]) standardised by the train rows' mean and SD."""

    def views(train: np.ndarray, test: np.ndarray):
        mean, scale = x[train].mean(0), x[train].std(0, unbiased=False) + 1e-6
        return (x[train] - mean) / scale, (x[test] - mean) / scale

    return views


def gram_views(gram):
    """views(train, test) -> (train, test) features of samples known by their Gram matrix
    (float64 (N, N)), on which a linear model equals the linear model on the vectors behind it
    (snpbag.model.popclass.kernel_features)."""
    import torch

    from snpbag.model.popclass import kernel_features

    def views(train: np.ndarray, test: np.ndarray):
        train_t = torch.as_tensor(train)
        f, _ = kernel_features(gram, train_t, torch.cat([train_t, torch.as_tensor(test, dtype=train_t.dtype)]))
        return f[: train.size].float(), f[train.size:].float()

    return views


def choose_l2(views, y, n_classes: int, *, seed: int, grid=L2_GRID):
    """(penalty, out-of-fold logits (N, n_classes) at that penalty): the L2 penalty of ``grid``
    whose linear classifier scores the best macro F1 in a stratified inner cross-validation of
    the N samples of ``y`` (ties: the stronger penalty). ``views(train, test)`` gives the
    standardised features of those rows (:func:`standardised_views`, :func:`gram_views`)."""
    import torch

    from snpbag.model.popclass import PopClassConfig, PopClassifier, fit_linear

    present = np.bincount(y.numpy(), minlength=n_classes)
    folds = max(2, min(INNER_FOLDS, int(present[present > 0].min())))
    fold_of = metrics.stratified_group_folds(y.numpy(), np.arange(y.numel()), folds=folds, repeats=1, seed=seed)[0]
    logits = {l2: torch.zeros(y.numel(), n_classes) for l2 in grid}
    for f in range(folds):
        train, test = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
        xtr, xte = views(train, test)
        for l2 in grid:
            model = PopClassifier(PopClassConfig(kind="linear", n_inputs=xtr.shape[1], n_classes=n_classes))
            fit_linear(model, xtr, y[train], l2=l2)
            with torch.no_grad():
                logits[l2][test] = model(xte)[0]
    best = (-1.0, grid[0])
    for l2 in grid:
        score = metrics.macro_f1(y.numpy(), logits[l2].argmax(1).numpy(), n_classes)
        if score >= best[0]:
            best = (score, l2)
    return best[1], logits[best[1]]


def fit_views(views, y: np.ndarray, train: np.ndarray, test: np.ndarray, n_classes: int, *, seed: int,
              grid=L2_GRID):
    """(linear PopClassifier on the view's features, test features): fitted on the ``train``
    rows with the penalty chosen by :func:`choose_l2` among them and the temperature fitted on
    that inner cross-validation's out-of-fold logits; the model's own standardisation is the
    identity (the views standardise)."""
    import torch

    from snpbag.model.popclass import PopClassConfig, PopClassifier, fit_linear, fit_temperature

    yt = torch.as_tensor(y[train])
    l2, oof = choose_l2(lambda a, b: views(train[a], train[b]), yt, n_classes, seed=seed, grid=grid)
    xtr, xte = views(train, test)
    model = PopClassifier(PopClassConfig(kind="linear", n_inputs=xtr.shape[1], n_classes=n_classes))
    fit_linear(model, xtr, yt, l2=l2)
    model.eval()
    model.temperature.fill_(fit_temperature(oof, yt))
    model.l2 = l2
    return model, xte


def fit_decoded(emb: Embeddings, rows: np.ndarray, y: np.ndarray, decoder, gram: np.ndarray, n_classes: int, *,
                options: dict[str, Any] | None = None, seed: int = 0):
    """The linear classifier on the decoded features of ``rows`` (Gram matrix ``gram``), as a
    PopClassifier that reads decoded dosages: the model fitted on the Gram matrix's features
    (:func:`fit_views`), its weights turned into one per class and site by a second pass over
    the embeddings, its standardisation the decoder's (2p, sqrt(2p(1 - p)))."""
    import torch

    from snpbag.model.popclass import PopClassConfig, PopClassifier, kernel_features

    every = np.arange(y.size)
    gram_t = torch.as_tensor(gram, dtype=torch.float64)
    small, _ = fit_views(gram_views(gram_t), y, every, every[:0], n_classes, seed=seed)
    _, basis = kernel_features(gram_t, torch.as_tensor(every), torch.as_tensor(every))
    coef = (small.linear.weight.detach().double() @ basis.T).numpy()  # (C, N) on the centred z
    weights, offset = decoded.site_weights(emb, rows, decoder, coef)
    model = PopClassifier(PopClassConfig(n_inputs=decoder.n_sites, n_classes=n_classes, **(options or {})))
    centre, spread = decoder.standardisation()
    with torch.no_grad():
        model.mean.copy_(torch.as_tensor(centre))
        model.scale.copy_(torch.as_tensor(spread))
        model.linear.weight.copy_(torch.as_tensor(weights))
        model.linear.bias.copy_(small.linear.bias.double() - torch.as_tensor(offset))
        model.temperature.copy_(small.temperature)
    model.l2 = small.l2
    return model.eval()


def fit_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, *, options: dict[str, Any] | None = None,
                   fit: Fit | None = None):
    """A calibrated PopClassifier trained on (x, y).

    ``mlp``: trained on four fifths, its temperature fitted on the held-out fifth. ``linear``:
    its L2 penalty chosen by an inner cross-validation (recorded as ``model.l2``), then fitted on
    every sample, its temperature fitted on the inner cross-validation's out-of-fold logits.
    """
    import torch

    from snpbag.model.popclass import PopClassConfig, PopClassifier, fit_linear, fit_temperature

    fit = fit or Fit()
    torch.manual_seed(fit.seed)
    cfg = PopClassConfig(n_inputs=x.shape[1], n_classes=n_classes, **(options or {}))
    model = PopClassifier(cfg)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y)
    if cfg.kind == "linear":
        model.mean.copy_(xt.mean(0))
        model.scale.copy_(xt.std(0, unbiased=False) + 1e-6)
        model.l2, calib_logits = choose_l2(standardised_views(xt), yt, n_classes, seed=fit.seed)
        fit_linear(model, xt, yt, l2=model.l2)
        model.eval()
        model.temperature.fill_(fit_temperature(calib_logits, yt))
        return model
    tr, cal = _split_calibration(y, fit.seed)
    model.mean.copy_(xt[tr].mean(0))
    model.scale.copy_(xt[tr].std(0, unbiased=False) + 1e-6)
    _fit_mlp(model, xt, yt, tr, fit)
    model.eval()
    if cal.size:
        with torch.no_grad():
            logits, _ = model(xt[cal])
        model.temperature.fill_(fit_temperature(logits, yt[cal]))
    return model


def _fit_mlp(model, xt, yt, tr: np.ndarray, fit: Fit) -> None:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    gen = torch.Generator().manual_seed(fit.seed)
    model.train()
    for _ in range(fit.epochs):
        perm = torch.as_tensor(tr)[torch.randperm(tr.size, generator=gen)]
        for k in range(0, perm.numel(), fit.batch_size):
            b = perm[k:k + fit.batch_size]
            opt.zero_grad()
            model.loss(xt[b], yt[b]).backward()
            opt.step()


def predict_proba(model, x: np.ndarray) -> np.ndarray:
    import torch

    return model.probabilities(torch.as_tensor(x, dtype=torch.float32)).numpy()
