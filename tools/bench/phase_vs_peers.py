"""Phasing: snpbag vs SHAPEIT4, Beagle 5.4 and Eagle2 on the same simulated targets.

Two simulations (``snpbag simulate``, cached under ``--workdir``): the out-of-Africa model
(YRI, CEU, CHB) and the American admixture model (AFR, EUR, ASIA and the admixed ADMIX),
each with ``--targets`` held-out genomes (evenly across populations) and the rest as a
phased reference panel. Targets are given unphased (``a/b``) in four settings:

    a  full density, with the panel          c  array density (``--array-fraction`` of the
    b  full density, cohort only                common sites), with the panel
                                             d  admixed targets, full density, with the panel

Every tool gets the same threads and the simulation's recombination map (uniform, written
in each tool's format). Scored by snpbag.eval.phase against the true haplotypes: switch
error rate (SER) pooled and per population, flips (single-site switch pairs) apart, input
genotypes changed; wall, CPU (user + sys) and peak memory from /usr/bin/time -v.

    python tools/bench/phase_vs_peers.py --workdir /tmp/phasebench --threads 2
    python tools/bench/phase_vs_peers.py --workdir /tmp/pq --quick --tools beagle

Peers are the Debian packages ``shapeit4`` (``--sequencing`` at full density, as its
documentation advises for sequence data), ``beagle`` (5.4, ``impute=false``) and
``bio-eagle`` (Eagle 2.4). snpbag rows run ``snpbag phase`` when the checkout has it (else
a row says "not available"): the copying model alone (``--ref`` panel, or the cohort in
setting b) and, with ``--snpbag-model``, the encoder head (``--model``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from snpbag.eval.phase import score_phasing
from snpbag.io.bgzf import index_vcf
from snpbag.simulate.coalescent import RECOMBINATION_RATE

import _results
import make_tables
from _peers import array_sites, populations, sh, simulate, unphased_input


@dataclass(frozen=True)
class Setting:
    name: str
    label: str
    demography: str
    array: bool
    panel: bool


SETTINGS = {s.name: s for s in (
    Setting("a", "full density, panel", "ooa", array=False, panel=True),
    Setting("b", "full density, cohort only", "ooa", array=False, panel=False),
    Setting("c", "array density, panel", "ooa", array=True, panel=True),
    Setting("d", "admixed targets, full density, panel", "admixed", array=False, panel=True),
)}
PEERS = {"shapeit4": "SHAPEIT4", "beagle": "Beagle 5.4", "eagle": "Eagle2"}
#: snpbag rows: the copying model as ``snpbag phase`` runs it by default, the pair model with
#: the named state selection (``--phasing-model pair --state-selection``), the default with a
#: model's panel, and the encoder head.
SNPBAG = {"copying": "snpbag (copying model)", "copying_conflicts": "snpbag (pair copying model, conflicts states)",
          "copying_composite": "snpbag (pair copying model, composite states)",
          "model-copying": "snpbag (copying model, model panel)", "encoder": "snpbag (encoder head)"}
EAGLE = ("eagle", "bio-eagle")  # Debian's bio-eagle installs it under the second name
QUICK = {"samples_per_pop": 60, "length": 1_000_000, "targets": 30}
MAP_STEP = 100_000  # bp between map points (the map is uniform; points only bound the region)


def write_maps(directory: Path, *, chrom: str, length: int) -> dict[str, Path]:
    """The simulation's uniform map in the three formats: PLINK (Beagle, snpbag), SHAPEIT4's
    ``pos chr cM`` and Eagle's ``chr position rate(cM/Mb) cM``."""
    directory.mkdir(parents=True, exist_ok=True)
    bp = np.arange(0, length + MAP_STEP, MAP_STEP)
    bp[0] = 1
    cm = bp * RECOMBINATION_RATE * 100
    rate = RECOMBINATION_RATE * 1e8  # cM per Mb
    maps = {"plink": directory / "map.plink", "shapeit4": directory / "map.shapeit4.txt",
            "eagle": directory / "map.eagle.txt"}
    maps["plink"].write_text("".join(f"{chrom}\t.\t{c:.8f}\t{b}\n" for b, c in zip(bp, cm)))
    maps["shapeit4"].write_text("pos\tchr\tcM\n" + "".join(f"{b}\t{chrom}\t{c:.8f}\n" for b, c in zip(bp, cm)))
    maps["eagle"].write_text("chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n"
                             + "".join(f"{chrom} {b} {rate:g} {c:.8f}\n" for b, c in zip(bp, cm)))
    return maps


