"""``snpbag relate train`` and ``snpbag relate``: relationship degrees of pairs from per-patch evidence.

``train`` reads simulated pedigrees (``snpbag simulate --pedigree``: exact degree labels,
parent–offspring and full siblings told apart at degree 1, half siblings, grandparent–grandchild
and avuncular at degree 2), adds pairs from different families as unrelated, computes each
pair's KING counts per patch of ``patch_sites`` consecutive sites
(:mod:`snpbag.kinship.pairfeatures`) and/or reads the genomes' patch embeddings
(:mod:`snpbag.inference.relateinput`), fits :class:`~snpbag.model.relate.RelateNet` on four
fifths of the families (unweighted loss on two unrelated pairs per related one: a class-balanced loss called 30 % of
unrelated pairs related, docs/benchmarks.md), fits
the calibration temperature on the other fifth and writes the relate directory::

    relate.safetensors   weights, input standardisation, temperature
    relate.json          format, config, classes, patch size, training summary

``relate`` runs it on the pairs of a VCF or store (those of ``--pairs``, or the candidates of a
prefilter, :mod:`snpbag.inference.relatepairs`) and writes one row per pair: KING's
counts and kinship, the most probable degree, the calibrated probability of each degree
and of unrelated, the three most probable degrees, parent–offspring vs full siblings at
degree 1, the degree-2 type (half siblings, grandparent–grandchild, avuncular), the expected kinship
(EXP_KINSHIP = Σ P(class) · 2^-(d+1)) and the confidence (the top degree probability).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from snpbag import modeldir
from snpbag.errors import InputError
from snpbag.eval.relate import UNRELATED, degree_accuracy
from snpbag.fileio import atomic_outputs
from snpbag.inference import embedout, relateersa, reltable
from snpbag.inference.relatepairs import SEED_CM, all_pairs, candidates, read_pairs, resolve
from snpbag.inference.relateinput import EmbeddingInput, Features, PairData, check_embeddings, read_embedding_input
from snpbag.io.vcf import cpu_count
from snpbag.kinship import pairfeatures as pf
from snpbag.kinship import relatives as kin_relatives
from snpbag.kinship.source import GenotypeSource, ScanStats, expected_ibs0_sum
from snpbag.parallel import in_order

log = logging.getLogger(__name__)

WEIGHTS_FILE = "relate.safetensors"
CONFIG_FILE = "relate.json"
FORMAT = "snpbag-relate"
VERSION = 2  # 2: degree-2 types, the convolution along patches, embedding inputs
#: Variants per read.
CHUNK = 4096
#: Pairs `snpbag relate` scores in one block: their KING counts per patch, classifier features
#: and shared segments (~120 KiB per pair at array density) are held for a few blocks at a time
#: (:func:`block_threads`), so memory does not grow with the pairs a cohort's prefilter passes.
PAIR_BLOCK = 8192

#: The bytes of KING counts per patch (int32, 5 a pair and patch) that the pair blocks scored
#: at once may hold (:func:`block_threads`): a block of 8,192 pairs over 380,000 SNPs in
#: 128-SNP patches holds 0.5 GB of them.
COUNTS_BYTES = 2 << 30


def block_threads(threads: int | None, variants: int, patch_sites: int) -> int:
    """The pair blocks scored at once: ``threads`` (default: the CPUs), as far as their KING
    counts — one block more than that is held while its rows are written — fit in
    :data:`COUNTS_BYTES`; at least one."""
    per_block = PAIR_BLOCK * pf.n_patches(max(variants, 1), patch_sites) * len(pf.COUNTS) * 4
    return max(1, min(threads or cpu_count(), COUNTS_BYTES // per_block - 1))


#: Inputs with fewer variants than this share of the training input's are refused: the
#: evidence per pair (and so every degree's calibration) scales with the sites seen.
MIN_VARIANT_SHARE = 0.5
#: Training pairs the input standardisation is estimated from.
STANDARDISE_PAIRS = 4096
#: Pedigree relationship names of the two degree-1 classes.
DEGREE1 = {"parent-offspring": 0, "full siblings": 1}
#: Pedigree relationship names of the degree-2 types, in the order of snpbag.model.relate.SUBTYPES.
DEGREE2 = {"half siblings": 0, "grandparent-grandchild": 1, "avuncular": 2}


@dataclass
class Fit:
    epochs: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 128
    unrelated_per_related: float = 2.0  # extra cross-family unrelated pairs per related pair
    calibration: float = 0.2  # share of families held out to fit the temperature
    seed: int = 0


def read_dosages(path: str | Path, *, threads: int | None = None) -> tuple[list[str], list[np.ndarray], int]:
    """(sample ids, ALT dosage chunks (v, n) int8 of the whole input, autosomal variants) of ``path``: read
    once and held, so that pairs can be counted a block at a time (:data:`PAIR_BLOCK`) in one reading."""
    src = GenotypeSource(path, threads=threads)
    stats = ScanStats()
    chunks = [d if d.base is None else d.copy() for d in src.dosages(src.n_samples, chunk=CHUNK, stats=stats)]
    if stats.variants == 0:
        raise InputError(f"{path}: no autosomal biallelic SNPs to compare pairs on")
    return src.sample_ids, chunks, stats.variants


def input_counts(path: str | Path, pairs_of, *, patch_sites: int, threads: int | None = None
                 ) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """(sample ids, pairs, patch counts, variants) of ``path``; ``pairs_of(ids)`` chooses the pairs."""
    ids, chunks, variants = read_dosages(path, threads=threads)
    pairs = np.asarray(pairs_of(ids), dtype=np.int64).reshape(-1, 2)
    return ids, pairs, pf.stream_patch_counts(iter(chunks), pairs, patch_sites=patch_sites), variants


def _read_tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text().splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:] if line]


def pedigree_pairs(simdir: str | Path, *, max_degree: int, patch_sites: int, unrelated_per_related: float,
                   seed: int, embeddings: EmbeddingInput | None = None, counts: bool = True) -> PairData:
    """Labelled pairs of a ``snpbag simulate --pedigree`` directory, with cross-family unrelated pairs added
    (and the genomes' patch embeddings when ``embeddings`` is given; without their KING counts per patch,
    a pass over the genotypes, when ``counts`` is false)."""
    d = Path(simdir)
    truth, samples = d / "pedigree_pairs.tsv", d / "samples.tsv"
    if not truth.exists() or not samples.exists():
        raise InputError(f"{d}: not a pedigree simulation (no pedigree_pairs.tsv / samples.tsv); "
                         "write one with `snpbag simulate OUTDIR --pedigree N`")
    fam_of = {r["sample"]: r["family"] for r in _read_tsv(samples)}
    rows = _read_tsv(truth)
    un = max_degree + 1
    labelled: dict[tuple[str, str], int] = {}
    subtype: dict[tuple[str, str], int] = {}
    for r in rows:
        if r["degree"] == "2" and r["relationship"] in DEGREE2:
            subtype[(r["id1"], r["id2"])] = DEGREE2[r["relationship"]]
        deg = r["degree"]
        if deg == "NA" or int(deg) > max_degree:
            c = un
        elif int(deg) == 1:
            c = DEGREE1.get(r["relationship"], -1)
        else:
            c = int(deg)
        if c >= 0:
            labelled[(r["id1"], r["id2"])] = c
    families = sorted(set(fam_of.values()))
    fam_index = {f: k for k, f in enumerate(families)}

    def choose(ids: list[str]) -> np.ndarray:
        index = {s: k for k, s in enumerate(ids)}
        known = [(index[a], index[b]) for a, b in labelled]
        rng = np.random.default_rng(seed)
        n_rel = sum(c != un for c in labelled.values())
        want, extra, seen = int(round(unrelated_per_related * n_rel)), [], set(labelled)
        fam = np.array([fam_index[fam_of[s]] for s in ids])
        for _ in range(50 * want + 100):
            if len(extra) >= want:
                break
            i, j = (int(x) for x in rng.integers(0, len(ids), 2))
            if fam[i] != fam[j] and (ids[i], ids[j]) not in seen and (ids[j], ids[i]) not in seen:
                seen.add((ids[i], ids[j]))
                extra.append((i, j))
        return np.array(known + extra, dtype=np.int64).reshape(-1, 2)

    if counts:
        ids, pairs, patches, variants = input_counts(d / "pedigree.vcf.gz", choose, patch_sites=patch_sites)
    else:
        ids, patches, variants = GenotypeSource(d / "pedigree.vcf.gz").sample_ids, None, 0
        pairs = choose(ids)
    y = np.array([labelled.get((ids[i], ids[j]), un) for i, j in pairs], dtype=np.int64)
    fam = np.array([fam_index[fam_of[ids[i]]] if fam_of[ids[i]] == fam_of[ids[j]] else -1 for i, j in pairs])
    sub = np.array([subtype.get((ids[i], ids[j]), -1) for i, j in pairs], dtype=np.int64)
    data = PairData(ids, pairs, patches, variants, y, fam, sub)
    if embeddings is not None:
        data.emb = embeddings.vectors[embeddings.rows_for(ids, what=str(d / "pedigree.vcf.gz"))]
        data.emb_valid = embeddings.valid
    return data


def _logits(net, feats: Features, rows, batch: int = 1024):
    """(degree logits, degree-2 type logits) of ``rows``, in batches."""
    import torch

    with torch.no_grad():
        out = [net(*feats.batch(rows[k:k + batch])) for k in range(0, len(rows), batch)]
    return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])


def fit_net(data: PairData, *, max_degree: int, patch_sites: int, fit: Fit, options: dict[str, Any] | None = None):
    """Train a RelateNet on ``data`` (families split off for calibration) and set its temperatures.

    The degree-2 type is learned from the degree-2 pairs only, each type weighted by the inverse of its
    count (half siblings are rare in the family template), so P_HS / P_GP / P_AV assume the three
    equally likely a priori."""
    import torch
    import torch.nn.functional as F

    from snpbag.model.relate import SUBTYPES, RelateConfig, RelateNet, fit_temperature

    torch.manual_seed(fit.seed)
    options = dict(options or {})
    feats = Features(data, options.get("inputs", "counts"), patch_sites)
    y, sub = torch.from_numpy(data.y), torch.from_numpy(data.sub)
    rng = np.random.default_rng(fit.seed)
    fams = np.unique(data.family[data.family >= 0])
    held = rng.choice(fams, max(1, int(round(fit.calibration * len(fams)))), replace=False) if len(fams) > 1 else []
    cal = np.isin(data.family, held)
    cal[data.family < 0] = rng.random(int((data.family < 0).sum())) < fit.calibration
    idx = torch.nonzero(torch.from_numpy(~cal)).squeeze(1)
    g = torch.Generator().manual_seed(fit.seed)
    sample = torch.randperm(len(idx), generator=torch.Generator().manual_seed(fit.seed + 1))[:STANDARDISE_PAIRS]
    x, mask, s = feats.batch(idx[sample.sort().values])  # the input standardisation's sample
    cfg = RelateConfig(n_features=x.shape[-1], n_summary=s.shape[-1], max_degree=max_degree, **options)
    net = RelateNet(cfg)
    net.standardise_from(x, mask, s)
    del x, mask, s
    counts = torch.bincount(sub[idx][sub[idx] >= 0], minlength=len(SUBTYPES)).float()
    weight = torch.where(counts > 0, counts.sum() / (len(SUBTYPES) * counts.clamp_min(1)), torch.zeros_like(counts))
    opt = torch.optim.AdamW(net.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    net.train()
    for _ in range(fit.epochs):
        for b in idx[torch.randperm(len(idx), generator=g)].split(fit.batch_size):
            deg, typ = net(*feats.batch(b))
            loss = F.cross_entropy(deg, y[b])
            has = sub[b] >= 0
            if has.any():
                loss = loss + F.cross_entropy(typ[has], sub[b][has], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    c = torch.nonzero(torch.from_numpy(cal)).squeeze(1)
    if len(c):
        deg, typ = _logits(net, feats, c)
        net.temperature.fill_(fit_temperature(deg, y[c]))
        has = sub[c] >= 0
        if has.any():
            net.subtype_temperature.fill_(fit_temperature(typ[has], sub[c][has]))
    return net


def degrees_of_classes(cls: np.ndarray, max_degree: int) -> np.ndarray:
    """Class indices -> degrees (PO, FS -> 1; UN -> eval.relate.UNRELATED)."""
    d = np.where(cls <= 1, 1, cls)
    return np.where(cls == max_degree + 1, UNRELATED, d)


def degree_probabilities(p: np.ndarray) -> np.ndarray:
    """(n, classes) -> (n, max_degree + 1): P(degree 1) = P(PO) + P(FS), degrees 2.., unrelated."""
    return np.concatenate([p[:, :2].sum(1, keepdims=True), p[:, 2:]], axis=1)


def predict_proba(net, data: PairData, patch_sites: int, batch: int = 1024, device: str = "cpu"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated (degree-class probabilities (n, classes), degree-2 type probabilities (n, 3)) of every pair."""
    import torch

    from snpbag.model.relate import SUBTYPES

    feats = Features(data, net.cfg.inputs, patch_sites)
    if not len(feats):
        return np.zeros((0, net.cfg.n_classes)), np.zeros((0, len(SUBTYPES)))
    net = net.to(device)
    deg, typ = [], []
    with torch.no_grad():
        for k in range(0, len(feats), batch):
            p, q = net.probabilities(*(t.to(device) for t in feats.batch(torch.arange(k, min(k + batch, len(feats))))))
            deg.append(p.cpu())
            typ.append(q.cpu())
    return torch.cat(deg).numpy(), torch.cat(typ).numpy()


def called_degrees(net, data: PairData, patch_sites: int) -> np.ndarray:
    """Most probable degree of each pair (UNRELATED for unrelated)."""
    pd = degree_probabilities(predict_proba(net, data, patch_sites)[0])
    top = pd.argmax(1)
    return np.where(top == pd.shape[1] - 1, UNRELATED, top + 1)


def called_subtypes(net, data: PairData, patch_sites: int) -> np.ndarray:
    """Most probable degree-2 type of each pair (an index into snpbag.model.relate.SUBTYPES), whatever its degree."""
    return predict_proba(net, data, patch_sites)[1].argmax(1)


@dataclass
class TrainSummary:
    out: Path
    pairs: int
    per_class: dict[str, int]
    temperature: float

    def line(self) -> str:
        cls = ", ".join(f"{k}: {v}" for k, v in self.per_class.items())
        return f"{self.out}: trained on {self.pairs:,} pairs ({cls}); temperature {self.temperature:.3f}"


def _concat(parts: list[PairData]) -> PairData:
    """One PairData of several pedigree directories' pairs (families renumbered apart; no embeddings)."""
    if len({p.counts.shape[1] for p in parts}) > 1:
        raise InputError("--pedigree directories differ in their number of patches; simulate them with the same "
                         "--chromosomes and --length")
    if len(parts) == 1:
        return parts[0]
    if any(p.emb is not None for p in parts):
        raise InputError("--embeddings: train on one --pedigree directory (and its embeddings) at a time")
    offset = np.cumsum([0] + [int(p.family.max()) + 1 for p in parts])
    return PairData(parts[0].ids, np.concatenate([p.pairs for p in parts]), np.concatenate([p.counts for p in parts]),
                    int(np.mean([p.variants for p in parts])), np.concatenate([p.y for p in parts]),
                    np.concatenate([np.where(p.family >= 0, p.family + o, -1) for p, o in zip(parts, offset)]),
                    np.concatenate([p.sub for p in parts]))


def train(*, pedigree: list[str | Path], out: str | Path, max_degree: int = 12, patch_sites: int = 256,
          fit: Fit | None = None, options: dict[str, Any] | None = None, embeddings: str | Path | None = None,
          segments: bool = True, specificity: float = relateersa.SPECIFICITY) -> TrainSummary:
    """Fit the relatedness classifier on simulated pedigrees, and (``segments``) the background and LOD
    cutoff of the degrees called from shared segments (:func:`snpbag.inference.relateersa.fit`), and write a
    relate directory.

    Parameters
    ----------
    segments : fit the shared-segment caller; without it, ``snpbag relate`` calls with the classifier alone.
    specificity : share of the training unrelated pairs the segment caller's LOD cutoff keeps unrelated.
    options : RelateConfig fields, e.g. ``{"inputs": "embeddings"}`` (default counts).
    embeddings : ``snpbag embed`` output of the (one) pedigree directory's genomes, for inputs
        ``embeddings`` or ``both``.

    Raises
    ------
    InputError : an existing ``out``, a directory that is not a pedigree simulation, bad sizes,
        embeddings missing for an embedding model (or given to a counts model), samples not embedded.
    """
    from snpbag.model.relate import SUBTYPES, RelateConfig, class_names

    if Path(out).exists():
        raise InputError(f"{out}: output already exists; remove it or choose another --out")
    if max_degree < 2:
        raise InputError(f"--max-degree {max_degree}: must be >= 2")
    fit = fit or Fit()
    inputs = RelateConfig(**(options or {})).inputs
    if (embeddings is None) != (inputs == "counts"):
        raise InputError(f"--inputs {inputs}: " + ("give --embeddings (`snpbag embed` output of the pedigree's "
                                                   "genomes)" if embeddings is None else "drop --embeddings, or "
                                                   "choose --inputs embeddings or both"))
    emb = read_embedding_input(embeddings) if embeddings is not None else None
    parts = [pedigree_pairs(p, max_degree=max_degree, patch_sites=patch_sites,
                            unrelated_per_related=fit.unrelated_per_related, seed=fit.seed + k, embeddings=emb)
             for k, p in enumerate(pedigree)]
    record = relateersa.fit([(Path(p), d, degrees_of_classes(d.y, max_degree)) for p, d in zip(pedigree, parts)],
                            max_degree=max_degree, specificity=specificity) if segments else None
    data = _concat(parts)
    net = fit_net(data, max_degree=max_degree, patch_sites=patch_sites, fit=fit, options=options)
    names = class_names(max_degree)
    per_class = {names[c]: int((data.y == c).sum()) for c in range(len(names))}
    per_class.update({f"2:{t}": int((data.sub == k).sum()) for k, t in enumerate(SUBTYPES)})
    meta = {"format": FORMAT, "version": VERSION, "config": net.cfg.to_dict(), "classes": names,
            "subtypes": list(SUBTYPES), "patch_sites": patch_sites, "features": list(pf.FEATURES),
            "summary": list(pf.SUMMARY), "embeddings": emb.record() if emb is not None else None,
            "training": {"pedigrees": [str(p) for p in pedigree], "variants": data.variants, "pairs": per_class,
                         "temperature": float(net.temperature),
                         "subtype_temperature": float(net.subtype_temperature), "fit": fit.__dict__},
            "segments": record}
    modeldir.write_small_model(out, config_file=CONFIG_FILE, weights_file=WEIGHTS_FILE, meta=meta,
                               state_dict=net.state_dict())
    return TrainSummary(Path(out), len(data.y), per_class, float(net.temperature))


