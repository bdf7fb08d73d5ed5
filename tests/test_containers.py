"""The container recipes (docker/): they parse, copy files that exist, install the torch
version the Makefile pins and extras pyproject defines, pair the CUDA base image with the
matching PyTorch wheel index, copy what ``pip install .`` builds from (the configs are
package data, so no SNPBAG_CONFIG_DIR) and end in the ``snpbag`` entry point. Images cannot be
built or pulled here (no engine, no network); see slurm/README.md."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from test_packaging import BUILD_INPUTS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = ["Dockerfile", "Dockerfile.cpu"]
INSTRUCTIONS = {"FROM", "ARG", "ENV", "RUN", "WORKDIR", "COPY", "ADD", "ENTRYPOINT", "CMD", "LABEL", "USER",
                "EXPOSE", "VOLUME", "SHELL", "HEALTHCHECK", "STOPSIGNAL", "ONBUILD"}
DEF_SECTIONS = {"files", "environment", "post", "runscript", "test", "labels", "help", "setup", "startscript"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _makefile_torch() -> str:
    return re.search(r"^TORCH_VERSION \?= (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word, rest))
            pending = ""
    assert not pending, f"{path}: a continued line never ends"
    return out


def _def_sections(path: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    header, sections, current = {}, {}, None
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = []
        elif current is None:
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
        else:
            sections[current].append(line.strip())
    return header, sections


def _installs(text: str) -> tuple[set[str], set[str]]:
    """(torch versions, extras) named by the pip install commands of a recipe."""
    torch = set(re.findall(r'torch==\$\{?TORCH_VERSION\}?', text))
    versions = set(re.findall(r"TORCH_VERSION[=\s]+(\d[\w.]*)", text))
    extras = set(re.findall(r'"\.\[([\w,-]+)\]"', text))
    assert torch, "torch is not installed from TORCH_VERSION"
    return versions, {e for group in extras for e in group.split(",")}


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_parses_and_matches_the_project(name):
    path = ROOT / "docker" / name
    steps = _instructions(path)
    assert {w for w, _ in steps} <= INSTRUCTIONS, path
    assert [w for w, _ in steps if w not in ("ARG",)][0] == "FROM"
    for word, args in steps:
        if word == "COPY":
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), f"{name}: COPY {src}: no such file in the source tree"
    versions, extras = _installs(path.read_text())
    assert versions == {_makefile_torch()}
    assert extras <= set(_pyproject()["project"]["optional-dependencies"])
    cmd = dict(steps)["CMD"]
    assert cmd.startswith('["snpbag"') and "snpbag" in _pyproject()["project"]["scripts"]
    copied = {src for w, args in steps if w == "COPY" for src in args.split()[:-1]}
    assert copied >= set(BUILD_INPUTS), f"{name}: pip install . needs {sorted(set(BUILD_INPUTS) - copied)}"
    assert "SNPBAG_CONFIG_DIR" not in path.read_text()  # the configs are package data


def test_gpu_recipes_pair_cuda_with_its_torch_wheels():
    for path in (ROOT / "docker" / "Dockerfile", ROOT / "docker" / "snpbag.def"):
        text = path.read_text()
        cuda = re.search(r"nvidia/cuda:(\d+)\.(\d+)", text)
        index = re.search(r"download\.pytorch\.org/whl/cu(\d+)", text)
        assert cuda and index and index.group(1) == cuda.group(1) + cuda.group(2), path


def test_apptainer_definition_parses_and_matches_the_project():
    path = ROOT / "docker" / "snpbag.def"
    header, sections = _def_sections(path)
    assert header["Bootstrap"] == "docker" and header["From"].startswith("nvidia/cuda:")
    assert set(sections) <= DEF_SECTIONS and {"files", "post", "environment", "runscript"} <= set(sections)
    for line in sections["files"]:
        assert (ROOT / line.split()[0]).exists(), line
    versions, extras = _installs("\n".join(sections["post"]))
    assert versions == {_makefile_torch()} and extras <= set(_pyproject()["project"]["optional-dependencies"])
    assert sections["runscript"] == ['exec snpbag "$@"']
    assert {line.split()[0] for line in sections["files"]} >= set(BUILD_INPUTS)
    assert "SNPBAG_CONFIG_DIR" not in path.read_text()  # the configs are package data
