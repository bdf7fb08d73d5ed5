"""`snpbag demo` end to end on a tiny cohort: every stage runs and the report has its tables."""

import gzip
import shutil
import subprocess

import pytest

from snpbag.demo import DemoSettings, demo


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capfd):
    lines: list[str] = []
    settings = DemoSettings(samples_per_pop=15, length=200_000, targets=6, tile_len=256,
                            train_overrides=("trainer.max_steps=4", "trainer.val_check_interval=2",
                                             "data.seq_len=128", "data.batch_size=4", "logger=none"),
                            embed_overrides=("trainer.max_steps=4", "trainer.val_check_interval=2", "data.seq_len=128",
                                             "data.batch_size=4", "task.head.options.patch=64"),
                            classify_epochs=5, embed_per_continent=10)
    result = demo(tmp_path / "demo", settings=settings, echo=lines.append)
    text = "\n".join(lines)
    for stage in ("1. simulate", "2. convert", "3. pretrain", "4. impute", "5. score", "6. phase", "7. embed"):
        assert stage in text
    assert set(result["classification"]) == {"embedding", "pca_lr", "pca_knn", "genotype_lr"}
    assert "pca_lr" in text and "patches flagged" in text
    assert "30 genomes x" in text and "30 labelled genomes, 3 classes" in text  # 10 per continent
    assert "bits per genotype" in text
    assert "MAF bin" in text and "AF baseline" in text
    tools = [s["tool"] for s in result["scores"]]
    assert tools[0] == "AF baseline" and tools[1].startswith("snpbag")
    assert result["eval_sites"] > 0
    # step 6: the targets phased against the panel, scored beside Beagle when it is installed
    phasing = result["phasing"]
    assert phasing[0]["tool"] == "snpbag (copying model)" and phasing[0]["genotypes_changed"] == 0
    assert phasing[0]["het_pairs"] > 0 and 0 <= phasing[0]["ser_pct"] <= 100
    assert f"{'snpbag (copying model)':<30} {phasing[0]['ser_pct']:7.3f}" in text and "phased " in text
    if shutil.which("beagle"):
        assert phasing[1]["tool"].startswith("Beagle") and phasing[1]["het_pairs"] == phasing[0]["het_pairs"]
    else:
        assert "Beagle not installed" in text
    for name in ("cohort.zarr", "model", "imputed.vcf.gz", "imputed.vcf.gz.tbi", "imputed.info.tsv", "phased.vcf.gz",
                 "phased.vcf.gz.tbi"):
        assert (tmp_path / "demo" / name).exists()
    if shutil.which("beagle"):  # its output gets the targets' contig lines, so htslib reads it silently
        assert tools[2].startswith("Beagle")
        beagle = tmp_path / "demo" / "beagle.vcf.gz"
        with gzip.open(beagle, "rt") as f:
            assert "##contig=<ID=22,length=200000>\n" in f.read()
        if shutil.which("bcftools"):
            view = subprocess.run(["bcftools", "view", str(beagle)], capture_output=True, text=True, check=True)
            assert view.stderr == ""
    # htslib reads every file silently; Lightning's INFO chatter and tips stay out of the report
    err = capfd.readouterr().err
    for noise in ("is not defined in the header", "Tip:", "GPU available", "Seed set"):
        assert noise not in err
    # a second run reuses every completed stage and scores again
    again = demo(tmp_path / "demo", settings=settings, echo=lambda s: None)
    assert [s["tool"] for s in again["scores"]] == tools
    assert again["phasing"] == [r | {"wall_s": a["wall_s"]} for r, a in zip(phasing, again["phasing"])]
