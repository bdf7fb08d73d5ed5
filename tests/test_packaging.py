"""How snpbag installs. The GPU install: flash-attn builds against the installed torch, so
every documented way to install the `gpu` extra installs its build requirements first and
disables build isolation (a plain `pip install .[gpu]` fails with "No module named 'torch'").
The wheel: it carries the Hydra configs, so an installed copy trains without a checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: flash-attn's setup_requires (packaging, psutil, ninja) and what setup.py itself imports
#: what `pip install .` reads: the recipes in docker/ copy these into the image
BUILD_INPUTS = ("pyproject.toml", "setup.py", "README.md", "snpbag", "configs")
FLASH_BUILD = {"packaging", "psutil", "ninja", "setuptools", "wheel"}
INSTALL_DOCS = ["README.md", "Makefile", "docker/Dockerfile", "slurm/README.md",
                *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def test_gpu_build_extra_holds_flash_attn_build_requirements():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {_name(r) for r in extras["gpu"]} == {"flash-attn"}
    assert {_name(r) for r in extras["gpu-build"]} >= FLASH_BUILD


def test_every_gpu_install_line_builds_without_isolation_after_its_requirements():
    lines = [(f, ln) for f in INSTALL_DOCS if (ROOT / f).exists()
             for ln in (ROOT / f).read_text().splitlines() if re.search(r"pip install .*\[[^]]*\bgpu\b[^]-]*\]", ln)]
    assert any(f == "docker/Dockerfile" for f, _ in lines) and any(f == "Makefile" for f, _ in lines)
    for f, ln in lines:
        assert "--no-build-isolation" in ln, f"{f}: {ln.strip()}"
    docker = (ROOT / "docker/Dockerfile").read_text()
    assert docker.index('"torch==') < docker.index(".[gpu-build]") < docker.index("--no-build-isolation")
    make = (ROOT / "Makefile").read_text()
    assert make.index("gpu-build") < make.index("--no-build-isolation")


def test_the_wheel_ships_the_configs_and_composes_outside_the_checkout(tmp_path):
    """configs/ (the one tree the developers edit) installs as snpbag/configs/: every YAML
    is in the wheel, and an installed copy, run away from the source tree with no
    SNPBAG_CONFIG_DIR, composes and validates the default config from it."""
    src = tmp_path / "src"  # setuptools builds in the source tree (build/, *.egg-info): a copy
    src.mkdir()
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("snpbag-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("snpbag/configs/")}
    assert shipped == {f"snpbag/configs/{p.relative_to(ROOT / 'configs')}" for p in (ROOT / "configs").rglob("*.yaml")}

    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                              "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr
    probe = ("import snpbag, snpbag.config as c; from snpbag.train.run import compose_config, to_train_config; "
             "cfg = to_train_config(compose_config(['data.store=x'])); "
             "print(snpbag.__file__, c.config_dir(), cfg.model.name, cfg.trainer.strategy)")
    env = {k: v for k, v in os.environ.items() if k not in ("SNPBAG_CONFIG_DIR", "PYTHONPATH")}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**env, "PYTHONPATH": str(site)},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    module, cdir, model, strategy = run.stdout.split()
    assert Path(module).is_relative_to(site) and Path(cdir) == site / "snpbag" / "configs", run.stdout
    assert (model, strategy) == ("tiny", "auto")
