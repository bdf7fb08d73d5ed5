"""``snpbag impute`` end to end through the CLI, and imputation fine-tuning (task=impute).

One tiny simulated cohort (msprime, 3 x 14 genomes on 150 kb, 6 held-out targets, 30 % of
sites on an "array") is converted; a tiny model is pretrained for a few steps and
exported, then fine-tuned with ``task=impute`` (array masking, haplotype mosaics) and
exported again. The imputation tests run a noisy copy of the fine-tuned model (see
_noisy_copy) on the targets' array genotypes, with a few calls set missing, through
``snpbag impute`` and read the VCF as text, with bcftools and with plink2. They check the
plumbing and the output contract of docs/imputation.md, not accuracy.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import requires_tool

from snpbag.cli import main

from tiny_data import TINY_TRAIN as TRAIN

torch.set_num_threads(1)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "configs" / "experiment"



def cli(*args, ok: bool = True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, (result.output, result.exception)
    return result


# --- the cohort and the models ----------------------------------------------------------------


@dataclass
class Cohort:
    dir: Path
    sim: Path
    store: Path
    array_sites: Path
    base: Path  # targets_array as plain VCF text, a few typed calls set missing
    missing: set  # (pos, sample index) of those calls


def _vcf_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt") as f:
        return f.read().splitlines()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    d = tmp_path_factory.mktemp("impute")
    sim = d / "sim"
    cli("simulate", sim, "--samples-per-pop", 14, "--length", 150_000, "--split-targets", 6,
        "--array-fraction", 0.3, "--seed", 2)
    store = d / "ref.zarr"
    cli("convert", sim / "reference.vcf.gz", store, "--tile-len", 128, "--threads", 1)
    lines = _vcf_lines(sim / "targets_array.vcf.gz")
    missing = set()
    out = []
    k = 0
    for ln in lines:
        if not ln.startswith("#"):
            f = ln.split("\t")
            k += 1
            if k % 7 == 3:  # one missing call every 7th typed site, rotating over the samples
                s = (k // 7) % (len(f) - 9)
                f[9 + s] = "./."
                missing.add((int(f[1]), s))
                ln = "\t".join(f)
        out.append(ln)
    base = d / "base.vcf"
    base.write_text("\n".join(out) + "\n")
    return Cohort(d, sim, store, sim / "array_sites.tsv", base, missing)


def _finetune_overrides(cohort: Cohort, pre: Path, run_dir: Path | None = None) -> list[str]:
    return [f"data.store={cohort.store}", *TRAIN, "task=impute", f"task.init_from={pre}",
            f"masking.array_sites={cohort.array_sites}", *([f"paths.run_dir={run_dir}"] if run_dir else [])]


@pytest.fixture(scope="module")
def models(cohort) -> dict[str, Path]:
    d = cohort.dir
    cli("train", f"data.store={cohort.store}", f"paths.run_dir={d / 'run_pre'}", *TRAIN)
    cli("export", d / "run_pre", d / "model_pre")
    cli("train", *_finetune_overrides(cohort, d / "model_pre", d / "run_ft"))
    cli("export", d / "run_ft", d / "model_ft")
    return {"pre": d / "model_pre", "ft": d / "model_ft", "imp": _noisy_copy(d / "model_ft", d / "model_noisy")}


def _noisy_copy(src: Path, dst: Path) -> Path:
    """The fine-tuned model with noise added to its weight matrices. A few steps on 36
    genomes leave the model at its allele-frequency prior (every sample gets the same GP to
    3 decimals, R2 = 0), which would let wrong genotype handling pass unnoticed; with the
    noise, what the model predicts depends on every input genotype."""
    from snpbag import modeldir

    loaded = modeldir.read(src)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in loaded.model.parameters():
            if p.dim() == 2:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    modeldir.save_model(loaded.model, dst)
    modeldir.save_vocab(loaded.vocab, dst)
    return dst


# --- reading the output ----------------------------------------------------------------------------


@dataclass
class Vcf:
    header: list[str]
    samples: list[str]
    rows: list[list[str]]  # the 9 fixed columns + one field per sample

    @property
    def pos(self) -> np.ndarray:
        return np.array([int(r[1]) for r in self.rows])

    def info(self, row: list[str]) -> dict[str, str | bool]:
        return {k: (v[0] if v else True) for k, *v in (x.split("=", 1) for x in row[7].split(";"))}

    def field(self, name: str) -> list[list[str]]:
        """FORMAT field ``name`` of every row, as text (rows x samples)."""
        out = []
        for r in self.rows:
            i = r[8].split(":").index(name)
            out.append([s.split(":")[i] for s in r[9:]])
        return out

    def milli(self, name: str) -> np.ndarray:
        """DS (rows, samples) or GP (rows, samples, 3) in integer thousandths."""
        vals = [[[round(float(x) * 1000) for x in s.split(",")] for s in r] for r in self.field(name)]
        a = np.array(vals, dtype=np.int64)
        return a[..., 0] if name == "DS" else a


def read_vcf(path: Path) -> Vcf:
    lines = _vcf_lines(path)
    header = [ln for ln in lines if ln.startswith("##")]
    cols = next(ln for ln in lines if ln.startswith("#CHROM")).split("\t")
    return Vcf(header, cols[9:], [ln.split("\t") for ln in lines if not ln.startswith("#")])


def read_input(path: Path) -> tuple[dict[int, tuple[str, str]], dict[int, list[str]]]:
    """(pos -> (ref, alt), pos -> GT strings) of a plain-text input VCF."""
    alleles, gts = {}, {}
    for ln in path.read_text().splitlines():
        if not ln.startswith("#"):
            f = ln.split("\t")
            alleles[int(f[1])] = (f[3], f[4])
            gts[int(f[1])] = f[9:]
    return alleles, gts


def read_vcf_samples(path: Path) -> list[str]:
    return next(ln for ln in path.read_text().splitlines() if ln.startswith("#CHROM")).split("\t")[9:]


def dosage(gt: str) -> int:
    a = re.split(r"[/|]", gt)
    return -1 if "." in a else int(a[0]) + int(a[1])


def impute(cohort: Cohort, models, name: str, *extra, input: Path | None = None, model: str = "imp", ok=True):
    out = cohort.dir / "out" / name
    out.mkdir(parents=True, exist_ok=True)
    result = cli("impute", "--model", models[model], "--input", input or cohort.base, "--output",
                 out / "imputed.vcf.gz", "--batch-size", 4, *extra, ok=ok)
    return out / "imputed.vcf.gz", result


@pytest.fixture(scope="module")
def default(cohort, models) -> tuple[Path, Vcf, str]:
    path, result = impute(cohort, models, "default")
    return path, read_vcf(path), result.output


# --- fine-tuning --------------------------------------------------------------------------------


def test_finetune_starts_from_the_pretrained_model(cohort, models):
    """task=impute from an exported model: the run's model at step 0 is the pretrained one
    (encoder and, same head name, head), training moves it, and the exported model records
    where it came from and how it was trained."""
    from snpbag.api import load_model
    from snpbag.store.genotypes import open_store
    from snpbag.train.run import compose_config, model_for_run, to_train_config

    pre = load_model(models["pre"]).model
    cfg = to_train_config(compose_config(_finetune_overrides(cohort, models["pre"])))
    step0 = model_for_run(cfg, open_store(cohort.store).vocab)
    assert step0.head_name == pre.head_name == "genotype"
    for k, v in pre.state_dict().items():
        assert torch.equal(step0.state_dict()[k], v), k

    ft = load_model(models["ft"])
    moved = [k for k, v in pre.encoder.state_dict().items() if not torch.equal(ft.model.encoder.state_dict()[k], v)]
    assert moved, "fine-tuning left every encoder weight unchanged"
    t = ft.training
    assert t["init_from"] == str(models["pre"]) and t["global_step"] > 0
    assert t["config"]["task"]["name"] == "impute"
    assert t["data"]["masking"]["array"] == 0.9 and t["data"]["masking"]["random"] == 0.1
    assert t["data"]["masking"]["array_sites"] == str(cohort.array_sites)
    assert t["data"]["augment"] is not None and t["config"]["data"]["augment"]["enabled"] is True
    assert ft.vocab == load_model(models["pre"]).vocab


def test_task_impute_needs_the_array_sites():
    from snpbag.errors import ConfigError
    from snpbag.train.run import compose_config, to_train_config

    with pytest.raises(ConfigError, match=r"masking.array=0.9 needs masking.array_sites=FILE"):
        to_train_config(compose_config(["task=impute", "data.store=x"]))
    cfg = to_train_config(compose_config(["task=impute", "data.store=x", "masking.array_sites=a.tsv",
                                          "masking.random=0", "data.augment.enabled=false"]))
    assert cfg.masking.random == 0 and cfg.masking.array == 0.9 and not cfg.data.augment.enabled


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("impute_*.yaml")))
def test_impute_experiments_instantiate(name, cohort, models):
    """Each impute_* experiment builds its data (array masks, augmentation) and loads the
    pretrained model with the experiment's runtime fields."""
    from snpbag.train.run import build_datamodule, compose_config, model_for_run, to_train_config

    cfg = to_train_config(compose_config([
        f"experiment={name}", f"data.store={cohort.store}", f"task.init_from={models['pre']}",
        f"masking.array_sites={cohort.array_sites}", "data.num_workers=0", "data.persistent_workers=false"]))
    assert cfg.task.name == "impute" and cfg.masking.array > 0 and cfg.data.augment.enabled
    dm = build_datamodule(cfg)
    dm.setup("fit")
    model = model_for_run(cfg, dm.store.vocab)
    assert model.config.window == cfg.model.window and model.config.d_model == 32  # architecture from init_from
    if cfg.trainer.accelerator == "cpu":
        batch = next(iter(dm.train_dataloader()))
        assert torch.isfinite(model(batch).loss)


