"""``snpbag classify train`` and ``snpbag classify predict``: population labels from genome
embeddings (``snpbag embed`` output).

``train`` first cross-validates (repeated stratified k-fold; a sample's relatives, from a
kinship file, and its duplicates stay on its side of every split), reporting macro and
per-class F1 and the confusion matrix of the embedding classifier and, when the genotypes
are given, of the baselines on the same folds (20 principal components + logistic
regression, kNN on the components); then it fits the classifier on all labelled samples,
calibrates it with a temperature fitted on a held-out fifth, and writes the classifier
directory::

    classifier.safetensors   weights, standardisation and temperature
    classifier.json          config, classes, threshold, the embeddings' model identity
    cv.json                  the cross-validation report

``predict`` writes one row per sample: its most probable class, the calibrated probability of
every class, and ``assigned`` or ``unassigned`` (top probability below the threshold).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from snpbag import modeldir
from snpbag.config import config_dir
from snpbag.errors import ConfigError, InputError
from snpbag.eval import classify as metrics
from snpbag.eval import plots as figures
from snpbag.eval.baselines import LogisticRegression, knn_predict, pca
from snpbag.fileio import atomic_output
from snpbag.inference.embedout import Embeddings, read_embeddings

log = logging.getLogger(__name__)

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"
CV_FILE = "cv.json"
PROJECTION_PNG = "projection.png"  # written into --plots DIR
CONFUSION_PNG = "confusion.png"
FORMAT = "snpbag-classifier"
VERSION = 1


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


CONFIG_GROUP, DEFAULT_CONFIG = "classify", "default.yaml"  # configs/classify/default.yaml


def read_config(path: str | Path | None = None) -> tuple[dict[str, Any], Fit]:
    """(classifier options, Fit) from a classify config file (default: the shipped
    configs/classify/default.yaml): sections ``classifier`` (PopClassConfig fields) and
    ``fit`` (Fit fields but the seed), each key checked.

    Raises
    ------
    ConfigError : no such file, an unknown section or key, a value of the wrong type or range.
    """
    import yaml

    from snpbag.model.popclass import PopClassConfig

    if path is None:
        try:
            p = config_dir() / CONFIG_GROUP / DEFAULT_CONFIG
        except ConfigError:  # an install without configs/: the code defaults, equal to the shipped file (tested)
            log.info("no snpbag configs found; classifier hyper-parameters: the built-in defaults")
            return {}, Fit()
    else:
        p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {p}: no such file; start from configs/{CONFIG_GROUP}/{DEFAULT_CONFIG}")
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {p}: not YAML ({str(e).splitlines()[0]})") from None
    known = {"classifier": {f.name: f.type for f in fields(PopClassConfig) if f.name not in ("n_inputs", "n_classes")},
             "fit": {f.name: f.type for f in fields(Fit) if f.name != "seed"}}
    if not isinstance(values, dict) or set(values) - set(known):
        raise ConfigError(f"--config {p}: sections {', '.join(known)} only (found {', '.join(map(str, values))})")
    sections = {}
    for name, types in known.items():
        section = values.get(name) or {}
        for key, value in section.items():
            if key not in types:
                raise ConfigError(f"--config {p}: {name}.{key} is not a setting; known: {', '.join(types)}")
            if types[key] == "str":
                if not isinstance(value, str):
                    raise ConfigError(f"--config {p}: {name}.{key}={value!r}: expected a word")
                continue
            want = float if types[key] == "float" else int
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (want is int and value != int(value)):
                raise ConfigError(f"--config {p}: {name}.{key}={value!r}: expected a number ({types[key]})")
        cast = {"float": float, "int": int, "str": str}
        sections[name] = {k: cast[types[k]](v) for k, v in section.items()}
    try:
        PopClassConfig(n_inputs=1, n_classes=2, **sections["classifier"])
        fit = Fit(**sections["fit"])
    except ConfigError as e:
        raise ConfigError(f"--config {p}: {e}") from None
    return sections["classifier"], fit


# --- inputs -----------------------------------------------------------------------------------


def read_labels(path: str | Path, *, column: str | None = None) -> tuple[dict[str, str], str]:
    """``{sample: label}`` from a TSV with a header (first column the sample id) and the
    name of the label column used (default: the second)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such labels file; give a TSV with a header: sample<TAB>label")
    rows = [ln.rstrip("\r\n").split("\t") for ln in p.read_text().splitlines() if ln.strip()]
    if len(rows) < 2 or len(rows[0]) < 2:
        raise InputError(f"{p}: needs a header and at least one row of sample<TAB>label")
    header = rows[0]
    col = column or header[1]
    if col not in header[1:]:
        raise InputError(f"{p}: no column {col!r} (columns: {', '.join(header[1:])}); check --label-column")
    j = header.index(col)
    out: dict[str, str] = {}
    for k, r in enumerate(rows[1:], start=2):
        if len(r) <= j or not r[j]:
            raise InputError(f"{p}: line {k} has no {col!r} value")
        if r[0] in out:
            raise InputError(f"{p}: sample {r[0]} listed twice; list each sample once")
        out[r[0]] = r[j]
    return out, col


