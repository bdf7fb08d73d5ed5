"""``snpbag classify train`` and ``snpbag classify predict``: population labels from genome
embeddings (``snpbag embed`` output).

``train`` first cross-validates (repeated stratified k-fold; a sample's relatives, from a
kinship file, and its duplicates stay on its side of every split), reporting macro and
per-class F1 and the confusion matrix of the embedding classifier and, when the genotypes
are given, of the baselines on the same folds (20 principal components + logistic
regression, kNN on the components, the linear classifier on the genotypes); then it fits the
classifier on all labelled samples (fitting: snpbag.inference.classfit), calibrated by a
temperature, and writes the classifier directory::

    classifier.safetensors   weights, standardisation and temperature; with features: decoded
                             also the embedding model's decoder (snpbag.inference.decoded)
    classifier.json          config, classes, threshold, the embeddings' model identity
    cv.json                  the cross-validation report

``predict`` writes one row per sample: its most probable class, the calibrated probability of
every class, and ``assigned`` or ``unassigned`` (top probability below the threshold).
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from snpbag import modeldir
from snpbag.config import config_dir
from snpbag.errors import ConfigError, InputError
from snpbag.eval import classify as metrics
from snpbag.eval import plots as figures
from snpbag.eval.baselines import LogisticRegression, knn_predict, pca, standardised
from snpbag.fileio import atomic_output
from snpbag.inference import decoded
from snpbag.inference.classfit import Fit, fit_classifier, fit_decoded, fit_views, gram_views, predict_proba
from snpbag.inference.embedout import Embeddings, read_embeddings

log = logging.getLogger(__name__)

WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"
CV_FILE = "cv.json"
PROJECTION_PNG = "projection.png"  # written into --plots DIR
CONFUSION_PNG = "confusion.png"
FORMAT = "snpbag-classifier"
VERSION = 1


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


# --- cross-validation ---------------------------------------------------------------------------


def _report(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, Any]:
    k = len(classes)
    return {"macro_f1": metrics.macro_f1(y, pred, k),
            "f1": dict(zip(classes, metrics.f1_per_class(y, pred, k).tolist())),
            "confusion": metrics.confusion_matrix(y, pred, k).tolist()}


def cross_validate(x: np.ndarray, y: np.ndarray, classes: list[str], *, groups: np.ndarray, folds: int, repeats: int,
                   threshold: float, pcs: np.ndarray | None = None, options=None, fit: Fit | None = None,
                   seed: int = 0, gram: np.ndarray | None = None,
                   genotype_gram: np.ndarray | None = None) -> dict[str, Any]:
    """Out-of-fold predictions of each method on the same folds, scored per repeat.

    Returns ``{method: {"macro_f1": [per repeat], "mean_macro_f1", "f1" (mean per class),
    "confusion" (summed over repeats)}}`` for ``embedding`` (the classifier of ``options``; with
    ``gram``, the Gram matrix of its decoded features, it reads those instead of ``x``) and,
    with ``pcs``, ``pca_lr`` and ``pca_knn``; with ``genotype_gram`` (of the standardised
    genotypes), ``genotype_lr``, the same linear classifier on the genotypes themselves. Every
    method is scored on its most probable class, so the methods compare like for like; the
    embedding classifier also reports ``unassigned_fraction``, the share of calls whose
    calibrated top probability is below ``threshold``.
    """
    import torch

    fit = fit or Fit(seed=seed)
    methods = (["embedding"] + (["pca_lr", "pca_knn"] if pcs is not None else [])
               + (["genotype_lr"] if genotype_gram is not None else []))
    views = {m: gram_views(torch.as_tensor(g, dtype=torch.float64))
             for m, g in (("embedding", gram), ("genotype_lr", genotype_gram)) if g is not None}
    per: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    unassigned = 0
    assignments = metrics.stratified_group_folds(y, groups, folds=folds, repeats=repeats, seed=seed)
    for r, fold_of in enumerate(assignments):
        preds = {m: np.full(y.size, -1, np.int64) for m in methods}
        for f in range(folds):
            test, train = np.flatnonzero(fold_of == f), np.flatnonzero(fold_of != f)
            if test.size == 0:
                continue
            fold_fit = Fit(**{**fit.__dict__, "seed": fit.seed + 1000 * r + f})
            for m, v in views.items():
                model, xte = fit_views(v, y, train, test, len(classes), seed=fold_fit.seed)
                p = model.probabilities(xte).numpy()
                preds[m][test] = p.argmax(1)
                if m == "embedding":
                    unassigned += int((p.max(1) < threshold).sum())
            if "embedding" not in views:
                model = fit_classifier(x[train], y[train], len(classes), options=options, fit=fold_fit)
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


def genotype_baselines(store: str | Path, samples: list[str], n_components: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(top principal components (plink2 --pca), Gram matrix of the standardised genotypes) of
    the store's genotypes of ``samples``: the inputs of the PCA and raw-genotype baselines."""
    from snpbag.store.genotypes import open_store

    st = open_store(str(store))
    rows = st.sample_index(samples)
    dosage = np.concatenate([st.read_dosage(c, rows) for c in range(st.n_tiles)], axis=1)
    vecs, _ = pca(dosage, n_components)
    z = standardised(dosage)
    return vecs, z @ z.T


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
          plots: str | Path | None = None, config: str | Path | None = None,
          embedding_model: str | Path | None = None) -> TrainSummary:
    """Cross-validate, then fit and write a classifier directory (see the module docstring).

    The hyper-parameters come from ``config`` (a classify config file; default the shipped
    configs/classify/default.yaml); ``options`` (classifier) and ``fit`` replace its sections.
    ``classifier.features: decoded`` reads the decoder of ``embedding_model``, the model
    directory that wrote ``embeddings`` (checked), and copies it into the classifier directory.

    With ``plots``, also write into that directory ``projection.png`` (the labelled embeddings
    in 2-D, one colour per label) and ``confusion.png`` (the cross-validation's confusion
    matrices of every method, side by side).

    Raises
    ------
    InputError : unknown samples in the labels, one class only, a class with fewer members
        than folds, bad options, an existing ``out``, decoded features without
        ``embedding_model`` or from another model than the embeddings'.
    ConfigError : a bad config file or options.
    """
    from snpbag.model.popclass import PopClassConfig

    file_options, file_fit = read_config(config)
    options = file_options if options is None else options
    features = PopClassConfig(n_inputs=1, n_classes=2, **options).features
    fit = fit if fit is not None else replace(file_fit, seed=seed)
    if folds < 2 or repeats < 1:
        raise InputError(f"--folds {folds} --repeats {repeats}: need at least 2 folds and 1 repeat")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"--threshold {threshold}: a probability in [0, 1]")
    if Path(out).exists():
        raise InputError(f"{out}: output already exists; remove it or choose another --out")
    plot_dir = _plot_dir(plots)
    emb = read_embeddings(embeddings)
    if features == "decoded" and embedding_model is None:
        embedding_model = emb.attrs.get("model_dir")
        if not embedding_model or not Path(embedding_model).is_dir():
            raise InputError(f"{embeddings}: classifier features: decoded reads the decoder of the model that wrote "
                             f"these embeddings (recorded at {embedding_model or 'no path'}, not found here): give "
                             "--embedding-model DIR, or set features: embedding")
    decoder = decoded.Decoder.from_model(embedding_model, emb) if features == "decoded" else None
    if embedding_model is not None and decoder is None:
        emb.check_same_model(modeldir.identity(embedding_model), what=f"--embedding-model {embedding_model}")
    table, column = read_labels(labels, column=label_column)
    rows, y, classes = labelled(emb, table, path=labels)
    metrics.check_labels(y, classes, folds=folds, what=f"{labels} ({column})")
    x = emb.matrix(rows)
    samples = [emb.samples[r] for r in rows]
    pairs = metrics.duplicate_pairs(x)
    if kinship is not None:
        pairs += read_kinship_pairs(kinship, samples, threshold=relative_kinship)
    groups = metrics.groups_of(len(samples), pairs)
    pcs, genotype_gram = genotype_baselines(genotypes, samples) if genotypes is not None else (None, None)
    gram = decoded.gram(emb, rows, decoder) if decoder is not None else None
    cv = cross_validate(x, y, classes, groups=groups, folds=folds, repeats=repeats, threshold=threshold, pcs=pcs,
                        options=options, fit=fit, seed=seed, gram=gram, genotype_gram=genotype_gram)
    if decoder is None:
        model, state = fit_classifier(x, y, len(classes), options=options, fit=fit), {}
    else:
        model = fit_decoded(emb, rows, y, decoder, gram, len(classes), options=options, seed=fit.seed)
        state = decoder.tensors()
    fitted = dict(fit.__dict__, **({"l2": model.l2} if model.cfg.kind == "linear" else {}))
    meta = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "fit": fitted,
            "classes": classes,
            "label_column": column, "threshold": threshold, "embeddings": {"model": emb.identity,
                                                                          "shape": list(emb.shape[1:])},
            **({"decoder": decoder.meta()} if decoder is not None else {})}
    report = {"folds": folds, "repeats": repeats, "relatives_grouped": len(pairs), "classes": classes,
              "n_samples": len(samples), "features": features, "methods": cv}
    modeldir.write_small_model(out, config_file=CONFIG_FILE, weights_file=WEIGHTS_FILE, meta=meta,
                               state_dict={**model.state_dict(), **state},
                               extra={CV_FILE: json.dumps(report, indent=2) + "\n"})
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
    """(PopClassifier in eval mode, its classifier.json); with decoded features it reads decoded
    dosages (the weights file's decoder tensors are left out: ``predict`` streams them)."""
    from snpbag.model.popclass import PopClassConfig, PopClassifier

    meta, weights = modeldir.read_small_model(directory, config_file=CONFIG_FILE, weights_file=WEIGHTS_FILE,
                                              fmt=FORMAT, version=VERSION, kind="classifier",
                                              writer="snpbag classify train")
    model = PopClassifier(PopClassConfig(**{"features": "embedding", **meta["config"]}))  # older: no features key
    model.load_state_dict({k: v for k, v in weights.items() if not k.startswith(decoded.PREFIX)})  # the decoder's
    return model.eval(), meta


