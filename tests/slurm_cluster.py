"""A real one-node SLURM cluster on localhost for the cluster tests (tests/test_slurm.py).

Debian's ``slurm-wlm`` and ``munge`` are installed when missing and we are root (CI runs as
root); otherwise :func:`start` raises ``Unavailable`` with the reason and the tests skip.
Everything lives in a temporary directory: the munge key and socket, slurm.conf, the state
and spool directories, the logs. The daemons run in the foreground as children of this
process (``-D``), so :meth:`Cluster.stop` ends exactly the processes it started, by pid.
Client commands (sbatch, squeue, sacct, scancel) find the cluster through ``SLURM_CONF``,
which :meth:`Cluster.env` sets.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
TOOLS = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sacct", "scancel", "sinfo")


class Unavailable(Exception):
    """No SLURM cluster can be started here (the reason is the message)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def install() -> None:
    """apt-get install slurm-wlm and munge when a tool is missing (root only)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        raise Unavailable(f"needs {', '.join(missing)}: apt-get install {' '.join(PACKAGES)} (as root; `make peers`)")
    if shutil.which("apt-get") is None:
        raise Unavailable(f"needs {', '.join(missing)} and there is no apt-get to install {' '.join(PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], env=env, capture_output=True, text=True)
    if r.returncode:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], env=env, capture_output=True, text=True)
    if r.returncode:
        raise Unavailable(f"apt-get install {' '.join(PACKAGES)} failed: {r.stderr.strip().splitlines()[-1:]}")


@dataclass
class Cluster:
    root: Path
    cpus: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}

    def run(self, *cmd: str, check: bool = True, **extra: str) -> str:
        r = subprocess.run(list(cmd), env=self.env(**extra), capture_output=True, text=True, timeout=60)
        if check and r.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def _spawn(self, name: str, *cmd: str) -> None:
        log = open(self.root / f"{name}.out", "w")
        self.procs.append(subprocess.Popen(list(cmd), env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))

    def logs(self) -> str:
        """The daemons' logs (for a failing test's message)."""
        out = []
        for f in sorted(self.root.glob("*.log")) + sorted(self.root.glob("*.out")):
            out.append(f"--- {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(out)

    def wait(self, what: str, ready, *, timeout: float, failed=None, logs=None) -> None:
        """Poll ``ready()`` until true. Fails, with the daemons' logs (and ``logs()``), after
        ``timeout`` s, when a daemon exits, or when ``failed()`` names a reason."""
        end = time.monotonic() + timeout

        def why(text: str) -> str:
            return f"SLURM: {what}: {text}\n{self.logs()}" + (f"\n{logs()}" if logs else "")

        while not ready():
            if time.monotonic() > end:
                raise AssertionError(why(f"not ready after {timeout:.0f} s"))
            reason = failed() if failed else None
            if reason:
                raise AssertionError(why(f"failed: {reason}"))
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError(why(f"{p.args[0]} exited with {p.returncode}"))
            time.sleep(0.2)

    def start(self) -> None:
        r = self.root
        for d in ("state", "spool", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        sock = r / "munge" / "munge.socket"
        self._spawn("munged", "munged", "--foreground", "--force", f"--key-file={key}", f"--socket={sock}",
                    f"--pid-file={r / 'munge' / 'munged.pid'}", f"--seed-file={r / 'munge' / 'munge.seed'}",
                    f"--log-file={r / 'munged.log'}")
        self._ready("munged", sock.exists, timeout=30)
        host = socket.gethostname().split(".")[0]
        ctl_port, d_port = _free_port(), _free_port()
        self.conf.write_text(f"""\
ClusterName=snpbagtest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={ctl_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}
SlurmctldPidFile={r / 'slurmctld.pid'}
SlurmdPidFile={r / 'slurmd.pid'}
SlurmctldLogFile={r / 'slurmctld.log'}
SlurmdLogFile={r / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=defer_batch
MinJobAge=600
KillWait=5
InactiveLimit=0
JobRequeue=1
NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        self._spawn("slurmctld", "slurmctld", "-D", "-i", "-f", str(self.conf))
        self._spawn("slurmd", "slurmd", "-D", "-f", str(self.conf))

        def idle() -> bool:
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env(), capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() == "idle"

        self._ready("node", idle, timeout=120)

    def _ready(self, what: str, ready, *, timeout: float) -> None:
        try:
            self.wait(what, ready, timeout=timeout)
        except AssertionError as e:
            raise Unavailable(str(e)) from None

    def stop(self) -> None:
        """End every daemon this cluster started, by pid (TERM, then KILL)."""
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self.procs.clear()

    # --- jobs ----------------------------------------------------------------------------------

    def sbatch(self, *args: str, **extra: str) -> str:
        """Submit; the job id."""
        out = self.run("sbatch", "--parsable", *args, **extra)
        return out.strip().split(";")[0]

    def _jobs(self, job: str) -> list[dict[str, str]]:
        out = self.run("scontrol", "-o", "show", "job", job, check=False)
        return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in out.splitlines()]

    def job_info(self, job: str) -> dict[str, str]:
        """scontrol's fields of a (non-array) job: JobState, Restarts, ... (finished jobs stay
        MinJobAge seconds); {} when unknown."""
        jobs = self._jobs(job)
        return jobs[0] if jobs else {}

    def job_states(self, job: str) -> dict[str, str]:
        """{job or array task id: state}; a pending array's tasks appear once they split off."""
        states = {}
        for f in self._jobs(job):
            tid = f.get("ArrayTaskId")
            states[f"{f.get('ArrayJobId')}_{tid}" if tid and tid != "N/A" else f.get("JobId", "")] = f.get("JobState", "")
        return states


def start(root: Path) -> Cluster:
    """Install (if needed) and start a one-node cluster under ``root``; stopped on failure."""
    install()
    cluster = Cluster(root=root, cpus=os.cpu_count() or 1)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster
