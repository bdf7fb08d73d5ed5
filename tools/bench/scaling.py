"""Scaling study of panel-free masked-genotype pretraining on CPU: error against training FLOPs
for several model sizes and step budgets, for snpbag's design and the published SNPBag design.

One command simulates a cohort (msprime, snpbag.simulate), converts it, trains every
(architecture, size) panel-free (model.retrieval=none) on augmented mosaic genomes of the
training samples with the same data and masking, and scores each at every step budget on
held-out genomes under three maskings -- 90 % random, and array patterns with 20 % and 5 %
of the sites visible -- per MAF bin, next to the allele-frequency baseline and the
haplotype-copying model alone (snpbag.retrieval.haplotypes, given the same visible sites
with the training genomes as its panel). It fits error = a * C^b against training FLOPs C
(snpbag.model.flops) per size and over each architecture's compute frontier, and
extrapolates the FLOPs -- and H100-hours at an ASSUMED model FLOPs utilisation, no GPU having
been measured -- at which the fit would reach the copying model and Beagle.

    python tools/bench/scaling.py --workdir /tmp/scaling                 # the study (~3 h estimated; docs/scaling.md)
    python tools/bench/scaling.py --workdir /tmp/scaling-q --quick       # smoke run, < 10 min
    python tools/bench/scaling.py --store S.zarr --sizes 0.1M --steps 2 4 --seq-len 32 ...  # tests
    python tools/bench/scaling.py --merge A.json B.json --json all.json  # one study run in parts

Budgets are evaluation points of one run per (architecture, size): learning rate warm-up then
cosine decay to the largest budget (``--schedule constant`` holds it instead), so a smaller
budget is not a separately tuned run. Training masks 50-99 % of each sequence at random,
reached through a curriculum from 15-50 % over the first 60 % of each run (``--curriculum``):
the combination of fixes that moved the curves most (docs/scaling.md); ``--site-rank`` adds the
genotype head's per-site readout. Writes the results JSON (tools/bench/_results.py), a PNG of
the curves beside it, and prints the Markdown tables of docs/scaling.md.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import _results

#: name -> (n_layers, n_heads, d_model); ~0.1 M, ~1 M and ~10 M non-embedding parameters
SIZES = {"0.1M": (2, 4, 64), "1M": (4, 4, 128), "10M": (8, 8, 320)}
#: name -> default step budgets (evaluation points of one run): the whole study fits ~3 h of one
#: idle core at the step times of docs/scaling.md, and every size reaches 1,000 steps
STEPS = {"0.1M": [300, 1000, 3000], "1M": [300, 1000, 2000], "10M": [100, 300, 1000]}
#: architecture -> ModelConfig fields over the tiny preset (d_ff and window given per size)
ARCHS = {
    "snpbag": {"site_code": "table", "ffn": "gelu", "norm": "layernorm"},  # site table, GELU, LayerNorm
    "paper": {"site_code": "binary", "site_dim": None, "ffn": "swiglu", "norm": "rmsnorm"},  # snpbag_paper's design
}
FF_RATIO = {"snpbag": 4, "paper": 2}  # d_ff / d_model: snpbag's default, the paper's 1,024 / 512
WINDOW = {"snpbag": 128, "paper": 256}  # each design's attention span (paper: 128 keys each side)
SCENARIOS = {"random90": None, "array20": 0.20, "array5": 0.05}  # None: 90 % hidden at random
H100_BF16_PEAK = 989.4e12  # dense bf16 FLOP/s of an H100 SXM (NVIDIA's data sheet)
BEAGLE = {"array20": 0.9991, "array5": 0.9938}  # docs/benchmarks.md: Beagle 5.4, 200 simulated targets


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("scaling_work"), help="simulated cohort and store (reused)")
    p.add_argument("--store", default=None, help="an existing phased store instead of simulating one")
    p.add_argument("--samples-per-pop", type=int, default=400)
    p.add_argument("--length", type=int, default=3_000_000, help="simulated chromosome length, bp")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="step budgets (evaluation points) of every size (default: STEPS, per size)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, nargs="+", default=[3e-3, 2e-3, 1e-3], help="per size, in --sizes order")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="cosine")
    p.add_argument("--min-rate", type=float, default=0.5, help="training masking: rate drawn in [min, max]")
    p.add_argument("--max-rate", type=float, default=0.99)
    p.add_argument("--curriculum", type=float, default=0.6,
                   help="masking curriculum: over this fraction of each run's largest budget the rate bounds rise "
                        "linearly from [--start-min-rate, --start-max-rate] to [--min-rate, --max-rate] (0: fixed)")
    p.add_argument("--start-min-rate", type=float, default=0.15)
    p.add_argument("--start-max-rate", type=float, default=0.5)
    p.add_argument("--site-rank", type=int, default=0,
                   help="genotype head's per-site readout: rank r, 3 x (r + 1) numbers per site (0: none)")
    p.add_argument("--site-scale", type=float, default=10.0, help="the per-site readout's learning-rate multiplier")
    p.add_argument("--eval-genomes", type=int, default=16, help="held-out genomes scored")
    p.add_argument("--eval-sites", type=int, default=1024, help="sites scored (from the first tile's start)")
    p.add_argument("--states", type=int, default=96, help="copying model: haplotypes per block (K)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mfu", type=float, default=0.3, help="ASSUMED H100 model FLOPs utilisation for the hours")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default="", help="names this run's variant in merged tables and the plot")
    p.add_argument("--quick", action="store_true", help="smoke run (< 10 min): small cohort, short budgets")
    p.add_argument("--png", type=Path, default=None, help="curves (default: the JSON path with .png)")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="instead of training: join the curves of these results files (parts of one study on the "
                        "same store and evaluation) and fit them together")
    _results.add_json_option(p)
    a = p.parse_args()
    if a.quick:
        a.samples_per_pop, a.length, a.steps = min(a.samples_per_pop, 150), min(a.length, 1_000_000), [5, 10, 20]
        a.seq_len, a.batch_size, a.eval_genomes, a.eval_sites, a.warmup = 128, 4, 8, 256, 5
    if len(a.lr) < len(a.sizes):
        a.lr = a.lr + [a.lr[-1]] * (len(a.sizes) - len(a.lr))
    a.budgets = {size: sorted(set(a.steps or STEPS[size])) for size in a.sizes}
    return a


def cohort_store(a) -> Path:
    """The store to train on: ``--store``, or a cohort simulated and converted in --workdir."""
    if a.store:
        return Path(a.store)
    from snpbag.simulate.cohort import simulate
    from snpbag.store.convert import convert

    sim = a.workdir / f"sim-{a.samples_per_pop}x{a.length}"
    store = a.workdir / f"cohort-{a.samples_per_pop}x{a.length}.zarr"
    if not sim.is_dir():
        simulate(sim, samples_per_pop=a.samples_per_pop, length=a.length, seed=a.seed + 1)
    if not store.is_dir():
        convert(str(sim / "cohort.vcf.gz"), str(store), threads=a.threads)
    return store


def model_config(arch: str, size: str, n_sites: int, seq_len: int):
    from snpbag.config import preset

    n_layers, n_heads, d_model = SIZES[size]
    return preset("tiny", n_sites=n_sites, n_layers=n_layers, n_heads=n_heads, d_model=d_model,
                  d_ff=FF_RATIO[arch] * d_model, window=min(WINDOW[arch], seq_len), block_size=64,
                  backend="local", retrieval="none", **ARCHS[arch])


def make_model(a, arch: str, size: str, vocab):
    """(config, model) of one run: the design and size, panel-free, with --site-rank's readout."""
    import torch

    from snpbag.model.builders import build_model

    cfg = model_config(arch, size, vocab.n_sites, a.seq_len)
    torch.manual_seed(a.seed)
    head_options = {"site_rank": a.site_rank, "site_scale": a.site_scale} if a.site_rank else None
    return cfg, build_model(cfg, head_options=head_options, site_af=vocab.af)


