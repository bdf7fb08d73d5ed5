"""The container recipes (docker/): they parse, copy files that exist, install the torch
version the Makefile pins and extras pyproject defines, pair the CUDA base image with the
matching PyTorch wheel index, copy what ``pip install .`` builds from (the configs are
package data, so no SNPBAG_CONFIG_DIR) and end in the ``snpbag`` entry point; the CPU image's
steps run as a shell script in a fresh venv and leave a working ``snpbag --version``. Images
cannot be built or pulled here (no engine, no network); see slurm/README.md."""

from __future__ import annotations

import os
import re
import subprocess
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


def _as_shell(steps: list[tuple[str, str]], *, source: Path, root: Path) -> str:
    """A Dockerfile's build steps as a shell script run on this machine: ARG/ENV become
    variables, RUN runs, WORKDIR cds, COPY copies from the source tree; absolute paths of the
    image (/opt, /work, /var) move under ``root``. FROM (the base image) and CMD are the
    caller's to check."""
    def here(text: str) -> str:
        return re.sub(r"(?<![\w.:/$])/(opt|work|var)\b", f"{root}/\\1", text)

    lines = ["set -eux"]
    for word, args in steps:
        if word == "ARG":
            name, _, default = args.partition("=")
            lines.append(f'{name}="${{{name}:-{default}}}"')
        elif word == "ENV":
            lines.append(f"export {here(args)}")
        elif word == "RUN":
            lines.append(here(args))
        elif word == "WORKDIR":
            lines.append(f"mkdir -p {here(args)} && cd {here(args)}")
        elif word == "COPY":
            *srcs, dest = args.split()
            lines += [f"cp -r {source / s} {here(dest)}" for s in srcs]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_cpu_image_steps_install_snpbag_in_a_fresh_venv(tmp_path):
    """docker/Dockerfile.cpu's steps, run as a shell script in a fresh venv on this machine
    (its base image is this Python's version), end in a working `snpbag --version`. There is no
    network: apt-get is a stand-in that records the packages, and pip installs without an
    index from the third-party packages already installed here (the fresh venv sees them
    through a .pth file, snpbag itself and pip excluded; the venv's own setuptools, older than
    torch requires, is removed, as pip would upgrade it online), so snpbag is built from the
    copied sources and installed into the venv as in the image."""
    import sys
    import sysconfig

    steps = _instructions(ROOT / "docker" / "Dockerfile.cpu")
    base = next(args for word, args in steps if word == "FROM")
    assert base.startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}-"), base
    root = tmp_path / "image"
    tools = tmp_path / "bin"
    tools.mkdir(parents=True)
    (tools / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/apt-get.calls\n')
    (tools / "apt-get").chmod(0o755)
    # third-party packages: links to this interpreter's site-packages, without snpbag and pip
    links = tmp_path / "site"
    links.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if not name.startswith(("snpbag", "__editable__", "pip")) and not name.endswith(".pth"):
            (links / entry.name).symlink_to(entry)
    venv = root / "opt" / "venv"
    python = Path(sys.base_prefix) / "bin" / "python3"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
    # the venv's bundled setuptools is older than torch requires; online, pip would upgrade it
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True,
                   capture_output=True, timeout=300)
    purelib = next((venv / "lib").glob("python3.*")) / "site-packages"
    (purelib / "preinstalled.pth").write_text(f"{links}\n")

    script = tmp_path / "build.sh"
    script.write_text(_as_shell(steps, source=ROOT, root=root))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV", "SNPBAG"))}
    env.update(PATH=f"{tools}:{python.parent}:/usr/bin:/bin", PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    build = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, (script.read_text(), build.stdout[-3000:], build.stderr[-3000:])
    apt = (tmp_path / "apt-get.calls").read_text().split()
    assert {"bcftools", "tabix"} <= set(apt) and "install" in apt

    run = subprocess.run([str(venv / "bin" / "snpbag"), "--version"], cwd=root / "work", env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and re.fullmatch(r"snpbag,? (version )?\S+\s*", run.stdout), (run.stdout, run.stderr)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import snpbag; print(snpbag.__file__)"],
                           cwd=root / "work", env=env, capture_output=True, text=True, timeout=300)
    assert Path(where.stdout.strip()).is_relative_to(purelib), where  # the installed copy, not this checkout