# --- the output contract ----------------------------------------------------------------------------


def test_output_files_and_header(default, cohort):
    path, vcf, stdout = default
    for p in (path, Path(f"{path}.tbi"), path.with_name("imputed.info.tsv"), path.with_name("imputed.excluded.tsv")):
        assert p.is_file(), p
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        ["imputed.vcf.gz", "imputed.vcf.gz.tbi", "imputed.info.tsv", "imputed.excluded.tsv"])  # no leftovers
    h = "\n".join(vcf.header)
    assert vcf.header[0] == "##fileformat=VCFv4.2"
    for needle in ("##source=snpbag", "##snpbag_command=", "##contig=<ID=22", "##INFO=<ID=AF,", "##INFO=<ID=R2,",
                   "##INFO=<ID=IMP,", "##INFO=<ID=TYPED,", "##FORMAT=<ID=GT,", "##FORMAT=<ID=DS,", "##FORMAT=<ID=GP,",
                   "##snpbag_model="):
        assert needle in h, needle
    assert vcf.samples == read_vcf_samples(cohort.base)
    assert "matched" in stdout and f"{len(vcf.samples)} samples in" in stdout
    info = path.with_name("imputed.info.tsv").read_text().splitlines()
    assert info[0].split("\t") == ["#chrom", "pos", "id", "ref", "alt", "af", "maf", "r2", "type", "in_vcf", "er2"]
    assert [int(ln.split("\t")[1]) for ln in info[1:]] == vcf.pos.tolist()


