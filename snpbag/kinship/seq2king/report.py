"""``snpbag seq2king report``: attention of a trained model on held-out sentences, its
connectivity to continents and populations, the baselines, and the files of the report.

Splits: the analysis individuals (the model's held-out individuals, plus individuals of the
kinship input the model has never seen when ``tokens="features"``) are cut in two halves.
Sentences of the *calibration* half choose each layer's orientation (inverted or not);
sentences of the *evaluation* half are scored. No statistic of the evaluation half is
computed before every orientation is fixed, and orientation never reads it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from snpbag.errors import InputError, SampleError
from snpbag.fileio import atomic_output
from snpbag.kinship.seq2king import checkpoint, render
from snpbag.kinship.seq2king.attention import collect
from snpbag.kinship.seq2king.baselines import king_attention, pca_attention, principal_components
from snpbag.kinship.seq2king.inputs import Labels, TokenVectors, read_kinship, read_labels, table_columns
from snpbag.kinship.seq2king.tables import Analysis, write_tables
from snpbag.kinship.seq2king.model import layer_names
from snpbag.kinship.seq2king.sentences import sample_sentences
from snpbag.kinship.seq2king.stats import choose_orientation, encode_groups, invert, score, spearman
from snpbag.kinship.seq2king.train import token_features

log = logging.getLogger(__name__)

LEVELS = ("continent", "population")
KING_BASELINE, PCA_BASELINE = "king_softmax", "pca_distance"
HEAD_VIEW_MAX = 60  # BERTViz-style views hang on long inputs


def _analysis_rows(meta: dict, kin) -> np.ndarray:
    """Kinship rows the report may analyse: held-out individuals (and, for feature tokens,
    individuals the model never saw)."""
    held = kin.index(meta["held_out"])
    if meta["config"]["tokens"] != "features":
        return held
    known = set(meta["ids"])
    new = np.array([i for i, s in enumerate(kin.ids.tolist()) if s not in known], dtype=np.int64)
    return np.sort(np.concatenate([held, new]))


def _input_column(meta: dict, kinship_column: str | None) -> str:
    """The kinship column to analyse: the one the model was trained on; another is refused
    (feature tokens are rows of that kinship, and the attention learned its scale)."""
    trained = meta["input"].get("column", "KINSHIP")
    if kinship_column is not None and kinship_column != trained:
        raise InputError(f"--kinship-column {kinship_column}: the model was trained on {trained}; pass "
                         f"--kinship-column {trained} (the report compares the other column when the table has it)")
    return trained


def _compare_columns(kin, other, rows: np.ndarray) -> dict:
    """How the other kinship column of the same table differs over the analysis individuals' pairs."""
    from scipy.stats import pearsonr, spearmanr

    off = ~np.eye(len(rows), dtype=bool)
    a, b = kin.matrix[np.ix_(rows, rows)][off], other.matrix[np.ix_(rows, rows)][off]
    constant = np.ptp(a) == 0 or np.ptp(b) == 0
    return {"pearson": None if constant else round(float(pearsonr(a, b).statistic), 4),
            "spearman": None if constant else round(float(spearmanr(a, b).statistic), 4),
            "mean_abs_difference": round(float(np.abs(a - b).mean()), 6)}


def _check_embeddings(meta: dict, embeddings: TokenVectors | None, model_dir) -> None:
    """The embeddings must come with a model trained on them, and from the same embedding model."""
    trained = meta.get("embedding")
    if trained is None and embeddings is not None:
        raise InputError(f"--embeddings {embeddings.source}: the model {model_dir} does not use genome embeddings "
                         "(tokens are id or anchor kinship); leave --embeddings out")
    if trained is not None and embeddings is None:
        raise InputError(f"--model {model_dir}: its tokens are genome embeddings ({trained['path']}); pass "
                         "--embeddings with `snpbag embed --pool mean` output of the same embedding model")
    if trained is not None:
        for key in ("weights_sha256", "vocab_sha256"):
            if (trained.get("model") or {}).get(key) != embeddings.identity.get(key):
                raise InputError(f"--embeddings {embeddings.source}: written by another embedding model than the one "
                                 f"the Seq2KING model was trained on ({trained['path']}); embed with that model")
        if embeddings.matrix.shape[1] != trained["dim"]:
            raise InputError(f"--embeddings {embeddings.source}: {embeddings.matrix.shape[1]} numbers per individual, "
                             f"the model was trained on {trained['dim']}; use the same `snpbag embed` settings")