def load(directory: str | Path):
    """(RelateNet in eval mode, its relate.json)."""
    from snpbag.model.relate import RelateConfig, RelateNet

    meta, weights = modeldir.read_small_model(directory, config_file=CONFIG_FILE, weights_file=WEIGHTS_FILE,
                                              fmt=FORMAT, version=VERSION, kind="relate",
                                              writer="snpbag relate train")
    net = RelateNet(RelateConfig(**meta["config"]))
    net.load_state_dict(weights)
    return net.eval(), meta



def describe(directory: str | Path) -> str:
    """What ``snpbag info`` prints for a relate directory: its classes and inputs, what it was
    trained on, and how it calls degrees (the segment caller's detectors, population groups and
    LOD cutoffs, or the classifier alone), so a user can tell which ``snpbag relate`` flags it
    needs (``--genetic-map``, ``--populations``) before running it. Reads relate.json and
    checks the weights load, as :func:`load` does.

    Raises
    ------
    CheckpointError : not a relate directory of this format (as :func:`load`).
    """
    _, meta = load(directory)
    cfg, training, seg = meta["config"], meta.get("training", {}), meta.get("segments")
    lines = [f"relate directory  {Path(directory).resolve()}",
             f"format            {meta['format']} v{meta['version']} (written by `snpbag relate train`)",
             f"classes           {' '.join(meta['classes'])}; degree-2 types {' '.join(meta.get('subtypes', []))}",
             f"inputs            {cfg['inputs']}" + (f" (KING counts in patches of {meta['patch_sites']} SNPs)"
                                                     if cfg["inputs"] != "embeddings" else ""),
             f"pedigrees         {', '.join(map(str, training.get('pedigrees', [])))}"]
    pairs = training.get("pairs", {})
    if pairs:
        order = {c: k for k, c in enumerate(meta["classes"])}  # PO FS 2 (2:HS ...) 3 ... UN
        keys = sorted(pairs, key=lambda k: (order.get(k.split(":")[0], len(order)), k))
        lines.append("training pairs    " + ", ".join(f"{k} {pairs[k]:,}" for k in keys))
    if seg is None:
        lines.append("degree call       the classifier alone (trained with --no-segments): "
                     "no --genetic-map or --populations needed")
        return "\n".join(lines) + "\n"
    lines.append(f"degree call       KING's thresholds to degree {seg['king_degrees']}, ERSA on shared segments "
                 f"beyond (needs --genetic-map; --populations for the per-group backgrounds)")
    for name, d in seg["detectors"].items():
        cut = d["min_lod"]
        lines.append(f"  {name:<5} segments of >= {d['threshold_cm']:g} cM, {d['components']}-exponential background; "
                     f"LOD cutoff {cut['groups']:.2f} (population groups), {cut['pooled']:.2f} (pooled)")
    groups = seg.get("unrelated_pairs", {})
    lines.append("population groups " + ", ".join(f"{g} {n:,}" for g, n in groups.items()) + " (unrelated training pairs)")
    lines.append(f"specificity       {seg['specificity']:g} of training unrelated pairs kept unrelated")
    return "\n".join(lines) + "\n"