def test_gp_ds_gt_af_r2_follow_the_documented_rule(default):
    _, vcf, _ = default
    gp, ds = vcf.milli("GP"), vcf.milli("DS")
    assert (gp.sum(-1) == 1000).all()  # printed GP sum to exactly 1
    assert (ds == gp[..., 1] + 2 * gp[..., 2]).all()  # DS from the printed GP
    gt = np.array([[dosage(g) for g in r] for r in vcf.field("GT")])
    assert all("|" not in g for r in vcf.field("GT") for g in r)  # unphased (no HDS)
    argmax = gp.argmax(-1)  # the first (lower) genotype on ties
    assert (gt == argmax).all()
    for i, r in enumerate(vcf.rows):
        info = vcf.info(r)
        assert (info.get("IMP") is True) != (info.get("TYPED") is True), r[:8]
        assert float(info["AF"]) == pytest.approx(ds[i].mean() / 2000, abs=6e-6)
        g = gp[i] / 1000.0  # Beagle's dose R2 from the printed GP
        d, e = g[:, 1] + 2 * g[:, 2], g[:, 1] + 4 * g[:, 2]
        den = e.sum() - d.sum() ** 2 / len(d)
        r2 = 0.0 if den < 1e-8 else max((d * d).sum() - d.sum() ** 2 / len(d), 0.0) / den
        assert float(info["R2"]) == pytest.approx(r2, abs=6e-4)