def predict(*, model: str | Path, embeddings: str | Path, output: str | Path, plots: str | Path | None = None) -> Path:
    """Write ``output`` (TSV): sample, label, prob_<class>..., call (assigned/unassigned); with
    ``plots``, also ``projection.png`` in that directory, coloured by the predicted label.

    Raises
    ------
    InputError : embeddings from another embedding model or of another shape, existing output.
    CheckpointError : not a classifier directory.
    """
    meta = modeldir.read_small_model_meta(model, config_file=CONFIG_FILE, fmt=FORMAT, version=VERSION,
                                          kind="classifier", writer="snpbag classify train")
    emb = read_embeddings(embeddings)
    emb.check_same_model(meta["embeddings"]["model"], what=f"the classifier {model}")
    if list(emb.shape[1:]) != meta["embeddings"]["shape"]:
        raise InputError(f"{embeddings}: embeddings of shape {list(emb.shape[1:])}, the classifier reads "
                         f"{meta['embeddings']['shape']}; embed with the same --pool and input chromosomes")
    classes, threshold = meta["classes"], float(meta["threshold"])
    plot_dir = _plot_dir(plots)
    predicted = []
    with _probabilities(model, meta, emb) as probabilities, atomic_output(output) as tmp, open(tmp, "w") as f:
        f.write("sample\tlabel\t" + "\t".join(f"prob_{c}" for c in classes) + "\tcall\n")
        for lo in range(0, len(emb.samples), 256):
            p = probabilities(np.arange(lo, min(lo + 256, len(emb.samples))))
            for s, row in zip(emb.samples[lo:lo + 256], p):
                call = "assigned" if row.max() >= threshold else "unassigned"
                predicted.append(classes[int(row.argmax())] if call == "assigned" else "unassigned")
                f.write(f"{s}\t{classes[int(row.argmax())]}\t" + "\t".join(f"{v:.4f}" for v in row) + f"\t{call}\n")
    if plot_dir is not None:
        figures.projection_png(emb.matrix(), predicted, plot_dir / PROJECTION_PNG,
                               what="genome embeddings (predicted label)")
    return Path(output)


@contextmanager
def _probabilities(directory: str | Path, meta: dict[str, Any], emb: Embeddings):
    """rows -> calibrated class probabilities (n, C) of those samples of ``emb``. Decoded
    features stream: the decoder's readout and the per-site weights are read from the weights
    file a block of sites at a time."""
    if meta["config"].get("features", "embedding") != "decoded":
        clf, _ = load_classifier(directory)
        yield lambda rows: predict_proba(clf, emb.matrix(rows))
        return
    import torch
    from safetensors import safe_open

    with safe_open(str(Path(directory) / WEIGHTS_FILE), "pt") as h:
        decoder = decoded.Decoder.from_file(h, meta["decoder"])
        decoder.check_patches(emb, what=f"the classifier {directory}")
        weights, bias, temperature = h.get_slice("linear.weight"), h.get_tensor("linear.bias"), h.get_tensor("temperature")

        def probabilities(rows: np.ndarray) -> np.ndarray:
            logits = torch.as_tensor(decoded.logits(emb, rows, decoder, weights, bias.numpy()))
            return torch.softmax(logits / float(temperature), -1).numpy()

        yield probabilities
