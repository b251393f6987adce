"""A real single-node SLURM cluster (slurmctld, slurmd, slurmdbd + MariaDB, munge) for the
tests that claim SLURM. Partitions `cpu` (default), `gpu` and `short` (MaxTime 10 min); the node has two fake GPUs
(character devices) so `--gpus`/`--gres` jobs are scheduled and see CUDA_VISIBLE_DEVICES.

Needs root and Debian's slurm-wlm, slurmdbd, munge and mariadb-server (`.ci/run` installs
them). Daemons are stopped by the PIDs in their pid files, never by name.

    python tests/slurm_cluster.py start /tmp/cluster   # then sbatch/sinfo/sacct work
    python tests/slurm_cluster.py stop /tmp/cluster
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm")
FAKE_GPUS = 2
CLUSTER = "opdtest"
ACCOUNT = "opd"


def available() -> str | None:
    """Why no cluster can be started here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    missing = [b for b in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sbatch")
               if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]
    return f"not installed: {', '.join(missing)}" if missing else None


def _run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def _wait(what: str, ok, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.25)
    raise RuntimeError(f"test cluster: {what} did not come up within {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_configs(root: Path, host: str, db_port: int) -> None:
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.85)
    gpus = root / "dev"
    gpus.mkdir(exist_ok=True)
    for i in range(FAKE_GPUS):
        dev = gpus / f"fakegpu{i}"
        if not dev.exists():
            os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # like /dev/null: slurmd wants a char device
    (root / "slurm.conf").write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=600
KillWait=10
AccountingStoreFlags=job_comment
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={db_port}
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
GresTypes=gpu
NodeName={host} CPUs={os.cpu_count()} RealMemory={mem_mb} Gres=gpu:{FAKE_GPUS} State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
PartitionName=short Nodes={host} MaxTime=10 State=UP
""")
    (root / "gres.conf").write_text(
        "AutoDetect=off\n" + "".join(f"NodeName={host} Name=gpu File={gpus}/fakegpu{i}\n" for i in range(FAKE_GPUS))
    )
    dbd = root / "slurmdbd.conf"
    dbd.write_text(f"""\
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={db_port}
SlurmUser=root
PidFile={root}/slurmdbd.pid
LogFile={root}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={(root / 'mysql.port').read_text().strip()}
StorageUser=slurm
StoragePass=opdtest
StorageLoc=slurm_acct_db
""")
    dbd.chmod(0o600)


def _link_configs(root: Path) -> None:
    """Slurm's commands (and the srun inside every Snakemake job) read /etc/slurm."""
    SLURM_CONF.mkdir(exist_ok=True)
    for name in ("slurm.conf", "gres.conf", "slurmdbd.conf"):
        link = SLURM_CONF / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(root / name)


def _start_mariadb(root: Path) -> None:
    data, port = root / "mysql", _free_port()
    (root / "mysql.port").write_text(str(port))
    _run("mariadb-install-db", "--user=root", f"--datadir={data}", "--auth-root-authentication-method=socket")
    sock = root / "mysql.sock"
    subprocess.Popen(
        ["mariadbd", "--user=root", f"--datadir={data}", f"--socket={sock}", "--bind-address=127.0.0.1",
         f"--port={port}", f"--pid-file={root}/mariadb.pid", "--skip-name-resolve"],
        stdout=open(root / "mariadb.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    _wait("MariaDB", lambda: sock.exists() and (root / "mariadb.pid").exists())
    sql = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'opdtest';"
           "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")
    _wait("MariaDB login", lambda: subprocess.run(["mariadb", f"--socket={sock}", "-e", sql],
                                                   capture_output=True).returncode == 0)


def start(root: str | Path) -> Path:
    """Start every daemon, register the cluster and account, wait for the node to be idle."""
    root = Path(root).resolve()
    for sub in ("state", "spool"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    Path("/run/munge").mkdir(exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    _run("runuser", "-u", "munge", "--", "/usr/sbin/munged", "--force")
    _start_mariadb(root)
    db_port = _free_port()
    _write_configs(root, host, db_port)
    _link_configs(root)
    _run("/usr/sbin/slurmdbd")
    _wait("slurmdbd", lambda: subprocess.run(["sacctmgr", "-n", "list", "cluster"],
                                             capture_output=True).returncode == 0)
    _run("sacctmgr", "-i", "add", "cluster", CLUSTER)
    _run("sacctmgr", "-i", "add", "account", ACCOUNT)
    _run("sacctmgr", "-i", "add", "user", "root", f"account={ACCOUNT}", f"defaultaccount={ACCOUNT}")
    _run("/usr/sbin/slurmctld")
    _run("/usr/sbin/slurmd")
    _wait("the node", lambda: subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                                             text=True).stdout.split()[:1] in (["idle"], ["mixed"]))
    return root


def stop(root: str | Path) -> None:
    """Stop the daemons by their PIDs (slurmd first, MariaDB and munge last)."""
    root = Path(root).resolve()
    pid_files = [root / "slurmd.pid", root / "slurmctld.pid", root / "slurmdbd.pid", root / "mariadb.pid",
                 Path("/run/munge/munged.pid")]
    for pid_file in pid_files:
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:  # MariaDB is our child: reap it
                    break
            except ChildProcessError:
                pass
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
    for name in ("slurm.conf", "gres.conf", "slurmdbd.conf"):
        link = SLURM_CONF / name
        if link.is_symlink():
            link.unlink()


if __name__ == "__main__":
    action, where = sys.argv[1], sys.argv[2]
    {"start": start, "stop": stop}[action](where)


def slurm_job_ids(output: str) -> list[int]:
    return [int(j) for j in re.findall(r"submitted with SLURM jobid (\d+)", output)]


def sacct(job_ids, every_run: bool = False) -> list[dict]:
    """Accounting records (allocations only) with the rule each job ran, from its comment;
    ``every_run`` lists each run of a requeued job (sacct --duplicates), oldest first."""
    fields = ["JobID", "Partition", "State", "ExitCode", "AllocTRES", "Comment", "SubmitLine"]
    cmd = ["sacct", "-n", "-X", "-P", *(["-D"] if every_run else []), "-o", ",".join(fields),
           "-j", ",".join(map(str, job_ids))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [dict(zip(fields, line.split("|", len(fields) - 1))) for line in out.splitlines() if line.strip()]
    for row in rows:
        m = re.match(r"rule_([A-Za-z_]+?)(_wildcards_|$)", row["Comment"])
        row["rule"] = m.group(1) if m else None
    return rows