def masking_config(a, steps: int):
    """Training masking of a run of ``steps`` steps: the rate bounds, rising over --curriculum of them."""
    from snpbag.config import MaskingConfig

    return MaskingConfig(min_rate=a.min_rate, max_rate=a.max_rate,
                         curriculum_sequences=round(a.curriculum * steps) * a.batch_size,
                         start_min_rate=a.start_min_rate, start_max_rate=a.start_max_rate)


def datamodule(a, store_path: Path, steps: int):
    """Training data of a run of ``steps`` steps from its first epoch: augmented mosaics of the
    training samples (the same for every run), masked by :func:`masking_config`."""
    from snpbag.config import AugmentConfig
    from snpbag.data.datamodule import GenotypeDataModule

    dm = GenotypeDataModule(str(store_path), batch_size=a.batch_size, seq_len=a.seq_len, val_fraction=0.1,
                            seed=a.seed, masking=masking_config(a, steps), augment=AugmentConfig(enabled=True))
    dm.setup("fit")
    return dm


def visible_masks(maf: np.ndarray, n_genomes: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """(genomes, sites) bool: what each scenario shows. Array patterns show the same sites in
    every genome, spread evenly among common sites (MAF >= 5 %) as arrays are designed."""
    out = {}
    for name, density in SCENARIOS.items():
        if density is None:
            out[name] = rng.random((n_genomes, maf.size)) >= 0.9
            continue
        common = np.flatnonzero(maf >= 0.05)
        pool = common if common.size >= density * maf.size else np.arange(maf.size)
        k = max(1, round(density * maf.size))
        on = np.zeros(maf.size, dtype=bool)
        on[pool[np.linspace(0, pool.size - 1, k).round().astype(int)]] = True
        out[name] = np.broadcast_to(on, (n_genomes, maf.size))
    return out


def chunks(n_sites: int, seq_len: int) -> list[slice]:
    return [slice(s, min(s + seq_len, n_sites)) for s in range(0, n_sites, seq_len)]


def model_probs(model, truth, visible, sites, positions, rows, seq_len: int, batch_size: int) -> np.ndarray:
    """(genomes, sites, 3) genotype probabilities of the encoder, sequence by sequence."""
    import torch

    from snpbag.data.batch import collate
    from snpbag.data.tokens import IGNORE_INDEX, MASK

    items = []
    for g in range(truth.shape[0]):
        for sl in chunks(truth.shape[1], seq_len):
            t, v = truth[g, sl].astype(np.int64), visible[g, sl]
            items.append(dict(genotype=np.where(v, t, MASK), site_index=sites[sl], position=positions[sl],
                              target=np.where(v, IGNORE_INDEX, t), tile=0, sample=int(rows[g]), offset=sl.start))
    out = np.empty(truth.shape + (3,), dtype=np.float32)
    cuts = chunks(truth.shape[1], seq_len)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(items), batch_size):
            part = items[i:i + batch_size]
            p = torch.softmax(model(collate(part)).logits.float(), -1).numpy()
            for j, it in enumerate(part):
                g, sl = divmod(i + j, len(cuts))
                n = cuts[sl].stop - cuts[sl].start
                out[g, cuts[sl]] = p[j, :n]
    model.train()
    return out


