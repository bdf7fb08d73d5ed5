"""Exact integer GEMMs for the KING counts: torch's int8 matrix product, or an exact float one.

``matmul(a, b)`` is ``a.T @ b`` of variant-major indicator matrices (entries 0/±1) as
int32: ``torch._int_mm`` (int8 × int8 → int32; AVX-512-VNNI / AMX on CPU, tensor cores on
CUDA) where it runs, else float32 on CPU (exact: a chunk has < 2^24 variants) or float64
on CUDA (where float32 may silently run as TF32). torch is imported lazily: it costs
about a second, which :func:`import_torch_in_background` overlaps with reading.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def int8_gemm_ok(device) -> bool:
    """Whether torch._int_mm runs, exactly, on ``device`` (it is a private, backend-dependent op)."""
    import torch

    try:
        a = torch.ones((16, 24), dtype=torch.int8, device=device)
        return int(matmul(a, a, int8=True)[0, 0]) == 16
    except Exception:  # pragma: no cover - no int8 GEMM on this backend/build
        log.info("king: torch._int_mm unavailable on %s; using exact float matmul", device)
        return False


def matmul(a, b, *, int8: bool):
    """Exact ``a.T @ b`` of variant-major int8 indicators ``a`` (v, m), ``b`` (v, n), as int32."""
    import torch

    if int8:
        if a.is_cuda:
            a_op, b_op, m, n = cublaslt_operands(a, b)
            return torch._int_mm(a_op, b_op)[:m, :n]
        return torch._int_mm(a.T, b)
    # Sums of 0/±1 products are integers: exact in fp32 while a chunk has < 2^24 variants
    # (CPU) and in fp64 always (CUDA, where fp32 may silently run as TF32).
    dtype = torch.float64 if a.is_cuda else torch.float32
    return torch.round(a.to(dtype).T @ b.to(dtype)).to(torch.int32)


def cublaslt_operands(a, b):
    """Zero-padded ``a.T`` row-major (m', k') and ``b`` column-major (k', n') for CUDA's int8 GEMM.

    torch._int_mm on CUDA needs m > 16 and k, n multiples of 8; zero rows/columns add
    nothing to the products. Returns the operands and the unpadded (m, n).
    """
    import torch

    k, m = a.shape
    n = b.shape[1]
    mp, np_, kp = max(_round_up(m, 8), 24), _round_up(n, 8), _round_up(k, 8)
    a_op = torch.nn.functional.pad(a, (0, mp - m, 0, kp - k)).T.contiguous()
    b_op = torch.nn.functional.pad(b, (0, np_ - n, 0, kp - k)).T.contiguous().T
    return a_op, b_op, m, n


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m



def import_torch_in_background():
    """Start importing torch (over a second) in a thread while the first chunks are read.

    The import runs Python code for a second; with the default 5 ms GIL switch interval
    the reader, which takes the GIL back after every Blosc call, would wait up to 5 ms
    each time, so the interval is shortened while the import runs.
    """
    import sys
    import threading

    def run():
        if "torch" in sys.modules:
            return
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, 2e-4))
        try:
            import torch  # noqa: F401
        finally:
            sys.setswitchinterval(interval)

    t = threading.Thread(target=run, name="king-import", daemon=True)
    t.start()
    return t