def _token_label(cfg) -> str:
    """The token input as the report names it: id, features (anchors) or features (embedding)."""
    return cfg.tokens if cfg.tokens == "id" else f"{cfg.tokens} ({cfg.features})"


def analyse(model_dir: str | Path, kinship: str | Path, labels: str | Path, *, sentences: int = 50,
            sentence_len: int = 60, permutations: int = 1000, seed: int = 0,
            kinship_column: str | None = None, embeddings: TokenVectors | None = None) -> Analysis:
    """Collect attention on calibration and evaluation sentences and score every layer, head,
    orientation and baseline at continent and population level. When the kinship table has
    both KINSHIP_COLUMNS (``snpbag relate``'s PREFIX.rel), the KING-softmax baseline is also
    scored on the other column and the two columns are compared (``info["kinship_compared"]``).
    ``embeddings``: the genome embeddings of every individual, for a ``features=embedding`` model."""
    model, meta, cfg, norm = checkpoint.load(model_dir)
    _check_embeddings(meta, embeddings, model_dir)
    if cfg.readout == "positions" and sentence_len > cfg.max_len:
        raise InputError(f"--sentence-len {sentence_len}: the model's positions read-out covers max_len={cfg.max_len} "
                         f"tokens; pass --sentence-len {cfg.max_len} or less")
    column = _input_column(meta, kinship_column)
    kin = read_kinship(kinship, column=column)
    others = {c: read_kinship(kinship, column=c) for c in table_columns(kinship) if c != column}
    rows = _analysis_rows(meta, kin)
    if len(rows) < 8:
        raise SampleError(f"--kinship {kinship}: {len(rows)} held-out individuals; the report needs at least 8 "
                          "(train with a larger holdout= or pass more individuals)")
    lab = read_labels(labels, kin.ids[rows])
    by_row = {int(r): i for i, r in enumerate(rows)}
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))
    halves = {"calibration": rows[np.sort(order[: len(rows) // 2])], "evaluation": rows[np.sort(order[len(rows) // 2:])]}
    L = min(sentence_len, min(len(h) for h in halves.values()))
    sent = {k: sample_sentences(h, sentences, min_len=L, max_len=L, rng=rng) for k, h in halves.items()}
    km = norm(kin.matrix)
    anchors = kin.index(meta["anchors"])
    features = token_features(kin, cfg, norm_matrix=km, anchors=anchors, embeddings=embeddings, scale=meta.get("embedding"))
    model_rows = None
    if cfg.tokens == "id":
        pos = {s: i for i, s in enumerate(meta["ids"])}
        model_rows = np.array([pos.get(s, 0) for s in kin.ids.tolist()], dtype=np.int64)
    cal_attn, _ = collect(model, sent["calibration"], features=features, model_rows=model_rows)
    cal_kin = kin.matrix[sent["calibration"][:, :, None], sent["calibration"][:, None, :]]
    layers = layer_names(cfg)
    orient = {(name, h): choose_orientation(cal_attn[name][:, h], cal_kin) for name in layers for h in range(cfg.n_heads)}
    del cal_attn  # fixed before the evaluation split is read

    ev = sent["evaluation"]
    ev_attn, ev_states = collect(model, ev, features=features, model_rows=model_rows)
    ev_kin = kin.matrix[ev[:, :, None], ev[:, None, :]]
    local = np.vectorize(by_row.get)(ev)
    ev_labels = Labels(lab.continent[local], lab.population[local])
    off = kin.matrix[np.ix_(rows, rows)][~np.eye(len(rows), dtype=bool)]
    baselines = {KING_BASELINE: (king_attention(ev_kin, temperature=float(off.std()) or 1.0),
                                 king_attention(cal_kin, temperature=float(off.std()) or 1.0))}
    for c, o in others.items():  # the same table's other kinship, as input of the same baseline
        o_off = o.matrix[np.ix_(rows, rows)][~np.eye(len(rows), dtype=bool)]
        o_ev, o_cal = (o.matrix[x[:, :, None], x[:, None, :]] for x in (ev, sent["calibration"]))
        baselines[f"{KING_BASELINE}[{c}]"] = (king_attention(o_ev, temperature=float(o_off.std()) or 1.0),
                                              king_attention(o_cal, temperature=float(o_off.std()) or 1.0))
    pcs = principal_components(km)
    baselines[PCA_BASELINE] = (pca_attention(pcs[ev]), pca_attention(pcs[sent["calibration"]]))

    out = []
    for level in LEVELS:
        _, G = encode_groups(ev_labels.level(level))
        for name in layers:
            for h in range(cfg.n_heads):
                o = orient[(name, h)]
                for inverted in (False, True):
                    A = ev_attn[name][:, h]
                    stats = score(invert(A) if inverted else A, G, permutations=permutations, rng=rng)
                    out.append({"layer": name, "head": h, "inverted": inverted, "level": level,
                                "chosen": inverted == o.inverted, "spearman_calibration": o.rho,
                                "source": "attention", **stats})
        for name, (A, A_cal) in baselines.items():
            stats = score(A, G, permutations=permutations, rng=rng)
            out.append({"layer": name, "head": 0, "inverted": False, "level": level, "chosen": True,
                        "spearman_calibration": spearman(A_cal, cal_kin), "source": "baseline", **stats})
    info = {"model": str(model_dir), "kinship": kin.source, "kinship_kind": kin.kind, "kinship_column": kin.column,
            "kinship_compared": {c: _compare_columns(kin, o, rows) for c, o in others.items()}, "labels": str(labels),
            "tokens": _token_label(cfg), "embeddings": None if embeddings is None else embeddings.source,
            "readout": cfg.readout, "positional": cfg.positional, "trained_on": meta["input"], "config": meta["config"],
            "analysis_individuals": len(rows), "new_individuals": int(sum(s not in set(meta["ids"]) for s in kin.ids[rows])),
            "sentences_per_split": sentences, "sentence_len": L, "permutations": permutations, "seed": seed,
            "inverted_layers": sorted({f"{n} head {h}" for (n, h), o in orient.items() if o.inverted}),
            "training_seconds": meta["record"]["seconds"], "held_out_loss": meta["record"]["held_out_loss"],
            "held_out_constant_loss": meta["record"].get("held_out_constant_loss")}
    analysis = Analysis(out, info, layers, cfg.n_heads, ev_attn, ev_states, ev_kin, ev_labels)
    analysis.head_view = _head_view(model, analysis, ev, kin.ids, features, model_rows)
    return analysis


def _head_view(model, analysis: Analysis, ev: np.ndarray, ids: np.ndarray, features, model_rows) -> dict:
    """One evaluation sentence of at most HEAD_VIEW_MAX individuals, sorted by continent and
    population, with every layer's and head's attention (rounded for the page)."""
    k = min(HEAD_VIEW_MAX, ev.shape[1])
    order = np.lexsort((analysis.eval_labels.population[0][:k], analysis.eval_labels.continent[0][:k]))
    s = ev[0][:k][order][None]
    attn, _ = collect(model, s, features=features, model_rows=model_rows)
    tokens = [f"{ids[r]}·{p}" for r, p in zip(s[0], analysis.eval_labels.population[0][:k][order])]
    return {"tokens": tokens, "continents": analysis.eval_labels.continent[0][:k][order].tolist(),
            "layers": analysis.layers,
            "attention": [[np.round(attn[name][0, h], 4).tolist() for h in range(analysis.n_heads)]
                          for name in analysis.layers]}


def report(model: str | Path, *, kinship: str | Path, labels: str | Path, out: str | Path, sentences: int = 50,
           sentence_len: int = 60, permutations: int = 1000, seed: int = 0, overwrite: bool = False,
           kinship_column: str | None = None, embeddings: TokenVectors | None = None) -> Path:
    """Write the Seq2KING report directory: connectivity.csv/.md, summary.json, PNG heat maps and
    projections, index.html (self-contained, with a head view). ``kinship_column``: default the
    column the model was trained on; summary.json and the page name it. ``embeddings``: for a
    ``features=embedding`` model, embeddings of every individual of ``kinship`` by the same
    embedding model (``snpbag.inference.seq2king.read_embeddings``); new individuals need no retraining.

    Raises
    ------
    CheckpointError : ``model`` is not a Seq2KING model directory.
    InputError, SampleError : unreadable kinship or labels, a kinship column other than the
        model's, individuals without labels or embeddings, one group only, embeddings missing for
        an embedding model (or given to another) or from another embedding model.
    """
    analysis = analyse(model, kinship, labels, sentences=sentences, sentence_len=sentence_len,
                       permutations=permutations, seed=seed, kinship_column=kinship_column,
                       embeddings=embeddings)
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.mkdir(parents=True)
        write_tables(analysis.rows, tmp)
        (tmp / "summary.json").write_text(json.dumps(analysis.info, indent=1, default=str) + "\n")
        images = render.figures(analysis, tmp)
        render.page(analysis, images, tmp)
    return Path(out)