def copying_probs(panel, truth, visible, sites, seq_len: int) -> np.ndarray:
    """The copying model alone on the same sequences (hidden sites coded 3)."""
    out = np.empty(truth.shape + (3,), dtype=np.float32)
    for sl in chunks(truth.shape[1], seq_len):
        out[:, sl] = panel.votes(np.where(visible[:, sl], truth[:, sl], 3).astype(np.int8), sites[sl])
    return out


def score(probs: np.ndarray, truth: np.ndarray, hidden: np.ndarray, maf: np.ndarray) -> dict:
    """Concordance, dosage r² and cross-entropy over hidden genotypes, overall and per MAF bin."""
    from snpbag.eval import MAF_BINS
    from snpbag.eval.metrics import dosage_r2, genotype_concordance, maf_bin_index, maf_bin_labels

    called, dose = probs.argmax(-1), probs[..., 1] + 2 * probs[..., 2]
    p_true = np.take_along_axis(probs, truth[..., None].astype(np.int64), -1)[..., 0]
    row = {"concordance": genotype_concordance(truth, called, mask=hidden), "r2": dosage_r2(truth, dose, mask=hidden),
           "loss": float(-np.log(np.clip(p_true[hidden], 1e-7, 1)).mean())}
    bins = maf_bin_index(maf)
    for k, label in enumerate(maf_bin_labels(MAF_BINS)):
        m = hidden & (bins == k)[None]
        row[f"conc {label}"] = genotype_concordance(truth, called, mask=m)
        row[f"r2 {label}"] = dosage_r2(truth, dose, mask=m)
    return row