def read_kinship_pairs(path: str | Path, samples: list[str], *, threshold: float) -> list[tuple[int, int]]:
    """Index pairs of ``samples`` whose KINSHIP in a .kin0 file (snpbag king or plink2
    --make-king-table) is at least ``threshold``."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such kinship file; write one with `snpbag king`")
    lines = p.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t") if lines else []
    if not {"IID1", "IID2", "KINSHIP"} <= set(header):
        raise InputError(f"{p}: not a .kin0 table (needs IID1, IID2 and KINSHIP columns); write one with `snpbag king`")
    i1, i2, ik = header.index("IID1"), header.index("IID2"), header.index("KINSHIP")
    index = {s: i for i, s in enumerate(samples)}
    pairs = []
    for ln in lines[1:]:
        f = ln.split("\t")
        if f[i1] in index and f[i2] in index and float(f[ik]) >= threshold:
            pairs.append((index[f[i1]], index[f[i2]]))
    return pairs


def labelled(emb: Embeddings, labels: dict[str, str], *, path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(rows of the embeddings, class index per row, sorted classes) of the labelled samples."""
    index = {s: i for i, s in enumerate(emb.samples)}
    unknown = [s for s in labels if s not in index]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} labelled samples are not in {emb.path} "
                         f"({', '.join(unknown[:5])}); remove them from the labels or embed them")
    rows = np.array(sorted(index[s] for s in labels), dtype=np.int64)
    classes = sorted(set(labels.values()))
    cls = {c: k for k, c in enumerate(classes)}
    y = np.array([cls[labels[emb.samples[r]]] for r in rows], dtype=np.int64)
    return rows, y, classes


# --- the classifier -----------------------------------------------------------------------------


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


def choose_l2(x, y, n_classes: int, *, seed: int, grid=L2_GRID):
    """(penalty, out-of-fold logits (N, n_classes) at that penalty): the L2 penalty of ``grid``
    whose linear classifier scores the best macro F1 in a stratified inner cross-validation of
    the tensors (x, y) (ties: the stronger penalty)."""
    import torch

    from snpbag.model.popclass import PopClassConfig, PopClassifier, fit_linear

    present = np.bincount(y.numpy(), minlength=n_classes)
    folds = max(2, min(INNER_FOLDS, int(present[present > 0].min())))
    fold_of = torch.as_tensor(metrics.stratified_group_folds(y.numpy(), np.arange(y.numel()), folds=folds, repeats=1,
                                                             seed=seed)[0])
    best = (-1.0, grid[0], None)
    for l2 in grid:
        logits = torch.zeros(y.numel(), n_classes)
        for f in range(folds):
            test = fold_of == f
            model = PopClassifier(PopClassConfig(kind="linear", n_inputs=x.shape[1], n_classes=n_classes))
            model.mean.copy_(x[~test].mean(0))
            model.scale.copy_(x[~test].std(0, unbiased=False) + 1e-6)
            fit_linear(model, x[~test], y[~test], l2=l2)
            with torch.no_grad():
                logits[test] = model(x[test])[0]
        score = metrics.macro_f1(y.numpy(), logits.argmax(1).numpy(), n_classes)
        if score >= best[0]:
            best = (score, l2, logits)
    return best[1], best[2]


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
        model.l2, calib_logits = choose_l2(xt, yt, n_classes, seed=fit.seed)
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


# --- cross-validation ---------------------------------------------------------------------------


