"""Headless Chromium for the report tests: does a self-contained page render without
JavaScript errors? Debian's ``chromium`` (``make peers`` installs it); tests that need it
skip without it (``requires_chromium``)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest


def binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


requires_chromium = pytest.mark.skipif(binary() is None,
                                       reason="Debian's chromium is not installed (make peers installs it)")


def _base(profile: Path) -> list[str]:
    return [binary(), "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=5000", f"--user-data-dir={profile}"]


def dump_dom(page: Path, tmp_path: Path) -> tuple[str, str]:
    """(the DOM after the page's scripts ran, Chromium's stderr); fails the test if Chromium
    fails or the console shows an uncaught error."""
    run = subprocess.run(_base(tmp_path / "profile") + ["--dump-dom", Path(page).resolve().as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Uncaught" not in run.stderr and "SyntaxError" not in run.stderr, run.stderr[-2000:]
    return run.stdout, run.stderr


def screenshot(page: Path, tmp_path: Path, *, size: str = "1200,1600") -> Path:
    """A PNG of the rendered page (its size says whether anything was drawn)."""
    shot = tmp_path / "page.png"
    subprocess.run(_base(tmp_path / "profile") + [f"--window-size={size}", f"--screenshot={shot}",
                                                  Path(page).resolve().as_uri()], capture_output=True, timeout=120)
    return shot


#: Where tests keep what a person may want to look at after a run (screenshots): $SNPBAG_TEST_ARTEFACTS,
#: default test-artefacts/ at the repository root (git-ignored; CI can upload the folder).
ARTEFACTS = Path(os.environ.get("SNPBAG_TEST_ARTEFACTS", Path(__file__).resolve().parents[1] / "test-artefacts"))


def keep(path: Path, name: str) -> Path:
    """Copy ``path`` to ARTEFACTS/``name`` (overwriting the last run's) and return the copy."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(path, ARTEFACTS / name))


def check_report_page(page: Path, tmp_path: Path, *, images: int) -> str:
    """The DOM of a snpbag report page (snpbag.inference.report) after its script ran, having
    checked that the script ran, all ``images`` PNGs loaded and no JavaScript error was shown."""
    dom, _ = dump_dom(page, tmp_path)
    status = re.search(r'id="status"[^>]*data-images="(\d+)"[^>]*data-loaded="(\d+)"', dom)
    assert status, "the page's script did not run: " + dom[-500:]
    assert status[1] == status[2] == str(images)
    assert re.search(r'<pre id="js-errors"></pre>', dom), "page reported JavaScript errors"
    return dom
