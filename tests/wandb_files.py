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


class FakeWandbServer:
    """A stand-in W&B server on localhost for ``wandb sync``: what wandb-core's sync needs of
    the GraphQL API (RunResumeStatus, UpsertBucket, CreateRunFiles; anything else gets an empty
    answer), file uploads, and the file stream, whose history lines it stores at the line
    ``offset`` the client sends, as W&B does (a segment sent at offset 0 overwrites the rows
    before it). A run counts as started once an upsert carried its telemetry (``_wandb.t``),
    which is what wandb-core's resume check asks for (core/internal/runbranch/resume.go).
    ``history[run]``: the stored history rows (dicts); ``offsets[run]``: the (offset, rows)
    of every history chunk received."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.history: dict[str, list[str]] = {}
        self.offsets: dict[str, list[tuple[int, int]]] = {}
        self.started: dict[str, object] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _answer(self, obj: object) -> None:
                out = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _body(self) -> bytes:
                import gzip

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body

            def do_PUT(self) -> None:  # uploaded run files
                self._body()
                self._answer({})

            def do_POST(self) -> None:
                try:
                    req = json.loads(self._body())
                except ValueError:
                    return self._answer({})
                if self.path.startswith("/files/"):  # /files/ENTITY/PROJECT/RUN/file_stream
                    return self._answer(server._stream(self.path.split("/")[4], req))
                self._answer({"data": server._graphql(req.get("operationName"), req.get("variables") or {},
                                                      self.server.server_address[1])})

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def rows(self, run: str) -> list[dict]:
        return [json.loads(line) for line in self.history.get(run, [])]

    def _stream(self, run: str, req: dict) -> dict:
        chunk = (req.get("files") or {}).get("wandb-history.jsonl")
        if chunk:
            lines = self.history.setdefault(run, [])
            lines[chunk["offset"]:chunk["offset"] + len(chunk["content"])] = chunk["content"]
            self.offsets.setdefault(run, []).append((chunk["offset"], len(chunk["content"])))
        return {"exitcode": None, "limits": {}}

    def _graphql(self, op: str | None, v: dict, port: int) -> dict:
        project = {"id": "UHJvamVjdDox", "name": v.get("project"), "entity": {"id": "RW50aXR5OjE=", "name": v.get("entity")}}
        if op == "RunResumeStatus":
            run = v["name"]
            lines = self.history.get(run, [])
            bucket = None if run not in self.started else {
                "id": "QnVja2V0OjE=", "name": run, "displayName": run, "summaryMetrics": "{}", "config": "{}",
                "logLineCount": 0, "historyLineCount": len(lines), "eventsLineCount": 0,
                "historyTail": json.dumps(lines[-1:]), "eventsTail": "[]", "tags": [], "notes": None,
                "wandbConfig": json.dumps({"t": self.started[run]})}
            return {"model": {**project, "bucket": bucket}}
        if op == "UpsertBucket":
            telemetry = (json.loads(v.get("config") or "{}").get("_wandb") or {}).get("value", {}).get("t")
            if telemetry is not None:
                self.started[v["name"]] = telemetry
            return {"upsertBucket": {"inserted": True, "bucket": {
                "id": "QnVja2V0OjE=", "name": v.get("name"), "displayName": v.get("name"), "description": "",
                "config": "{}", "sweepName": None, "historyLineCount": 0, "project": project}}}
        if op == "CreateRunFiles":
            return {"createRunFiles": {"runID": "QnVja2V0OjE=", "uploadHeaders": [], "files": [
                {"name": n, "uploadUrl": f"http://127.0.0.1:{port}/upload/{n}"} for n in v.get("files", [])]}}
        return {}