def peer_command(tool: str, *, given: Path, ref: Path | None, maps: dict[str, Path], out: Path, chrom: str,
                 threads: int, seed: int, sequencing: bool) -> tuple[list[str], Path]:
    """(command line, phased VCF it writes) of one peer."""
    if tool == "beagle":
        cmd = ["beagle", f"gt={given}", f"map={maps['plink']}", f"out={out}", f"nthreads={threads}", f"seed={seed}",
               "impute=false"] + ([f"ref={ref}"] if ref else [])
        return cmd, out.with_name(out.name + ".vcf.gz")
    if tool == "shapeit4":
        cmd = ["shapeit4", "--input", str(given), "--map", str(maps["shapeit4"]), "--region", chrom,
               "--output", f"{out}.vcf.gz", "--thread", str(threads), "--seed", str(seed), "--log", f"{out}.log"]
        cmd += (["--reference", str(ref)] if ref else []) + (["--sequencing"] if sequencing else [])
        return cmd, out.with_name(out.name + ".vcf.gz")
    if tool == "eagle":
        exe = next((e for e in EAGLE if shutil.which(e)), EAGLE[0])
        cmd = [exe, f"--geneticMapFile={maps['eagle']}", f"--outPrefix={out}", f"--numThreads={threads}",
               "--vcfOutFormat=z"]
        cmd += [f"--vcfRef={ref}", f"--vcfTarget={given}", "--allowRefAltSwap"] if ref else [f"--vcf={given}"]
        return cmd, out.with_name(out.name + ".vcf.gz")
    raise ValueError(tool)




def has_peer(tool: str) -> bool:
    return any(shutil.which(e) for e in EAGLE) if tool == "eagle" else bool(shutil.which(tool))


def snpbag_phase_available() -> bool:
    """Whether this checkout's CLI has ``snpbag phase``."""
    return subprocess.run([sys.executable, "-m", "snpbag.cli", "phase", "--help"],
                          capture_output=True).returncode == 0


def snpbag_command(*, given: Path, ref: Path | None, model: Path | None, maps: dict[str, Path], out: Path,
                   threads: int, seed: int, copying_only: bool = False,
                   selection: str | None = None) -> tuple[list[str], Path]:
    cmd = [sys.executable, "-m", "snpbag.cli", "phase", "--input", str(given), "--output", f"{out}.vcf.gz",
           "--map", str(maps["plink"]), "--threads", str(threads), "--seed", str(seed)]
    cmd += ["--phasing-model", "pair", "--state-selection", selection] if selection else []
    cmd += ["--model", str(model)] if model else (["--ref", str(ref)] if ref else [])
    cmd += ["--copying-only"] if model and copying_only else []
    return cmd, out.with_name(out.name + ".vcf.gz")


def prepare(setting: Setting, *, sim: Path, wd: Path) -> Path:
    """The unphased input of ``setting`` (cached, indexed)."""
    given = wd / setting.name / "input.vcf.gz"
    if not given.exists():
        given.parent.mkdir(parents=True, exist_ok=True)
        unphased_input(sim / "targets.vcf.gz", given, sites=set(array_sites(sim)) if setting.array else None)
        index_vcf(given, overwrite=True)
    return given


def scored(tool: str, *, truth: Path, estimate: Path, given: Path, groups: dict[str, str], timing: dict) -> dict:
    """One row of results: the scores of snpbag.eval.phase plus the timing."""
    return {"tool": tool, "status": "ok", **timing,
            **score_phasing(truth, estimate, given=given, groups=groups)}


def run_setting(setting: Setting, *, sim: Path, wd: Path, tools: list[str], threads: int, seed: int,
                model: Path | None, maps: dict[str, Path]) -> dict:
    given = prepare(setting, sim=sim, wd=wd)
    sd = given.parent
    truth, ref = sim / "targets.vcf.gz", (sim / "reference.vcf.gz" if setting.panel else None)
    groups = populations(sim)
    chrom = _chrom(sim)
    res = {"setting": setting.name, "label": setting.label, "tools": []}
    for tool in tools:
        if tool in PEERS:
            if not has_peer(tool):
                res["tools"].append({"tool": PEERS[tool], "status": "not installed"})
                continue
            cmd, out = peer_command(tool, given=given, ref=ref, maps=maps, out=sd / tool, chrom=chrom,
                                    threads=threads, seed=seed, sequencing=not setting.array)
            print(f"[{setting.name}] {PEERS[tool]}", file=sys.stderr)
            t = sh(cmd, log=sd / f"{tool}.time")
            res["tools"].append(scored(PEERS[tool], truth=truth, estimate=out, given=given, groups=groups, timing=t))
        elif tool in SNPBAG:
            name = SNPBAG[tool]
            selection = tool.split("_", 1)[1] if tool.startswith("copying_") else None
            if not tool.startswith("copying") and (model is None or not setting.panel):
                continue
            if not snpbag_phase_available():
                res["tools"].append({"tool": name, "status": "not available (no `snpbag phase` on this commit)"})
                continue
            cmd, out = snpbag_command(given=given, ref=ref, model=None if tool.startswith("copying") else model,
                                      maps=maps, out=sd / f"snpbag_{tool}", threads=threads, seed=seed,
                                      copying_only=tool == "model-copying", selection=selection)
            for p in (out, Path(f"{out}.tbi"), Path(f"{out}.csi")):
                p.unlink(missing_ok=True)
            print(f"[{setting.name}] {name}", file=sys.stderr)
            t = sh(cmd, log=sd / f"snpbag_{tool}.time")
            res["tools"].append(scored(name, truth=truth, estimate=out, given=given, groups=groups, timing=t))
        else:
            raise SystemExit(f"--tools: unknown tool {tool!r} (choose from {', '.join([*PEERS, *SNPBAG])})")
    return res