@dataclass
class RelateSummary:
    output: Path
    pairs: int
    written: int
    per_degree: dict[str, int]

    def line(self) -> str:
        cls = ", ".join(f"{k}: {v}" for k, v in self.per_degree.items())
        return f"{self.output}: {self.written:,} of {self.pairs:,} pairs written; calls {cls}"


def relate(*, model: str | Path, input: str | Path, out: str | Path, pairs: str | Path | None = None,
           min_kinship: float | None = None, max_degree: int | None = None, threads: int | None = None,
           device: str = "cpu", embeddings: str | Path | None = None, genetic_map: str | Path | None = None,
           populations: str | Path | None = None, segments: str = "auto", prefilter: str = "auto",
           seed_cm: float = SEED_CM, relatives: bool = True) -> RelateSummary:
    """Degree calls for the pairs of ``input`` → ``PREFIX.rel`` and ``PREFIX.rel.log``.

    A model trained with segments (the default) calls degrees with KING's thresholds up to 3 and
    ERSA on shared segments beyond (:mod:`snpbag.inference.relateersa`): DEGREE, P_1..P_UN, TOP*,
    EXP_KINSHIP and CONFIDENCE come from that caller, the degree-2 type from the classifier (run on
    the pairs called degree 1 or 2 only: P_PO and P_HS/P_GP/P_AV are NA beyond), PO_FS from the pair's
    opposite homozygotes (:func:`~snpbag.inference.reltable.po_probability`, KING's rule), and
    SEGMENTS / SHARED_CM are each pair's segments of at least the detector's
    threshold. Without segments, the classifier alone. With ``relatives`` (the default), a pair's
    DEGREE is then bounded by its members' parents' calls (:mod:`snpbag.kinship.relatives`:
    deg(X, B) ≤ deg(C, B) + 1 for C a parent of X, parents found from the calls): PAIR_DEGREE keeps the
    pair's own call, VIA names the parent whose call gave a closer DEGREE, and pairs a prefilter did not
    score get a row of their own where a parent's call bounds them (their evidence columns NA).

    Parameters
    ----------
    model : a directory written by :func:`train`.
    input : VCF/BCF or snpbag store; for a model trained on embeddings only, ``snpbag embed``
        output may stand here instead (then the KING columns are NA).
    out : output prefix: ``PREFIX.rel`` (tab-separated, columns :func:`~snpbag.inference.reltable.columns`) and
        ``PREFIX.rel.log`` (pairs considered and called per degree); both appear atomically.
    pairs : a file of pairs (two sample ids per line, or a .kin0); default all pairs.
    min_kinship : the KING prefilter's cut: only the pairs whose exact KING-robust kinship (``snpbag king``,
        as plink2) is at least this (alone, it chooses ``prefilter="king"``); with ``prefilter="segments"``
        the KING part of the union (default KING's degree-3 cut 0.0442).
    prefilter : ``auto``, ``segments``, ``king`` or ``none``: which pairs are scored without ``pairs``, and
        what each can miss (:mod:`snpbag.inference.relatepairs`). ``auto``: ``king`` with ``min_kinship``,
        ``segments`` for a model with segments on phased input, else ``none`` (every pair).
    seed_cm : the segment prefilter's shortest haplotype seed (cM).
    relatives : bound each pair's degree by its members' parents' calls (above); with ``pairs``, only the
        listed pairs are bounded.
    max_degree : write only pairs called at this degree or closer (default: every pair).
    device : ``cpu`` or ``cuda`` for the classifier (the counts are computed on the CPU).
    genetic_map : PLINK .map / HapMap file, or a ``snpbag simulate --pedigree`` directory (its map);
        needed by a model with segments.
    populations : sample → population (e.g. a samples.tsv): each pair's background is its population
        group's; without it, the background pooled over all training unrelated pairs.
    segments : the segment detector: ``auto`` (haplotype IBD on phased input, else runs free of
        opposite homozygotes), ``hap`` (refuses unphased input) or ``ibs0``.
    embeddings : ``snpbag embed`` output of the input's genomes, for a model trained with
        ``--inputs embeddings`` or ``both``; it must come from the same embedding model and sites.

    Raises
    ------
    InputError : unknown or repeated pairs, two ways of choosing pairs at once (--pairs with --min-kinship or a
        --prefilter; --prefilter king without --min-kinship, none with it), ``segments`` for a model without
        segments or on unphased input, too few variants for
        the model, an existing output, cuda without a GPU, embeddings missing, of another model
        or site set, or given to a model that reads genotypes; for a model with segments: no
        --genetic-map, a store or embeddings as --input, ``hap`` on unphased input, a population
        group without a background.
    CheckpointError : ``model`` is not a relate directory.
    """
    net, meta = load(model)
    inputs = net.cfg.inputs
    table, log_file = Path(f"{out}.rel"), Path(f"{out}.rel.log")
    for f in (table, log_file):
        if f.exists():
            raise InputError(f"{f}: output already exists; remove it or choose another --out")
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device {device!r}: choose cpu or cuda")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA device is visible; use --device cpu")
    patch_sites, top = int(meta["patch_sites"]), net.cfg.max_degree
    if max_degree is not None and not 1 <= max_degree <= top:
        raise InputError(f"--max-degree {max_degree}: the model calls degrees 1..{top}")
    record = meta.get("segments")
    choice = dict(pairs=pairs, min_kinship=min_kinship, seed_cm=seed_cm, segments_model=record is not None)
    resolve(prefilter, **choice, phased=True)  # a bad combination fails before any reading
    genotypes, emb = _open_inputs(input, embeddings, inputs, meta, min_kinship)
    gmap = relateersa.checked_map(record, genotypes, genetic_map, populations, segments)
    genome = detector = None
    if record is not None:
        genome, detector = relateersa.read_genome_for(genotypes, gmap, segments)
    how = resolve(prefilter, **choice, phased=detector == "hap")
    chosen: list = []

    def choose(ids: list[str]) -> np.ndarray:
        if how == "pairs":
            return read_pairs(pairs, ids)
        if how == "none":
            return all_pairs(len(ids))
        chosen.append(candidates(how, genotypes, ids, Path(tmpdir), min_kinship=min_kinship, seed_cm=seed_cm,
                                 genome=genome, threads=threads))
        return chosen[-1].pairs

    with tempfile.TemporaryDirectory(prefix=".relate-", dir=table.parent) as tmpdir:
        if genotypes is not None:
            ids, dosage, variants = read_dosages(genotypes, threads=threads)
            expected_ibs0 = sum(expected_ibs0_sum(d) for d in dosage) / max(variants, 1)
        else:
            ids, dosage, variants, expected_ibs0 = emb.samples, None, 0, float("nan")
        idx = np.asarray(choose(ids), dtype=np.int64).reshape(-1, 2)
    described = chosen[0].description if chosen else {"pairs": f"--pairs {pairs}", "none": "none"}[how]
    trained = int(meta["training"]["variants"])
    if genotypes is not None and variants < MIN_VARIANT_SHARE * trained:
        raise InputError(f"{input}: {variants:,} autosomal SNPs, under {MIN_VARIANT_SHARE:.0%} of the {trained:,} "
                         "the model was trained on (a single chromosome?); give the whole genome or train a model "
                         "on a matching simulation")
    pops = None
    if record is not None:
        if genome.ids != ids:
            raise InputError(f"{input}: the samples read for shared segments differ from the genotypes'")
        pops = relateersa.read_populations(populations, ids) if populations is not None else None
    vectors = None if emb is None else emb.vectors[emb.rows_for(ids, what=str(input))]
    names = [str(d) for d in range(1, top + 1)] + ["UN"]
    calls = None  # the last block's segment calls: the log's detector and background
    own = np.empty(len(idx), np.int8)  # each pair's own call (class index), its parent–offspring flag
    po = np.zeros(len(idx), bool)
    with atomic_outputs(table, log_file) as (tmp, tmp_log), \
            tempfile.TemporaryDirectory(prefix=".relate-", dir=table.parent) as scratch:
        rows = Path(scratch) / "pairs.rel"

        def score(b: int) -> tuple:
            """The calls of the pair block starting at b (in a worker thread: its kernels release the GIL)."""
            block = idx[b:b + PAIR_BLOCK]
            counts = None if dosage is None else pf.stream_patch_counts(iter(dosage), block, patch_sites=patch_sites)
            data = PairData(ids, block, counts, variants, emb=vectors, emb_valid=None if emb is None else emb.valid)
            calls = None
            if record is not None:
                groups = relateersa.groups_of(pops, ids, block) if pops is not None else None
                calls = relateersa.call(record, genome, block, counts, detector=detector, max_degree=top,
                                        groups=groups)
                pd = calls.probabilities
                exp_k = pd[:, :-1] @ (0.5 ** np.arange(2, top + 2))
                p, p_sub = _classifier_where_close(net, data, pd, patch_sites, device)
            else:
                p, p_sub = predict_proba(net, data, patch_sites, device=device)
                pd = degree_probabilities(p)
                exp_k = p @ net.kinship.numpy().astype(np.float64)
            return block, counts, p, p_sub, pd, exp_k, calls

        starts = range(0, len(idx), PAIR_BLOCK)
        scored = in_order(score, starts, threads=block_threads(threads, variants, patch_sites), name="snpbag-relate")
        with open(rows, "w") as fh:  # every scored pair's row, in pair order; the relatives' bounds and --max-degree follow
            for b, (block, counts, p, p_sub, pd, exp_k, calls) in zip(starts, scored):
                call, p_po = reltable.write_rows(fh, ids, block, counts, p, p_sub, pd, exp_k, calls, names,
                                                 expected_ibs0)
                own[b:b + len(block)] = call
                po[b:b + len(block)] = (call == 0) & (p_po >= 0.5)
        lifted = None
        if relatives:
            degree = np.where(own == top, 0, own.astype(np.int64) + 1)
            lifted = kin_relatives.lift(idx, degree, po, max_degree=top, only_scored=how == "pairs")
        with open(tmp, "w") as fh:
            final = reltable.write_final(fh, rows, own, lifted, ids, names, max_degree,
                                         reltable.columns(top, segments=record is not None))
        written = int((final < max_degree).sum()) if max_degree is not None else len(final)
        per_degree = {n: int((final == k).sum()) for k, n in enumerate(names) if (final == k).any()}
        tmp_log.write_text(reltable.log_text(input, len(idx), written, per_degree, described, calls,
                                             chosen[0].seconds if chosen else None, lifted))
    return RelateSummary(table, len(idx), written, per_degree)


