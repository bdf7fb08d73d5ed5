"""Test-wide settings: no network, one CPU thread per worker, no GPU assumptions."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("HYDRA_FULL_ERROR", "1")

import shutil  # noqa: E402
import socket  # noqa: E402

import pytest  # noqa: E402

try:
    import torch  # noqa: E402

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    torch = None


def requires_tool(*names: str):
    """Skip a test, with the reason, when a Debian peer tool is not installed."""
    missing = [n for n in names if shutil.which(n) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (apt-get install; `make peers`)")


#: GPU-only tests: ``pytest -m gpu`` selects them wherever a GPU exists; elsewhere they skip.
requires_cuda = pytest.mark.gpu
HAS_CUDA = torch is not None and torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none present")
    for item in items:
        # the marker, not item.keywords: those also hold directory names (a checkout named gpu/)
        if item.get_closest_marker("gpu") is not None and not HAS_CUDA:
            item.add_marker(skip)


def free_port() -> int:
    """A TCP port free on localhost now (for a test's torch.distributed rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_module(monkeypatch, name: str):
    """tools/bench/``name``.py as a module, with its siblings (_results, _peers, ...) importable and the module
    registered under its name (dataclasses look their module up there); both undone after the test."""
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "tools" / "bench"
    monkeypatch.syspath_prepend(str(bench))
    spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, mod)
    spec.loader.exec_module(mod)
    return mod
