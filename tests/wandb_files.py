"""Reading W&B offline run files (``RUN_DIR/wandb/offline-run-*/run-ID.wandb``) in tests,
without a network or a W&B server."""

from __future__ import annotations

import json
import time
from pathlib import Path


def _wandb_records(path: Path) -> list[bytes]:
    """The records of a .wandb file: a 7-byte header, then LevelDB's log format (32 KiB
    blocks of chunks: crc32c, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4)."""
    import struct

    b, block, pos, out, part = path.read_bytes(), 32768, 7, [], b""
    assert b[:4] == b":W&B", path
    while pos + 7 <= len(b):
        left = block - pos % block
        crc, n, kind = struct.unpack("<IHB", b[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if n == 0 and kind == 0:  # block padding
            pos += left
            continue
        data, pos = b[pos + 7:pos + 7 + n], pos + 7 + n
        if kind == 1:
            out.append(data)
        elif kind == 2:
            part = data
        elif kind == 3:
            part += data
        elif kind == 4:
            out.append(part + data)
    return out


def wandb_history_steps(run_dir: Path, *, timeout: float = 60) -> dict[str, tuple[str, list[int]]]:
    """{offline directory: (run id, the history steps it holds)}, read from the .wandb files
    (wandb 0.31 has no Python reader of its own). wandb-core writes them asynchronously:
    polls until every file holds its run's exit record."""
    import time

    from wandb.proto import wandb_internal_pb2

    end = time.monotonic() + timeout
    while True:
        out, complete = {}, True
        for d in sorted((run_dir / "wandb").glob("offline-run-*")):
            (f,) = d.glob("run-*.wandb")
            steps, run_id, exited = [], None, False
            for data in _wandb_records(f):
                rec = wandb_internal_pb2.Record()
                rec.ParseFromString(data)
                kind = rec.WhichOneof("record_type")
                if kind == "run":
                    run_id = rec.run.run_id
                elif kind == "history":
                    steps += [int(json.loads(i.value_json)) for i in rec.history.item if i.nested_key == ["_step"]]
                exited |= kind == "exit"
            out[d.name] = (run_id, steps)
            complete &= exited
        if complete or time.monotonic() > end:
            return out
        time.sleep(0.2)
