"""Two DDP ranks on CPU (gloo), outside SLURM: each rank takes its rank and world size from
torch.distributed (TileDataset.resolve_rank) and from Lightning's ``strategy=ddp``, and
the two ranks see disjoint, equal shares of an epoch's items."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from snpbag.train import rundir
from snpbag.train.callbacks import read_item_log
from conftest import free_port
from tiny_data import TINY_TRAIN, tiny_store

ROOT = Path(__file__).resolve().parents[1]
BATCH = 4


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return tiny_store(tmp_path_factory.mktemp("tiny"))


def _rank_items(rank: int, world: int, port: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from snpbag.data.dataset import TileDataset

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        ds = TileDataset(store, seq_len=64, batch_size=BATCH, training=True, seed=3)
        items = [(int(it["sample"]), int(it["tile"])) for it in ds]
        Path(out, f"{rank}.json").write_text(json.dumps({"rank": ds.rank, "world": ds.world_size, "items": items}))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _epoch_items(store: Path, **kw) -> list[tuple[int, int]]:
    from snpbag.data.dataset import TileDataset

    ds = TileDataset(str(store), seq_len=64, batch_size=BATCH, training=True, seed=3, **kw)
    return [(s, c) for s, c, _ in ds.items_of_epoch(0)]


def test_resolve_rank_through_torch_distributed(store, tmp_path):
    mp.start_processes(_rank_items, args=(2, free_port(), str(store), str(tmp_path)), nprocs=2,
                       start_method="spawn")
    got = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    assert [(g["rank"], g["world"]) for g in got] == [(0, 2), (1, 2)]
    a, b = (Counter(map(tuple, g["items"])) for g in got)
    everything = _epoch_items(store)
    assert len(everything) % 2 == 0  # so no item is repeated to even the ranks out
    assert sum(a.values()) == sum(b.values()) == len(everything) // 2
    assert not set(a) & set(b) and a + b == Counter(everything)


def test_lightning_ddp_two_ranks_disjoint_equal_shares(store, tmp_path):
    from snpbag.data.datamodule import GenotypeDataModule

    dm = GenotypeDataModule(str(store), batch_size=BATCH, seed=3)
    train_rows = dm.split()[0]
    everything = _epoch_items(store, samples=train_rows)
    assert len(everything) % 2 == 0
    steps = -(-len(everything) // 2 // BATCH)  # one epoch
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MASTER_PORT": str(free_port()), "WANDB_MODE": "disabled"}
    snpbag = Path(sys.executable).parent / "snpbag"
    cmd = [str(snpbag), "train", f"data.store={store}", f"paths.run_dir={run_dir}", *TINY_TRAIN,
           "trainer.devices=2", "trainer.strategy=ddp", f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
           "callbacks.item_log=true"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "global batch 8 = 4 per device x 2 ranks x 1 accumulated" in r.stderr
    assert rundir.read_run_layout(run_dir)["global_batch"] == 8
    shares = [Counter((s, c) for _, s, c, _ in read_item_log(rundir.items_log(run_dir, rank))) for rank in (0, 1)]
    assert sum(shares[0].values()) == sum(shares[1].values()) == len(everything) // 2
    assert not set(shares[0]) & set(shares[1]) and shares[0] + shares[1] == Counter(everything)


def _hung_peer(rank: int, world: int, port: int, out: str) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    from snpbag.train.callbacks import is_collective_timeout

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=3))
    if rank == 0:  # rank 1 never joins this all-reduce
        try:
            dist.all_reduce(torch.ones(1))
            Path(out, "0").write_text("no timeout")
        except Exception as e:  # noqa: BLE001
            Path(out, "0").write_text(f"{is_collective_timeout(e)} {type(e).__name__}: {e}"[:500])
    else:  # alive but hung: waits (polling, with its own limit) until rank 0 has given up
        import time

        end = time.monotonic() + 120
        while not Path(out, "0").exists() and time.monotonic() < end:
            time.sleep(0.1)
    # leave without tearing down the group: rank 0's gloo context still holds the all-reduce
    # that timed out, and its destructor at interpreter exit sometimes aborted the process
    # ("terminate called without an active exception", SIGABRT) after the result was written
    os._exit(0)


def test_a_hung_peer_is_recognised_as_a_collective_timeout(tmp_path):
    """The text torch's gloo backend raises when a peer never joins is what snpbag.train.run
    turns into 'rank N: a collective waited longer than trainer.collective_timeout_s'."""
    mp.start_processes(_hung_peer, args=(2, free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    got = (tmp_path / "0").read_text()
    assert got.startswith("True ") and "timed out" in got.lower(), got


@pytest.mark.parametrize("text, expected", [
    ("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 3000ms for recv operation", True),
    ("Application timeout caused pair closure", True),  # gloo, when the wait times out in its TCP pair
    ("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:1234", True),
    ("Watchdog caught collective operation timeout: WorkNCCL(SeqNum=7, OpType=ALLREDUCE)", True),
    ("CUDA out of memory. Tried to allocate 2.00 GiB", False),
    ("timeout must be a positive number", False),
])
def test_collective_timeout_wordings(text, expected):
    """Every wording of a hung or dead peer seen from gloo and NCCL is recognised (a hung-rank
    run failed once with the pair-closure one, which was not), and other errors are not."""
    from snpbag.train.callbacks import is_collective_timeout

    assert is_collective_timeout(RuntimeError(text)) is expected


def _rank_process(parent: int, rank: int) -> int | None:
    """The pid of the child of ``parent`` that Lightning started as LOCAL_RANK ``rank``."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"LOCAL_RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_hung_rank_fails_the_run_within_the_collective_timeout(store, tmp_path):
    """2 DDP ranks (Lightning starts rank 1 as a child process); rank 1 is stopped (SIGSTOP:
    alive, hung) after a few steps. Rank 0 fails within trainer.collective_timeout_s (and the
    monitored barrier that finds the hung rank, as long again) with the one-line error naming
    the hung rank, instead of waiting forever."""
    import signal
    import time

    run_dir, timeout = tmp_path / "run", 30  # also bounds the start-up rendezvous: not too short on a loaded machine
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "MASTER_PORT": str(free_port()), "WANDB_MODE": "disabled"}
    cmd = [str(Path(sys.executable).parent / "snpbag"), "train", f"data.store={store}", f"paths.run_dir={run_dir}",
           *TINY_TRAIN, "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_steps=1000",
           "trainer.val_check_interval=1000", f"trainer.collective_timeout_s={timeout}", "callbacks.item_log=true"]
    with open(tmp_path / "stderr", "w") as err:
        main = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    hung = None
    try:
        items = rundir.items_log(run_dir, 1)
        end = time.monotonic() + 600
        while not (items.is_file() and len(read_item_log(items)) >= 2 * BATCH) and main.poll() is None:
            assert time.monotonic() < end, "rank 1 never trained"
            time.sleep(0.2)
        hung = _rank_process(main.pid, 1)
        assert hung is not None and main.poll() is None
        os.kill(hung, signal.SIGSTOP)
        stopped = time.monotonic()
        code = main.wait(timeout=timeout + 300)
        waited = time.monotonic() - stopped
    finally:
        if hung is not None:
            os.kill(hung, signal.SIGKILL)
        if main.poll() is None:
            main.kill()
            main.wait()
    text = (tmp_path / "stderr").read_text()
    assert code != 0 and (f"rank 0: a collective waited longer than trainer.collective_timeout_s={timeout}: rank(s) 1 "
                          "did not answer (hung or dead: see their logs); resubmit with resume=true") in text, text[-3000:]
    assert waited >= 2 * timeout * 0.9, waited
