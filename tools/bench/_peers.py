"""What the peer benchmarks (impute_vs_peers.py, phase_vs_peers.py) share: one simulated cohort
per work directory, unphased target inputs made from the truth, and timed peer runs.

Every peer command runs under ``/usr/bin/time -v`` so wall time, CPU time (user + sys, all
threads) and peak resident memory are measured the same way for every tool.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from snpbag.eval.compare import read_truth
from snpbag.io.bgzf import write_vcf_bgzf


def sh(cmd: list[str], *, log: Path, stdout: Path | None = None) -> dict:
    """Run a command under /usr/bin/time -v; return wall and CPU seconds (user + system, and
    each), peak RSS (MiB) and the machine's 1-minute load average (mean of start and end:
    under load, wall time is an upper bound)."""
    full = ["/usr/bin/time", "-v"] + cmd if Path("/usr/bin/time").exists() else cmd
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "w") as err, (open(stdout, "wb") if stdout else open(log.with_suffix(".out"), "wb")) as out:
        rc = subprocess.run(full, stdout=out, stderr=err).returncode
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    if rc:
        raise SystemExit(f"failed ({rc}): {shlex.join(cmd)}; see {log}")

    def field(name: str) -> float:
        m = re.search(rf"{re.escape(name)}: ([\d.]+)", text)
        return float(m.group(1)) if m else float("nan")

    user, system = field("User time (seconds)"), field("System time (seconds)")
    return {"wall_s": wall, "cpu_s": user + system, "user_s": user, "sys_s": system,
            "peak_mib": field("Maximum resident set size (kbytes)") / 1024,
            "load_1min": round((load0 + os.getloadavg()[0]) / 2, 1), "cmd": shlex.join(cmd)}


def simulate(sim: Path, *, samples_per_pop: int, length: int, targets: int, seed: int,
             array_fraction: float | None = None, demography: str = "ooa", recombination: str = "uniform") -> Path:
    """``snpbag simulate`` into ``sim`` unless it holds a simulation already (inputs are cached)."""
    if (sim / "reference.vcf.gz").exists():
        return sim
    cmd = [sys.executable, "-m", "snpbag.cli", "simulate", str(sim), "--samples-per-pop", str(samples_per_pop),
           "--length", str(length), "--split-targets", str(targets), "--seed", str(seed)]
    if array_fraction is not None:
        cmd += ["--array-fraction", str(array_fraction)]
    if demography != "ooa":
        cmd += ["--demography", demography]
    if recombination != "uniform":
        cmd += ["--recombination", recombination]
    sim.parent.mkdir(parents=True, exist_ok=True)
    print("simulating:", shlex.join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    return sim


def array_sites(sim: Path) -> list[tuple[str, int, str, str]]:
    """The simulation's array sites (array_sites.tsv), in genome order."""
    rows = [line.split("\t")[:4] for line in (sim / "array_sites.tsv").read_text().splitlines()[1:]]
    return [(c, int(p), r, a) for c, p, r, a in rows]


def reference_af(ref_vcf: Path, keys) -> np.ndarray:
    """The reference panel's ALT frequency at each of ``keys`` (NaN off the panel): the
    imputation benchmarks bin sites by its minor-allele frequency, evaluate above 1 % and
    predict with it (the AF baseline)."""
    rkeys, rdos, _ = read_truth(ref_vcf)
    rix = {k: i for i, k in enumerate(rkeys)}
    ref_af = np.where(rdos >= 0, rdos, 0).sum(1) / (2.0 * (rdos >= 0).sum(1).clip(1))
    af = np.array([ref_af[rix[k]] if k in rix else np.nan for k in keys])
    return af


def populations(sim: Path) -> dict[str, str]:
    """Sample -> population, from the simulation's samples.tsv."""
    return dict(line.split("\t")[:2] for line in (sim / "samples.tsv").read_text().splitlines()[1:])


def unphased_input(truth_vcf: Path, out: Path, *, sites: set | None = None, error_rate: float = 0.0,
                   seed: int = 0) -> None:
    """Targets as a phaser or imputer receives them: unphased GT (``a/b``, alleles sorted),
    only ``sites`` (default: all), with genotype errors at ``error_rate``."""
    from cyvcf2 import VCF

    rng = np.random.default_rng(seed)
    vcf = VCF(str(truth_vcf), threads=1)
    header = vcf.raw_header

    def lines():
        yield header
        for v in vcf:
            if sites is not None and (v.CHROM, v.POS, v.REF, v.ALT[0]) not in sites:
                continue
            g = v.genotype.array()[:, :2].copy()
            if error_rate:
                err = rng.random(len(g)) < error_rate
                # an error replaces the genotype by one of the two others
                dose = g.sum(1)
                new = (dose + rng.integers(1, 3, len(g))) % 3
                g[err] = np.stack([new[err] >= 1, new[err] == 2], 1).astype(g.dtype)
            gts = [f"{min(a, b)}/{max(a, b)}" for a, b in g]  # unphased, as array calls are
            fields = str(v).rstrip("\n").split("\t")[:9]
            fields[8] = "GT"
            yield "\t".join(fields + gts) + "\n"

    write_vcf_bgzf(lines(), out)