def test_typed_sites_keep_the_input_calls(default, cohort):
    _, vcf, _ = default
    alleles, gts = read_input(cohort.base)
    typed = [i for i, r in enumerate(vcf.rows) if vcf.info(r).get("TYPED")]
    assert sorted(vcf.pos[typed].tolist()) == sorted(alleles)
    gp = vcf.milli("GP")
    gt = vcf.field("GT")
    seen_missing = 0
    for i in typed:
        pos = int(vcf.pos[i])
        assert (vcf.rows[i][3], vcf.rows[i][4]) == alleles[pos]
        for s, call in enumerate(gts[pos]):
            if (pos, s) in cohort.missing:  # a missing typed call is imputed
                seen_missing += 1
                assert dosage(gt[i][s]) == gp[i, s].argmax()
            else:
                assert dosage(gt[i][s]) == dosage(call)
                assert gp[i, s, dosage(call)] == 1000
    assert seen_missing == len(cohort.missing) > 0


def test_replace_typed_writes_model_results_at_typed_sites(default, cohort, models):
    _, vcf, _ = default
    path, _ = impute(cohort, models, "replace", "--replace-typed")
    rep = read_vcf(path)
    assert rep.pos.tolist() == vcf.pos.tolist()
    typed = np.array([bool(vcf.info(r).get("TYPED")) for r in vcf.rows])
    assert all(bool(rep.info(r).get("TYPED")) == t for r, t in zip(rep.rows, typed))
    gp = rep.milli("GP")[typed]
    assert (gp.max(-1) < 1000).any()  # model probabilities, not one-hot input calls
    assert [r for r, t in zip(rep.rows, typed) if not t] == [r for r, t in zip(vcf.rows, typed) if not t]


