"""What produced a store or a model directory: versions, git revision, parameters."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_PACKAGES = ("snpbag", "torch", "lightning", "hydra-core", "zarr", "numcodecs", "cyvcf2", "msprime", "numpy")


def git_revision(path: str | Path | None = None) -> str | None:
    """The git commit of the snpbag source tree, or None outside a checkout."""
    here = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def provenance(command: str, parameters: dict | None = None) -> dict:
    """A JSON-serialisable record to store next to any output snpbag writes."""
    return {
        "command": command,
        "parameters": parameters or {},
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
