"""One-command GPU validation: run it on the first GPU you get, commit its Markdown.

    python tools/gpu_check.py                         # everything, into gpu_check/
    python tools/gpu_check.py --only backends tests   # a subset
    python tools/gpu_check.py --out /scratch/gc --tokens 32768

Checks (each independent; a failure is reported and the others still run):

* ``backends``: flash (if installed), compiled flex and local against the dense reference
  on CUDA, forward and backward, fp32 and bf16, lengths that are and are not multiples of the
  block, with right padding: max abs difference to an fp32 dense reference (relative to its
  largest value) per backend, dtype and length.
* ``throughput``: a training step (forward, backward, AdamW) of each ``--preset`` model (base
  and the published architecture, snpbag_paper) at ``--tokens`` tokens, bf16 autocast, with and without activation checkpointing, compiled and
  not: tokens/s, model FLOPs utilisation against the GPU's dense bf16 peak, peak memory.
* ``train``: ``--steps`` steps of the small preset on a simulated demo cohort on CUDA; the
  loss must fall, and a run stopped half-way and resumed must end where the straight run does.
* ``inference``: ``snpbag impute --device cuda`` against ``--device cpu`` (dosages within
  IMPUTE_TOL) and ``snpbag king --device cuda`` against CPU (byte-identical .kin0), samples/s.
* ``tests``: ``pytest -m gpu`` (every GPU-marked test of tests/).

Writes OUT/gpu_check.json and OUT/gpu_check.md. Exit status 1 naming the failed checks if
any fails; without CUDA it prints one line saying so and exits 0 (nothing to check).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CHECKS = ("backends", "throughput", "train", "inference", "tests")
#: dense bf16 tensor-core peaks (FLOP/s, no sparsity) by a substring of the device name
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}
#: max abs difference of imputed dosages between CUDA and CPU (bf16-free fp32 inference;
#: kernels sum in another order)
IMPUTE_TOL = 1e-3
#: max abs difference against the fp32 dense reference, over the largest reference value
BACKEND_TOL = {"fp32": 1e-3, "bf16": 2e-2}


@dataclass
class CheckResult:
    name: str
    ok: bool
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a GPU named ``device_name`` (None: not in PEAK_BF16)."""
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak (None without a peak)."""
    return tokens_per_s * flops_per_token / peak if peak else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu_check"), help="report directory (default gpu_check/)")
    p.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS), metavar="CHECK",
                   help=f"checks to run, of {', '.join(CHECKS)} (default: all)")
    p.add_argument("--preset", nargs="+", default=["base", "snpbag_paper"],
                   help="model presets of the throughput check (default base snpbag_paper)")
    p.add_argument("--tokens", type=int, default=81_920, help="sequence length of the throughput check")
    p.add_argument("--steps", type=int, default=200, help="training steps of the train check (even, >= 20)")
    a = p.parse_args(argv)
    if a.tokens < 1:
        p.error(f"--tokens {a.tokens}: must be a positive sequence length")
    if a.steps < 20 or a.steps % 2:
        p.error(f"--steps {a.steps}: must be an even number >= 20 (the resume check stops half-way)")
    return a


def run_checks(checks: dict[str, Callable[[argparse.Namespace], dict]], args: argparse.Namespace) -> list[CheckResult]:
    """Run each check; one that raises is a failed result with the exception's last line."""
    results = []
    for name, fn in checks.items():
        t = time.perf_counter()
        try:
            details = fn(args)
            ok, error = bool(details.pop("ok", True)), details.pop("error", None)
        except Exception as e:  # noqa: BLE001 - every failure is reported, the next check still runs
            traceback.print_exc()
            details, ok, error = {}, False, f"{type(e).__name__}: {e}".splitlines()[0]
        results.append(CheckResult(name, ok, round(time.perf_counter() - t, 1), details, error))
        print(f"gpu_check: {name}: {'ok' if ok else 'FAILED'} ({results[-1].seconds:.0f} s)", file=sys.stderr)
    return results