def test_min_r2_filters_imputed_sites_only(default, cohort, models):
    _, vcf, _ = default
    r2 = np.array([float(vcf.info(r)["R2"]) for r in vcf.rows])
    imp = np.array([bool(vcf.info(r).get("IMP")) for r in vcf.rows])
    levels = np.unique(r2[imp])
    x = float(levels[len(levels) // 2])  # some imputed sites below, some at or above
    keep = ~imp | (r2 >= x)
    assert 0 < (~keep).sum() and (keep & imp).any()
    path, _ = impute(cohort, models, "minr2", "--min-r2", x)
    got = read_vcf(path)
    assert got.rows == [r for r, k in zip(vcf.rows, keep) if k]
    info = [ln.split("\t") for ln in path.with_name("imputed.info.tsv").read_text().splitlines()[1:]]
    assert [int(f[1]) for f in info] == vcf.pos.tolist()  # the info file keeps every site
    assert [f[9] == "1" for f in info] == keep.tolist()


def test_format_gt_ds_writes_only_those_fields(default, cohort, models):
    _, vcf, _ = default
    path, _ = impute(cohort, models, "gtds", "--format", "GT,DS")
    got = read_vcf(path)
    assert {r[8] for r in got.rows} == {"GT:DS"}
    assert not any(h.startswith("##FORMAT=<ID=GP") for h in got.header)
    assert got.field("GT") == vcf.field("GT") and got.field("DS") == vcf.field("DS")


@requires_tool("bcftools")
def test_bcftools_reads_the_output(default):
    path, vcf, _ = default
    run = subprocess.run(["bcftools", "view", "-H", str(path)], capture_output=True, text=True, check=True)
    assert len(run.stdout.splitlines()) == len(vcf.rows)
    run = subprocess.run(["bcftools", "query", "-f", "%INFO/R2\n", str(path)], capture_output=True, text=True,
                         check=True)
    assert [float(x) for x in run.stdout.split()] == [float(vcf.info(r)["R2"]) for r in vcf.rows]
    run = subprocess.run(["bcftools", "view", "-H", "-r", f"22:{vcf.pos[3]}", str(path)], capture_output=True,
                         text=True, check=True)  # the index works
    assert run.stdout.split("\t")[1] == str(vcf.pos[3])


@requires_tool("plink2")
def test_plink2_reads_the_dosages(default, tmp_path):
    path, vcf, _ = default
    pre = tmp_path / "p"
    common = ["--threads", "1", "--memory", "1000"]
    subprocess.run(["plink2", "--vcf", str(path), "dosage=DS", "--make-pgen", "--out", str(pre), *common],
                   capture_output=True, check=True)
    assert [ln.split("\t")[0] for ln in Path(f"{pre}.psam").read_text().splitlines()[1:]] == vcf.samples
    subprocess.run(["plink2", "--pfile", str(pre), "--freq", "--out", str(pre), *common], capture_output=True,
                   check=True)
    freqs = [float(ln.split("\t")[4]) for ln in Path(f"{pre}.afreq").read_text().splitlines()[1:]]
    # plink2's ALT frequency from the imported dosages equals INFO/AF = mean DS / 2
    assert freqs == pytest.approx([float(vcf.info(r)["AF"]) for r in vcf.rows], abs=2e-4)


# --- input orientation and naming ---------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, fn) -> Path:
    """Write ``src`` with each record passed through ``fn(fields) -> fields``."""
    out = []
    for ln in src.read_text().splitlines():
        out.append(ln if ln.startswith("#") else "\t".join(fn(ln.split("\t"))))
    dst.write_text("\n".join(out) + "\n")
    return dst


def test_swapped_ref_alt_give_two_minus_ds(default, cohort, models):
    """REF/ALT swapped (genotypes recoded) at every other non-ambiguous typed site: the model
    sees the same genotypes, so imputed sites are identical and swapped typed sites print in
    the input's orientation with DS = 2 - DS."""
    _, vcf, _ = default
    swapped = set()
    count = [0]

    def swap(f):
        if {f[3], f[4]} in ({"A", "T"}, {"C", "G"}):
            return f
        count[0] += 1
        if count[0] % 2:
            return f
        swapped.add(int(f[1]))
        flip = {"0": "1", "1": "0", ".": "."}
        gts = [flip[g[0]] + g[1] + flip[g[2]] for g in f[9:]]
        return [*f[:3], f[4], f[3], *f[5:9], *gts]

    src = _rewrite(cohort.base, cohort.dir / "swapped.vcf", swap)
    assert len(swapped) > 5
    path, result = impute(cohort, models, "swapped", input=src)
    assert f"({len(swapped)} allele-swapped" in result.output
    got = read_vcf(path)
    assert got.pos.tolist() == vcf.pos.tolist()
    ds0, ds1 = default[1].milli("DS"), got.milli("DS")
    for i, (a, b) in enumerate(zip(vcf.rows, got.rows)):
        if int(a[1]) in swapped:
            assert (b[3], b[4]) == (a[4], a[3])
            assert np.abs(ds1[i] - (2000 - ds0[i])).max() <= 1, a[:5]  # GP rounding may move one thousandth
        else:
            assert b[:7] == a[:7] and b[8:] == a[8:], a[:5]


def test_chr_prefixed_input_on_a_22_model(default, cohort, models):
    _, vcf, _ = default
    src = cohort.dir / "chr.vcf"
    text = cohort.base.read_text().replace("##contig=<ID=22,", "##contig=<ID=chr22,")
    src.write_text(re.sub(r"(?m)^22\t", "chr22\t", text))
    path, _ = impute(cohort, models, "chr", input=src)
    got = read_vcf(path)
    assert {r[0] for r in got.rows} == {"chr22"}
    assert any(h.startswith("##contig=<ID=chr22") for h in got.header)
    assert not any(h.startswith("##contig=<ID=22") for h in got.header)
    assert [r[1:] for r in got.rows] == [r[1:] for r in vcf.rows]
    info = path.with_name("imputed.info.tsv").read_text().splitlines()[1:]
    assert {ln.split("\t")[0] for ln in info} == {"chr22"}


# --- bad input: exit 2, one line naming the file, no output --------------------------------------------


def _shift(delta):
    return lambda f: [f[0], str(int(f[1]) + delta), *f[2:]]


def _mix_phase(f):
    for i in range(9, len(f)):
        if f[i] in ("0|1", "1|0"):
            f[i] = f[i].replace("|", "/")
            break
    return f


def _no_gt(src: Path, dst: Path) -> Path:
    out = []
    for ln in src.read_text().splitlines():
        if ln.startswith("##FORMAT=<ID=GT"):
            ln = '##FORMAT=<ID=DS,Number=A,Type=Float,Description="Dosage">'
        elif not ln.startswith("#"):
            f = ln.split("\t")
            ln = "\t".join([*f[:8], "DS", *(str(max(dosage(g), 0)) for g in f[9:])])
        out.append(ln)
    dst.write_text("\n".join(out) + "\n")
    return dst


def _dup_samples(src: Path, dst: Path) -> Path:
    lines = src.read_text().splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("#CHROM"):
            f = ln.split("\t")
            f[10] = f[9]
            lines[i] = "\t".join(f)
    dst.write_text("\n".join(lines) + "\n")
    return dst


BAD = {
    "other_region": (lambda c, d: _rewrite(c.base, d / "far.vcf", _shift(10_000_000)), (),
                     r"far\.vcf: none of its SNPs lie inside the model's region"),
    "shifted_build": (lambda c, d: _rewrite(c.base, d / "shift.vcf", _shift(1)), (),
                      r"shift\.vcf: only \d+ of \d+ input SNPs .* wrong build or wrong chromosome\?"),
    "wrong_chromosome": (lambda c, d: _rewrite(c.base, d / "c21.vcf", lambda f: ["21", *f[1:]]), (),
                         r"c21\.vcf: chromosome\(s\) 21 but the model covers 22"),
    "phase_mixture": (lambda c, d: _rewrite(c.base, d / "mixed.vcf", _mix_phase), (),
                      r"mixed\.vcf: mixes phased and unphased heterozygous genotypes"),
    "no_gt": (lambda c, d: _no_gt(c.base, d / "nogt.vcf"), (), r"nogt\.vcf: no GT FORMAT field"),
    "duplicate_samples": (lambda c, d: _dup_samples(c.base, d / "dup.vcf"), (),
                          r"dup\.vcf: duplicated sample ids in the header"),
    "unknown_sample": (lambda c, d: c.base, ("--samples", "{d}/who.txt"), r"NOBODY"),
    "cuda_without_gpu": (lambda c, d: c.base, ("--device", "cuda"), r"--device cuda: no CUDA device"),
    "output_exists": (lambda c, d: c.base, (), r"imputed\.vcf\.gz: output already exists"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_with_one_line_and_no_output(case, cohort, models, tmp_path):
    if case == "cuda_without_gpu" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    make, extra, message = BAD[case]
    src = make(cohort, tmp_path)
    (tmp_path / "who.txt").write_text(f"{read_vcf_samples(cohort.base)[0]}\nNOBODY\n")
    out = tmp_path / "out"
    out.mkdir()
    if case == "output_exists":
        (out / "imputed.vcf.gz").write_bytes(b"precious")
    before = sorted(p.name for p in out.iterdir())
    result = cli("impute", "--model", models["imp"], "--input", src, "--output", out / "imputed.vcf.gz",
                 *(a.format(d=tmp_path) for a in extra), ok=False)
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.stderr.startswith("snpbag: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr
    if case == "unknown_sample":
        assert "who.txt" in result.stderr or str(src) in result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written, nothing left behind
    if case == "output_exists":
        assert (out / "imputed.vcf.gz").read_bytes() == b"precious"


@pytest.mark.parametrize("kind", ["genomes", "haplotypes"])
def test_retrieval_model_ships_its_panel_and_imputes(cohort, tmp_path, kind):
    """model.retrieval_k > 0: the run keeps the training genomes, export ships them, load_model
    reads them and impute retrieves from them; a model directory that lost them fails clearly.
    The haplotype kind with the head's retrieval prior starts from the copying model's answer."""
    import shutil

    from snpbag.api import load_model
    from snpbag.modeldir import panel_file

    FILE = panel_file(kind)
    run, model = tmp_path / "run_nb", tmp_path / "model_nb"
    extra = ["model.retrieval=haplotypes", "+task.head.options.retrieval_prior=true"] if kind == "haplotypes" else []
    cli("train", f"data.store={cohort.store}", f"paths.run_dir={run}", *TRAIN, "model.retrieval_k=3",
        "model.retrieval_span=16", *extra)
    assert (run / FILE).is_file()
    cli("export", run, model)
    loaded = load_model(model)
    assert loaded.retrieval_panel is not None and loaded.retrieval_panel.by_site.shape[0] == loaded.vocab.n_sites
    if kind == "genomes":
        assert loaded.retrieval_panel.k == 3 and loaded.retrieval_panel.span == 16
    else:
        assert (loaded.retrieval_panel.states, loaded.retrieval_panel.block) == (3, 16)
        assert loaded.model.head.options == {"retrieval_prior": True}
    out = tmp_path / "imputed.vcf.gz"
    cli("impute", "--model", model, "--input", cohort.base, "--output", out, "--batch-size", 4)
    gp = [list(map(float, f.split(":")[2].split(","))) for ln in _vcf_lines(out) if not ln.startswith("#")
          for f in ln.split("\t")[9:]]
    assert gp and np.allclose(np.sum(gp, axis=1), 1.0, atol=2e-3)
    if kind == "haplotypes":  # snpbag phase reads the same panel through the copying model
        phased = tmp_path / "phased.vcf.gz"
        result = cli("phase", "--model", model, "--copying-only", "--input", cohort.base, "--output", phased,
                     "--threads", 1)
        assert f"against panel {model}" in result.output
        recs = [ln.split("\t") for ln in _vcf_lines(phased) if not ln.startswith("#")]
        done = [r for r in recs if r[8].startswith("GT:PP:IMP")]  # the rest: not in the panel, as given
        assert len(done) > len(recs) / 2 and all("|" in f.split(":")[0] for r in done for f in r[9:])
    else:
        result = cli("phase", "--model", model, "--copying-only", "--input", cohort.base, "--output",
                     tmp_path / "p.vcf.gz", ok=False)
        assert result.exit_code == 2 and "has no haplotype panel" in result.output
    broken = tmp_path / "model_broken"
    shutil.copytree(model, broken)
    (broken / FILE).unlink()
    result = cli("impute", "--model", broken, "--input", cohort.base, "--output", tmp_path / "x.vcf.gz", ok=False)
    assert result.exit_code != 0 and f"{FILE} is missing" in result.output
