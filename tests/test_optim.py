"""The optimiser / precision / gradient-clipping decision of the GPU path, checked on CPU.

On CUDA the module builds a fused AdamW; Lightning's mixed-precision plugin refuses at the
first step to clip gradients of a fused optimiser. The CPU has a fused AdamW too, so the
same Trainer refusal reproduces here: the decision is tested as a function and through a
real training step with the decision told it runs on CUDA.
"""

from __future__ import annotations

import pytest
import torch

from snpbag.train import lit_module
from snpbag.train.lit_module import use_fused_adamw
from tiny_data import TINY_TRAIN, tiny_store

torch.set_num_threads(1)


@pytest.mark.parametrize(("device", "precision", "clip", "fused"), [
    ("cuda", "bf16-mixed", 1.0, False),  # the GPU default: clipping wins, plain AdamW
    ("cuda", "16-mixed", 0.5, False),
    ("cuda", "bf16-mixed", None, True),  # no clipping: fused
    ("cuda", "bf16-mixed", 0.0, True),
    ("cuda", "32-true", 1.0, True),  # no AMP plugin: Lightning clips fused optimisers
    ("cuda", "bf16-true", 1.0, True),
    ("cpu", "32-true", None, False),
    ("cpu", "bf16-mixed", None, False),
])
def test_fused_adamw_decision(device, precision, clip, fused):
    assert use_fused_adamw(device, precision=precision, grad_clip=clip) is fused


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tiny_store(tmp_path_factory.mktemp("optim"))


@pytest.mark.parametrize("clip", ["1.0", "0"])
def test_gpu_optimiser_settings_train_a_step(store, tmp_path, monkeypatch, clip):
    """bf16-mixed with the optimiser the module would build on CUDA: two steps run (with
    clipping a fused AdamW here raised Lightning's "does not allow for gradient clipping")."""
    from snpbag.train.run import train

    built = []
    real_adamw = torch.optim.AdamW

    def adamw(*args, **kw):
        built.append(kw.get("fused"))
        return real_adamw(*args, **kw)

    monkeypatch.setattr(lit_module, "use_fused_adamw",
                        lambda _device, **kw: use_fused_adamw("cuda", **kw))
    monkeypatch.setattr(torch.optim, "AdamW", adamw)
    overrides = [o for o in TINY_TRAIN if not o.startswith("trainer.max_steps")]
    train([f"data.store={store}", f"paths.run_dir={tmp_path / 'run'}", *overrides, "trainer.max_steps=2",
           "trainer.precision=bf16-mixed", f"optim.grad_clip={clip}"])
    assert built == [clip == "0"]


def test_gpu_marker_selects_the_gpu_tests():
    """`pytest -m gpu` collects the CUDA tests (the marker was declared but applied to none)."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu", "-p", "no:xdist",
                          str(tests / "test_attention.py"), str(tests / "test_king.py")],
                         capture_output=True, text=True, cwd=tests.parent).stdout
    selected = [ln for ln in out.splitlines() if "::" in ln]
    assert any(ln.startswith("tests/test_attention.py::") for ln in selected), out
    assert any(ln.startswith("tests/test_king.py::") for ln in selected), out
    assert all("cuda" in ln or "gpu" in ln for ln in selected), selected