def _chrom(sim: Path) -> str:
    """The simulated chromosome's name (one per simulation here)."""
    return next(iter(json.loads((sim / "simulation.json").read_text())["chromosomes"]))


def tables(results: list[dict]) -> dict[str, list[dict]]:
    """Flat rows for tools/bench/make_tables.py: one per setting and tool, pooled and per population."""
    phasing, per_pop = [], []
    for res in results:
        for t in res["tools"]:
            base = {"setting": f"{res['setting']}: {res['label']}", "tool": t["tool"]}
            if t.get("status") != "ok":
                phasing.append(base | {"status": t["status"]})
                continue
            rows = {r["group"]: r for r in t["rows"]}
            a, g = rows["all"], t.get("genotypes", {})
            phasing.append(base | {
                "SER %": 100 * a["ser"], "switches": a["switches"], "flips": a["flips"],
                "switches outside flips": a["switches_outside_flips"], "het pairs": a["opportunities"],
                "genotypes changed": g.get("changed"), "unscored hets": sum(t["excluded"].values()),
                "wall s": t["wall_s"], "CPU s": t["cpu_s"], "peak MiB": t["peak_mib"]})
            per_pop.append(base | {f"SER % {k}": 100 * r["ser"] for k, r in rows.items() if k != "all"}
                           | {f"flips {k}": r["flips"] for k, r in rows.items() if k != "all"})
    return {"phasing": phasing, "per_population": per_pop}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--samples-per-pop", type=int, default=934, help="out-of-Africa model (3 populations)")
    ap.add_argument("--admixed-samples-per-pop", type=int, default=700, help="admixture model (4 populations)")
    ap.add_argument("--length", type=int, default=10_000_000)
    ap.add_argument("--targets", type=int, default=200)
    ap.add_argument("--array-fraction", type=float, default=0.2)
    ap.add_argument("--settings", default="a,b,c,d")
    ap.add_argument("--tools", default="shapeit4,beagle,eagle,copying,encoder",
                    help="copying: `snpbag phase --ref` (the copying model; copying_conflicts / "
                         "copying_composite: with that --state-selection); encoder: `--model` with "
                         "--snpbag-model (copying model + phasing head); model-copying: the same model's "
                         "panel with --copying-only (the head's own baseline)")
    ap.add_argument("--snpbag-model", type=Path, default=None, help="model directory with a phasing head")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke-run size: {QUICK['samples_per_pop']} per population, {QUICK['length']:,} bp, "
                         f"{QUICK['targets']} targets")
    _results.add_json_option(ap)
    args = ap.parse_args(argv)
    if args.quick:
        args.samples_per_pop = args.admixed_samples_per_pop = QUICK["samples_per_pop"]
        args.length, args.targets = QUICK["length"], QUICK["targets"]
    settings = [SETTINGS[s] for s in args.settings.split(",")]
    tools = [t for t in args.tools.split(",") if t]
    path, results, info = None, [], {"threads": args.threads, "length_bp": args.length, "targets": args.targets}
    for demography in dict.fromkeys(s.demography for s in settings):
        per_pop = args.samples_per_pop if demography == "ooa" else args.admixed_samples_per_pop
        sim = simulate(args.workdir / demography / "sim", samples_per_pop=per_pop, length=args.length,
                       targets=args.targets, seed=args.seed, demography=demography,
                       array_fraction=args.array_fraction if demography == "ooa" else None)
        maps = write_maps(args.workdir / demography / "maps", chrom=_chrom(sim), length=args.length)
        pops = populations(sim)
        info[f"{demography} reference genomes"] = sum(1 for s in pops if s not in _targets(sim))
        for s in settings:
            if s.demography == demography:
                results.append(run_setting(s, sim=sim, wd=args.workdir / demography, tools=tools,
                                           threads=args.threads, seed=args.seed, model=args.snpbag_model, maps=maps))
                # written after every setting, so a long run that is stopped keeps what it measured
                path = _results.write(args.json or path, command="phase_vs_peers", argv=argv,
                                      results=tables(results), info=info, detail={"settings": results})
    print(make_tables.render(make_tables.load(path)))
    return 0


def _targets(sim: Path) -> set[str]:
    return {line.split("\t")[0] for line in (sim / "samples.tsv").read_text().splitlines()[1:]
            if line.rstrip("\n").endswith("\ttarget")}


if __name__ == "__main__":
    sys.exit(main())