def _classifier_where_close(net, data: PairData, pd: np.ndarray, patch_sites: int, device: str
                            ) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's (degree-class, degree-2 type) probabilities for the pairs the segment caller calls degree 1
    or 2 — where PO_FS and D2_TYPE name something — and NaN for the rest: its forward pass was a third of the
    cost of every scored pair (docs/benchmarks.md, "All pairs of a cohort")."""
    from snpbag.model.relate import SUBTYPES

    close = reltable.top_degrees(pd, 1)[0][:, 0] < 2
    p = np.full((len(pd), net.cfg.n_classes), np.nan)
    p_sub = np.full((len(pd), len(SUBTYPES)), np.nan)
    if close.any():
        p[close], p_sub[close] = predict_proba(net, data.subset(close), patch_sites, device=device)
    return p, p_sub


def _open_inputs(input, embeddings, inputs: str, meta: dict, min_kinship) -> tuple[Path | None, EmbeddingInput | None]:
    """(genotype input or None, checked embeddings or None) for a model reading ``inputs``."""
    embedded = embedout.embeddings_model(input)
    if embedded is not None and inputs != "embeddings":
        raise InputError(f"--input {input}: embeddings of model {embedded.get('name', 'unknown')!r}; this relate "
                         f"model reads genotypes (inputs={inputs}): give the VCF or store"
                         + (" as --input and the embeddings as --embeddings" if inputs == "both" else
                            " the embeddings were made from"))
    if embedded is not None and embeddings is not None:
        raise InputError(f"--input {input} and --embeddings {embeddings}: both are embeddings; give one")
    if inputs == "counts":
        if embeddings is not None:
            raise InputError(f"--embeddings {embeddings}: this relate model reads genotypes only (inputs=counts); "
                             "drop --embeddings")
        return Path(input), None
    path = input if embedded is not None else embeddings
    if path is None:
        raise InputError(f"--model: this relate model reads patch embeddings (inputs={inputs}); give --embeddings "
                         "(`snpbag embed` output of the same genomes, with the model it was trained on)")
    if embedded is not None and min_kinship is not None:
        raise InputError("--min-kinship runs KING on genotypes, and --input is embeddings: give --pairs (e.g. the "
                         "pairs of `snpbag king --min-kinship X`), or the genotypes as --input and --embeddings")
    emb = read_embedding_input(path)
    check_embeddings(emb, meta.get("embeddings") or {})
    return (None if embedded is not None else Path(input)), emb


def evaluate(net, data: PairData, patch_sites: int) -> dict[str, dict[str, float]]:
    """Per-degree exact and within-±1 accuracy of the classifier on labelled pairs."""
    return degree_accuracy(degrees_of_classes(data.y, net.cfg.max_degree), called_degrees(net, data, patch_sites))
