"""The GPU install: flash-attn builds against the installed torch, so every documented way
to install the `gpu` extra installs its build requirements first and disables build
isolation (a plain `pip install .[gpu]` fails with "No module named 'torch'")."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: flash-attn's setup_requires (packaging, psutil, ninja) and what setup.py itself imports
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