def power_fit(flops: np.ndarray, err: np.ndarray) -> tuple[float, float] | None:
    """(a, b) of err = a * C^b by least squares in log-log; None with < 2 distinct points."""
    ok = np.isfinite(err) & (err > 0) & (flops > 0)
    if np.unique(flops[ok]).size < 2:
        return None
    b, loga = np.polyfit(np.log(flops[ok]), np.log(err[ok]), 1)
    return float(math.exp(loga)), float(b)


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The compute-efficient points: those with a lower error than every cheaper point."""
    out, best = [], math.inf
    for c, e in sorted(points):
        if e < best:
            out.append((c, e))
            best = e
    return out


def fits(curves: list[dict], targets: dict[str, float], mfu: float) -> list[dict]:
    """Power laws of error (1 - concordance) and loss against FLOPs; FLOPs to reach each target."""
    rows = []
    for arch in sorted({r["arch"] for r in curves}):
        groups = {s: [r for r in curves if r["arch"] == arch and r["size"] == s]
                  for s in dict.fromkeys(r["size"] for r in curves if r["arch"] == arch)}
        for scen in SCENARIOS:
            for what in ("error", "loss"):
                def value(r):
                    return 1 - r[f"{scen} concordance"] if what == "error" else r[f"{scen} loss"]
                sets = {s: [(r["train_flops"], value(r)) for r in g] for s, g in groups.items()}
                sets["frontier"] = frontier([pt for s in groups for pt in sets[s]])
                for name, pts in sets.items():
                    c, e = (np.array([p[i] for p in pts], dtype=float) for i in (0, 1))
                    fit = power_fit(c, e)
                    row = {"arch": arch, "size": name, "scenario": scen, "metric": what, "points": len(pts),
                           "a": fit[0] if fit else None, "exponent": fit[1] if fit else None}
                    for tname, terr in (targets.items() if what == "error" else ()):
                        tgt = terr.get(scen)
                        log10_need = None  # in log10: a shallow fit extrapolates past any float
                        if fit and fit[1] < 0 and tgt and tgt > 0:
                            log10_need = (math.log10(tgt) - math.log10(fit[0])) / fit[1]
                        row[f"log10 FLOPs to {tname}"] = log10_need
                        row[f"log10 H100-h to {tname} (MFU {mfu:g}, assumed)"] = (
                            None if log10_need is None else log10_need - math.log10(H100_BF16_PEAK * mfu * 3600))
                    rows.append(row)
    return rows


def train_and_score(a, store, store_path, arch, size, lr, ev) -> list[dict]:
    import torch
    from torch import nn

    from snpbag.model.flops import encoder_matmul_params, model_flops_per_token

    cfg, model = make_model(a, arch, size, store.vocab)
    per_token = model_flops_per_token(cfg)
    non_emb = encoder_matmul_params(n_layers=cfg.n_layers, d_model=cfg.d_model, d_ff=cfg.d_ff, ffn=cfg.ffn)
    total = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    budgets = a.budgets[size]
    last = budgets[-1]
    dm = datamodule(a, store_path, last)

    def factor(s):
        warm = min(1.0, (s + 1) / a.warmup)
        return warm if a.schedule == "constant" else warm * (0.1 + 0.45 * (1 + math.cos(math.pi * min(s, last) / last)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    rows, tokens, epoch, seconds = [], 0, 0, 0.0  # seconds: training only, evaluation left out
    it = iter(dm.train_dataloader())
    for step in range(1, last + 1):
        t0 = time.perf_counter()
        try:
            b = next(it)
        except StopIteration:  # a new epoch: new crops, masks and mosaic genomes
            epoch += 1
            dm.set_epoch(epoch)
            it = iter(dm.train_dataloader())
            b = next(it)
        loss = model(b).loss
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        tokens += int(b.valid.sum())
        seconds += time.perf_counter() - t0
        if step in budgets:
            row = {"arch": arch, "size": size, "label": a.label, "steps": step, "params": total, "non_embedding_params": non_emb,
                   "flops_per_token": per_token, "tokens": tokens, "train_flops": float(per_token) * tokens,
                   "train_loss": float(loss.item()), "seconds": round(seconds, 1)}
            for scen, vis in ev["visible"].items():
                probs = model_probs(model, ev["truth"], vis, ev["sites"], ev["positions"], ev["rows"],
                                    a.seq_len, 4 * a.batch_size)
                row |= {f"{scen} {k}": v for k, v in score(probs, ev["truth"], ~vis, ev["maf"]).items()}
            print(f"{arch} {size} step {step}: train loss {row['train_loss']:.4f} "
                  + " ".join(f"{s} {row[f'{s} concordance']:.4f}" for s in SCENARIOS)
                  + f" ({row['train_flops']:.3g} FLOPs, {seconds:.0f} s)", flush=True)
            rows.append(row)
    return rows


def plot(path: Path, curves: list[dict], baselines: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCENARIOS), figsize=(5 * len(SCENARIOS), 4), squeeze=False)
    for ax, scen in zip(axes[0], SCENARIOS):
        for (arch, size, label) in dict.fromkeys((r["arch"], r["size"], r.get("label", "")) for r in curves):
            pts = [r for r in curves if (r["arch"], r["size"], r.get("label", "")) == (arch, size, label)]
            ax.plot([r["train_flops"] for r in pts], [1 - r[f"{scen} concordance"] for r in pts],
                    "o-" if arch == "snpbag" else "s--", label=f"{arch} {size} {label}".strip())
        for b, style in zip(baselines, (":", "-.")):
            ax.axhline(1 - b[f"{scen} concordance"], color="grey", ls=style, label=b["method"])
        if scen in BEAGLE:
            ax.axhline(1 - BEAGLE[scen], color="black", ls="-", lw=0.8, label="Beagle 5.4 (docs/benchmarks.md)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training FLOPs")
        ax.set_ylabel("genotype error (1 - concordance)")
        ax.set_title(scen)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(curves: list[dict], baselines: list[dict], fit_rows: list[dict]) -> str:
    def fmt(v):
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) >= 1e4 or abs(v) < 1e-3 else f"{v:.4f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    def table(rows, cols):
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
        return "\n".join(lines)

    scen_cols = [f"{s} {m}" for s in SCENARIOS for m in ("concordance", "r2")]
    out = [table(baselines, ["method"] + scen_cols + ["random90 loss"]), "",
           table(curves, ["arch", "size"] + (["label"] if any(r.get("label") for r in curves) else [])
                 + ["non_embedding_params", "steps", "train_flops"] + scen_cols
                 + ["random90 loss", "seconds"]), ""]
    bin_cols = [c for c in curves[0] if c.startswith("array20 r2 ")] if curves else []
    out += [table(baselines + [r | {"method": f"{r['arch']} {r['size']} {r.get('label', '')} @{r['steps']}"} for r in curves],
                  ["method"] + bin_cols), ""]
    tcols = [c for c in fit_rows[0] if c.startswith("log10")] if fit_rows else []
    out.append(table([r for r in fit_rows if r["metric"] == "error" or r["size"] == "frontier"],
                     ["arch", "size", "scenario", "metric", "points", "exponent"] + tcols))
    return "\n".join(out) + "\n"


def report(a, *, curves: list[dict], baselines: list[dict], info: dict) -> None:
    """Fits, results JSON, PNG and Markdown of a study's curves."""
    copy_err = {s: 1 - baselines[1][f"{s} concordance"] for s in SCENARIOS}
    targets = {"copying model": copy_err, "Beagle": {s: 1 - v for s, v in BEAGLE.items()}}
    fit_rows = fits(curves, targets, a.mfu)
    path = _results.write(a.json, command="scaling", info=info,
                          results={"baselines": baselines, "curves": curves, "fits": fit_rows})
    png = a.png or path.with_suffix(".png")
    plot(png, curves, baselines)
    print(f"curves: {png}")
    print(markdown(curves, baselines, fit_rows))