def render_markdown(results: list[CheckResult], env: dict[str, Any]) -> str:
    lines = ["# GPU check", "", " | ".join(f"{k}: {v}" for k, v in env.items()), "",
             "| check | result | seconds | error |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {'ok' if r.ok else 'FAILED'} | {r.seconds:.0f} | {r.error or ''} |" for r in results]
    for r in results:
        rows = r.details.get("rows")
        if rows:
            keys = list(rows[0])
            lines += ["", f"## {r.name}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_fmt(row.get(k)) for k in keys) + " |" for row in rows]
        other = {k: v for k, v in r.details.items() if k != "rows"}
        if other:
            lines += ["", f"## {r.name}" if not rows else "", *(f"- {k}: {_fmt(v)}" for k, v in other.items())]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def write_report(results: list[CheckResult], out: Path, env: dict[str, Any]) -> tuple[Path, Path]:
    """OUT/gpu_check.json (everything) and OUT/gpu_check.md (tables); returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "gpu_check.json", out / "gpu_check.md"
    js.write_text(json.dumps({"env": env, "results": [asdict(r) for r in results],
                              "ok": all(r.ok for r in results)}, indent=2, default=str))
    md.write_text(render_markdown(results, env))
    return js, md


def environment() -> dict[str, Any]:
    import torch

    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "host": platform.node(),
           "torch": torch.__version__, "cuda": torch.version.cuda}
    try:
        env["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                       text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        env["commit"] = "unknown"
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    try:
        import flash_attn

        env["flash_attn"] = flash_attn.__version__
    except ImportError:
        env["flash_attn"] = "not installed"
    return env


# --- the checks (CUDA only) -------------------------------------------------------------------


def check_backends(args: argparse.Namespace) -> dict:
    import torch

    from snpbag.model.attention import flash_available, plan_attention

    rows, ok = [], True
    backends = ["flex", "local"] + (["flash"] if flash_available() else [])
    for dtype_name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        for L in (1024, 1000, 300):
            g = torch.Generator(device="cuda").manual_seed(L)
            q, k, v = (torch.randn(3, L, 4, 64, device="cuda", generator=g, dtype=dtype) for _ in range(3))
            valid = torch.ones(3, L, dtype=torch.bool, device="cuda")
            valid[1, L // 2:] = False  # right padding
            w = torch.randn_like(q) * valid[:, :, None, None]

            def run(backend, dt):
                x = [t.detach().to(dt).requires_grad_() for t in (q, k, v)]
                out, _ = plan_attention(valid, window=128, backend=backend, block_size=128)(*x)
                out = out * valid[:, :, None, None]
                return [out.detach().float()] + [t.float() for t in torch.autograd.grad((out * w.to(dt)).sum(), x)]

            ref = run("dense", torch.float32)  # fp32 reference from the same (rounded) inputs
            for backend in backends:
                got = run(backend, dtype)
                # relative to the largest reference value; flash computes in bf16 whatever it is given
                diff = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item() for a, b in zip(got, ref))
                good = diff <= BACKEND_TOL["bf16" if backend == "flash" else dtype_name]
                ok &= good
                rows.append({"backend": backend, "dtype": dtype_name, "L": L, "max_rel_diff": diff, "ok": good})
    return {"ok": ok, "rows": rows, "tolerance": BACKEND_TOL}


def check_throughput(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    from snpbag.config import preset
    from snpbag.data.batch import collate
    from snpbag.data.tokens import IGNORE_INDEX, MASK
    from snpbag.model import build_model
    from snpbag.model.flops import model_flops_per_token

    L, peak = args.tokens, peak_flops(torch.cuda.get_device_name(0))
    rng = np.random.default_rng(0)
    truth, masked = rng.integers(0, 3, L), rng.random(L) < 0.9
    batch = collate([dict(genotype=np.where(masked, MASK, truth), site_index=np.arange(L),
                          position=np.cumsum(rng.integers(1, 500, L)), target=np.where(masked, truth, IGNORE_INDEX),
                          tile=0, sample=0, offset=0)]).to("cuda")
    rows = []
    # one row per preset x checkpointing x compilation
    for name, checkpointing, compiled in ((n, c, k) for n in args.preset for c in (False, True) for k in (False, True)):
        cfg = preset(name, n_sites=L, activation_checkpointing=checkpointing, compile=compiled)
        row = {"preset": name, "checkpointing": checkpointing, "compiled": compiled}
        try:
            model = build_model(cfg).cuda().train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(5):  # two warm-up steps (compilation), three timed
                torch.cuda.synchronize()
                t = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(batch).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            tps = L / (sum(times[2:]) / 3)
            row |= {"tokens_per_s": tps, "mfu": mfu(tps, model_flops_per_token(cfg), peak),
                    "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}
        except torch.OutOfMemoryError:
            row |= {"tokens_per_s": None, "mfu": None, "peak_mem_gib": "out of memory"}
        finally:
            model = opt = None
            torch.cuda.empty_cache()
        rows.append(row)
    # without checkpointing a model may not fit; with it, it must
    ok = all(r["tokens_per_s"] for r in rows if r["checkpointing"])
    return {"ok": ok, "rows": rows, "presets": args.preset, "tokens": L, "peak_flops": peak}


def _demo_data(work: Path) -> tuple[Path, Path]:
    """A small simulated cohort (reference VCF, array targets) and its store, cached in ``work``."""
    from snpbag.simulate.cohort import simulate
    from snpbag.store.convert import convert

    sim, store = work / "sim", work / "cohort.zarr"
    if not (sim / "simulation.json").exists():
        simulate(sim, samples_per_pop=150, length=1_000_000, seed=1, array_fraction=0.2, split_targets=40)
    if not store.exists():
        convert(sim / "reference.vcf.gz", store, tile_len=2048)
    return sim, store


def _train_losses(run_dir: Path) -> dict[int, float]:
    import csv

    from snpbag.train import rundir

    with open(rundir.metrics_csv(run_dir), newline="") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def train_overrides(store: Path, *, steps: int) -> list[str]:
    """The demo experiment with the small preset on one GPU, validated and checkpointed half-way."""
    return ["experiment=pretrain_demo", f"data.store={store}", "model=small", "trainer=gpu", "trainer.devices=1",
            "trainer.strategy=auto", "trainer.log_every_n_steps=1", f"trainer.val_check_interval={steps // 2}",
            "trainer.enable_progress_bar=false", "logger=none", f"callbacks.checkpoint.every_n_steps={steps // 2}",
            f"scheduler.total_steps={steps}"]


def check_train(args: argparse.Namespace) -> dict:
    from snpbag.train.export import export
    from snpbag.train.run import train

    work = args.out / "work"
    _, store = _demo_data(work)
    common = train_overrides(store, steps=args.steps)
    t = time.perf_counter()
    full = train([*common, f"paths.run_dir={work / 'full'}", f"trainer.max_steps={args.steps}"])
    seconds = time.perf_counter() - t
    split = work / "split"
    train([*common, f"paths.run_dir={split}", f"trainer.max_steps={args.steps // 2}"])
    train([*common, f"paths.run_dir={split}", f"trainer.max_steps={args.steps}", "resume=true"])
    a, b = _train_losses(full), _train_losses(split)
    n = max(10, args.steps // 10)
    first, last = sum(a[s] for s in sorted(a)[:n]) / n, sum(a[s] for s in sorted(a)[-n:]) / n
    resumed = [s for s in sorted(a) if s > args.steps // 2 and s in b]
    resume_diff = max(abs(a[s] - b[s]) for s in resumed) if resumed else float("inf")
    export(full, work / "model")
    # GPU kernels are not bitwise deterministic (atomics in attention backward): a tolerance
    return {"ok": last < 0.9 * first and resume_diff < 1e-2, "loss_first": first, "loss_last": last,
            "resume_max_loss_diff": resume_diff, "steps_per_s": args.steps / seconds}


def check_inference(args: argparse.Namespace) -> dict:
    from snpbag.eval.compare import read_dosages, read_truth
    from snpbag.inference.impute import impute
    from snpbag.kinship.king import king

    work = args.out / "work"
    sim, _ = _demo_data(work)
    model = work / "model"
    if not model.exists():
        raise RuntimeError(f"{model}: no model; run the train check first (--only train inference)")
    keys, _, samples = read_truth(sim / "targets.vcf.gz")
    out, ds = {}, {}
    for device in ("cpu", "cuda"):
        vcf = work / f"imputed_{device}.vcf.gz"
        summary = impute(model=model, input=sim / "targets_array.vcf.gz", output=vcf, device=device, progress=False)
        ds[device], _ = read_dosages(vcf, samples, keys)
        out[f"impute_{device}_samples_per_s"] = summary.samples_per_second
        t = time.perf_counter()
        king(sim / "reference.vcf.gz", out=work / f"king_{device}", device=device)
        out[f"king_{device}_s"] = time.perf_counter() - t
    import numpy as np

    diff = float(np.nanmax(np.abs(ds["cuda"] - ds["cpu"])))
    same_kin0 = (work / "king_cpu.kin0").read_bytes() == (work / "king_cuda.kin0").read_bytes()
    return {"ok": diff <= IMPUTE_TOL and same_kin0, "impute_max_dosage_diff": diff, "impute_tol": IMPUTE_TOL,
            "king_kin0_identical": same_kin0, **out}


def check_tests(args: argparse.Namespace) -> dict:
    # tests/test_gpu_check.py runs this tool: left out, or it would run itself
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           "--ignore=tests/test_gpu_check.py", "tests"],
                          cwd=REPO, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    return {"ok": proc.returncode == 0, "pytest": summary,
            **({"error": f"pytest -m gpu exited {proc.returncode}: {summary}"} if proc.returncode else {})}


CHECK_FUNCTIONS = {"backends": check_backends, "throughput": check_throughput, "train": check_train,
                   "inference": check_inference, "tests": check_tests}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: skipped: no CUDA device visible to torch {torch.__version__}")
        return 0
    results = run_checks({n: CHECK_FUNCTIONS[n] for n in CHECKS if n in args.only}, args)
    js, md = write_report(results, args.out, environment())
    failed = [r.name for r in results if not r.ok]
    print(f"gpu_check: wrote {js} and {md}", file=sys.stderr)
    if failed:
        print(f"gpu_check: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