def _report(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    k = len(classes)
    return {"macro_f1": metrics.macro_f1(y, pred, k),
            "f1": dict(zip(classes, metrics.f1_per_class(y, pred, k).tolist())),
            "confusion": metrics.confusion_matrix(y, pred, k).tolist()}


def cross_validate(x: np.ndarray, y: np.ndarray, classes: list[str], *, groups: np.ndarray, folds: int, repeats: int,
                   threshold: float, pcs: np.ndarray | None = None, options=None, fit: Fit | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Out-of-fold predictions of each method on the same folds, scored per repeat.

    Returns ``{method: {"macro_f1": [per repeat], "mean_macro_f1", "f1" (mean per class),
    "confusion" (summed over repeats)}}`` for ``embedding`` and, with ``pcs``, ``pca_lr`` and
    ``pca_knn``. Every method is scored on its most probable class, so the methods compare
    like for like; the embedding classifier also reports ``unassigned_fraction``, the share of
    calls whose calibrated top probability is below ``threshold``.
    """
    fit = fit or Fit(seed=seed)
    methods = ["embedding"] + (["pca_lr", "pca_knn"] if pcs is not None else [])
    per: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    unassigned = 0
    assignments = metrics.stratified_group_folds(y, groups, folds=folds, repeats=repeats, seed=seed)
    for r, fold_of in enumerate(assignments):
        preds = {m: np.full(y.size, -1, np.int64) for m in methods}
        for f in range(folds):
            test, train = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
            if test.size == 0:
                continue
            model = fit_classifier(x[train], y[train], len(classes), options=options,
                                   fit=Fit(**{**fit.__dict__, "seed": fit.seed + 1000 * r + f}))
            p = predict_proba(model, x[test])
            preds["embedding"][test] = p.argmax(1)
            unassigned += int((p.max(1) < threshold).sum())
            if pcs is not None:
                preds["pca_lr"][test] = LogisticRegression().fit(pcs[train], y[train], len(classes)).predict(pcs[test])
                preds["pca_knn"][test] = knn_predict(pcs[train], y[train], pcs[test], k=5)
        for m in methods:
            per[m].append(_report(y, preds[m], classes))
    out = {}
    for m, reps in per.items():
        f1s = [rep["macro_f1"] for rep in reps]
        out[m] = {"macro_f1": f1s, "mean_macro_f1": float(np.mean(f1s)), "sd_macro_f1": float(np.std(f1s)),
                  "f1": {c: float(np.mean([rep["f1"][c] for rep in reps])) for c in classes},
                  "confusion": np.sum([rep["confusion"] for rep in reps], axis=0).tolist()}
    out["embedding"]["unassigned_fraction"] = unassigned / (y.size * len(assignments))
    return out


def genotype_pcs(store: str | Path, samples: list[str], n_components: int = 20) -> np.ndarray:
    """Top principal components (plink2 --pca) of the store's genotypes of ``samples``."""
    from snpbag.store.genotypes import open_store

    st = open_store(str(store))
    rows = st.sample_index(samples)
    dosage = np.concatenate([st.read_dosage(c, rows) for c in range(st.n_tiles)], axis=1)
    vecs, _ = pca(dosage, n_components)
    return vecs


# --- the commands -----------------------------------------------------------------------------


@dataclass
class TrainSummary:
    out: Path
    classes: list[str]
    n_samples: int
    cv: dict[str, Any]

    def table(self) -> str:
        lines = [f"{self.n_samples} labelled genomes, {len(self.classes)} classes; cross-validated macro F1:"]
        for m, r in self.cv.items():
            extra = f" ({100 * r['unassigned_fraction']:.0f}% below the threshold)" if "unassigned_fraction" in r else ""
            lines.append(f"  {m:<10} {r['mean_macro_f1']:.3f} ± {r['sd_macro_f1']:.3f}{extra}  "
                         + "  ".join(f"{c} {v:.2f}" for c, v in r["f1"].items()))
        return "\n".join(lines)


def train(*, embeddings: str | Path, labels: str | Path, out: str | Path, label_column: str | None = None,
          kinship: str | Path | None = None, relative_kinship: float = metrics.RELATIVE_KINSHIP,
          genotypes: str | Path | None = None, folds: int = 5, repeats: int = 3, threshold: float = 0.5,
          options: dict[str, Any] | None = None, fit: Fit | None = None, seed: int = 0,
          plots: str | Path | None = None, config: str | Path | None = None) -> TrainSummary:
    """Cross-validate, then fit and write a classifier directory (see the module docstring).

    The hyper-parameters come from ``config`` (a classify config file; default the shipped
    configs/classify/default.yaml); ``options`` (classifier) and ``fit`` replace its sections.

    With ``plots``, also write into that directory ``projection.png`` (the labelled embeddings
    in 2-D, one colour per label) and ``confusion.png`` (the cross-validation's confusion
    matrices of every method, side by side).

    Raises
    ------
    InputError : unknown samples in the labels, one class only, a class with fewer members
        than folds, bad options, an existing ``out``.
    ConfigError : a bad config file.
    """
    file_options, file_fit = read_config(config)
    options = file_options if options is None else options
    fit = fit if fit is not None else replace(file_fit, seed=seed)
    if folds < 2 or repeats < 1:
        raise InputError(f"--folds {folds} --repeats {repeats}: need at least 2 folds and 1 repeat")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold {threshold}: a probability in [0, 1]")
    if Path(out).exists():
        raise InputError(f"{out}: output already exists; remove it or choose another --out")
    plot_dir = _plot_dir(plots)
    emb = read_embeddings(embeddings)
    table, column = read_labels(labels, column=label_column)
    rows, y, classes = labelled(emb, table, path=labels)
    metrics.check_labels(y, classes, folds=folds, what=f"{labels} ({column})")
    x = emb.matrix(rows)
    samples = [emb.samples[r] for r in rows]
    pairs = metrics.duplicate_pairs(x)
    if kinship is not None:
        pairs += read_kinship_pairs(kinship, samples, threshold=relative_kinship)
    groups = metrics.groups_of(len(samples), pairs)
    pcs = genotype_pcs(genotypes, samples) if genotypes is not None else None
    cv = cross_validate(x, y, classes, groups=groups, folds=folds, repeats=repeats, threshold=threshold, pcs=pcs,
                        options=options, fit=fit, seed=seed)
    model = fit_classifier(x, y, len(classes), options=options, fit=fit)
    fitted = dict(fit.__dict__, **({"l2": model.l2} if model.cfg.kind == "linear" else {}))
    meta = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "fit": fitted,
            "classes": classes,
            "label_column": column, "threshold": threshold, "embeddings": {"model": emb.identity,
                                                                          "shape": list(emb.shape[1:])}}
    report = {"folds": folds, "repeats": repeats, "relatives_grouped": len(pairs), "classes": classes,
              "n_samples": len(samples), "methods": cv}
    modeldir.write_small_model(out, config_file=CONFIG_FILE, weights_file=WEIGHTS_FILE, meta=meta,
                               state_dict=model.state_dict(), extra={CV_FILE: json.dumps(report, indent=2) + "\n"})
    if plot_dir is not None:
        figures.projection_png(x, [classes[c] for c in y], plot_dir / PROJECTION_PNG,
                               what=f"genome embeddings ({column})", seed=seed)
        figures.confusion_png({f"{m} (macro F1 {r['mean_macro_f1']:.3f})": np.asarray(r["confusion"])
                               for m, r in cv.items()}, classes, plot_dir / CONFUSION_PNG)
    return TrainSummary(Path(out), classes, len(samples), cv)


def _plot_dir(plots: str | Path | None) -> Path | None:
    """The --plots directory, created when missing; InputError when it is a file."""
    if plots is None:
        return None
    d = Path(plots)
    if d.exists() and not d.is_dir():
        raise InputError(f"--plots {d}: a file, not a directory; give a directory for the PNGs")
    d.mkdir(parents=True, exist_ok=True)
    return d


def load_classifier(directory: str | Path):
    """(PopClassifier in eval mode, its classifier.json)."""
    from snpbag.model.popclass import PopClassConfig, PopClassifier

    meta, weights = modeldir.read_small_model(directory, config_file=CONFIG_FILE, weights_file=WEIGHTS_FILE,
                                              fmt=FORMAT, version=VERSION, kind="classifier",
                                              writer="snpbag classify train")
    model = PopClassifier(PopClassConfig(**meta["config"]))
    model.load_state_dict(weights)
    return model.eval(), meta


def predict(*, model: str | Path, embeddings: str | Path, output: str | Path, plots: str | Path | None = None) -> Path:
    """Write ``output`` (TSV): sample, label, prob_<class>..., call (assigned/unassigned); with
    ``plots``, also ``projection.png`` in that directory, coloured by the predicted label.

    Raises
    ------
    InputError : embeddings from another embedding model or of another shape, existing output.
    CheckpointError : not a classifier directory.
    """
    clf, meta = load_classifier(model)
    emb = read_embeddings(embeddings)
    emb.check_same_model(meta["embeddings"]["model"], what=f"the classifier {model}")
    if list(emb.shape[1:]) != meta["embeddings"]["shape"]:
        raise InputError(f"{embeddings}: embeddings of shape {list(emb.shape[1:])}, the classifier reads "
                         f"{meta['embeddings']['shape']}; embed with the same --pool and input chromosomes")
    classes, threshold = meta["classes"], float(meta["threshold"])
    plot_dir = _plot_dir(plots)
    predicted = []
    with atomic_output(output) as tmp, open(tmp, "w") as f:
        f.write("sample\tlabel\t" + "\t".join(f"prob_{c}" for c in classes) + "\tcall\n")
        for lo in range(0, len(emb.samples), 256):
            p = predict_proba(clf, emb.matrix(slice(lo, lo + 256)))
            for s, row in zip(emb.samples[lo:lo + 256], p):
                call = "assigned" if row.max() >= threshold else "unassigned"
                predicted.append(classes[int(row.argmax())] if call == "assigned" else "unassigned")
                f.write(f"{s}\t{classes[int(row.argmax())]}\t" + "\t".join(f"{v:.4f}" for v in row) + f"\t{call}\n")
    if plot_dir is not None:
        figures.projection_png(emb.matrix(), predicted, plot_dir / PROJECTION_PNG,
                               what="genome embeddings (predicted label)")
    return Path(output)