def merge(a) -> None:
    import json

    parts = [json.loads(Path(p).read_text()) for p in a.merge]
    keys = ("store", "eval_genomes", "eval_sites", "seq_len")
    first = parts[0]["info"]
    for p, part in zip(a.merge, parts):
        if any(part["info"].get(k) != first.get(k) for k in keys):
            raise SystemExit(f"{p}: another store or evaluation than {a.merge[0]} ({keys}); only parts of one "
                             "study can be merged")
    curves = [r for part in parts for r in part["results"]["curves"]]
    info = dict(first, seconds=sum(part["info"].get("seconds") or 0 for part in parts),
                parts=[f"{p} ({part['commit']}, {part['date']}, load {part['machine'].get('load_1min')})"
                       for p, part in zip(a.merge, parts)])
    report(a, curves=curves, baselines=parts[0]["results"]["baselines"], info=info)


def main() -> None:
    a = parse()
    if a.merge:
        return merge(a)
    import torch

    torch.set_num_threads(a.threads)
    from snpbag.retrieval.haplotypes import HaplotypePanel
    from snpbag.store.genotypes import open_store

    t_start = time.time()
    store_path = cohort_store(a)
    store = open_store(str(store_path))
    vocab = store.vocab
    train_rows, val_rows = datamodule(a, store_path, 1).split()
    rows = val_rows[:a.eval_genomes]
    n_eval = min(a.eval_sites, vocab.tile_sites(0).stop - vocab.tile_sites(0).start)
    truth = store.read_dosage(0, rows, 0, n_eval)
    if (truth < 0).any():
        raise SystemExit(f"{store_path}: held-out genomes have missing calls; use a complete (simulated) store")
    sites = np.arange(vocab.tile_sites(0).start, vocab.tile_sites(0).start + n_eval)
    af = np.nan_to_num(np.asarray(vocab.af, dtype=np.float64)[sites])  # the training cohort's AF
    ev = {"truth": truth, "rows": rows, "sites": sites, "positions": np.asarray(vocab.position)[sites],
          "maf": np.minimum(af, 1 - af)}
    ev["visible"] = visible_masks(ev["maf"], rows.size, np.random.default_rng(a.seed))

    # baselines on the same held-out genomes, sequences and visible sites
    hwe = np.stack([(1 - af) ** 2, 2 * af * (1 - af), af ** 2], -1).astype(np.float32)
    panel = HaplotypePanel.from_store(store, train_rows, states=a.states, block=128, margin=64)
    baselines = []
    for method, probs_of in (("allele-frequency baseline", lambda vis: np.broadcast_to(hwe, truth.shape + (3,))),
                             ("copying model alone", lambda vis: copying_probs(panel, truth, vis, sites, a.seq_len))):
        row = {"method": method}
        for scen, vis in ev["visible"].items():
            row |= {f"{scen} {k}": v for k, v in score(probs_of(vis), truth, ~vis, ev["maf"]).items()}
        baselines.append(row)
        print(f"{method}: " + " ".join(f"{s} {row[f'{s} concordance']:.4f}" for s in SCENARIOS), flush=True)

    curves = []
    for size, lr in zip(a.sizes, a.lr):
        for arch in a.archs:
            curves += train_and_score(a, store, store_path, arch, size, lr, ev)
    info = {"store": str(store_path), "samples": store.n_samples, "train_samples": int(train_rows.size),
            "sites": vocab.n_sites, "eval_genomes": int(rows.size), "eval_sites": int(n_eval),
            "seq_len": a.seq_len, "batch_size": a.batch_size, "masking": f"{a.min_rate}-{a.max_rate}",
            "curriculum": (f"{a.start_min_rate}-{a.start_max_rate} over {a.curriculum:g} of each run"
                           if a.curriculum else None), "budgets": a.budgets,
            "head": {"site_rank": a.site_rank, "site_scale": a.site_scale} if a.site_rank else {},
            "schedule": a.schedule, "threads": a.threads, "mfu_assumed": a.mfu, "quick": a.quick,
            "seconds": round(time.time() - t_start, 1)}
    report(a, curves=curves, baselines=baselines, info=info)


if __name__ == "__main__":
    main()
