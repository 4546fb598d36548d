"""Real processes for benchmarks and fault tests: start, stop, kill -9, and watch their memory.

Every process runs in its own session (process group), so stopping or killing it takes its
children with it (Celery's prefork pool, uvicorn's reloader) and never touches anything else.
Memory is read from `/proc/<pid>/status`: `VmHWM` is the kernel's own peak RSS of a process, so
sampling it every few hundred milliseconds still catches a peak between samples.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CELERY = str(Path(PYTHON).with_name("celery"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    predicate: Callable[[], object], timeout: float, *, interval: float = 0.1, what: str = ""
) -> object:
    """Poll until `predicate()` is truthy; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class Proc:
    """One child process in its own process group, logging to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log_path = (log_dir or ROOT / "var" / "bench") / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no acks, no goodbyes."""
        if self.popen is None:
            return
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the group, wait, then SIGKILL what is left; returns the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        # children that outlived their parent (a prefork pool after SIGTERM) go too
        self.signal_group(signal.SIGKILL)
        return self.popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def celery_worker(
    name: str,
    env: dict[str, str],
    *,
    concurrency: int = 1,
    pool: str = "prefork",
    log_dir: Path | None = None,
    extra: Sequence[str] = (),
) -> Proc:
    """A real `celery -A workers worker` process (not started yet)."""
    argv = [
        CELERY,
        "-A",
        "workers",
        "worker",
        f"--hostname={name}@%h",
        f"--concurrency={concurrency}",
        f"--pool={pool}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        *extra,
    ]
    return Proc(name, argv, env=env, log_dir=log_dir)


def clear_logs(log_dir: Path) -> None:
    """A run's log folder, without the logs of the run before."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob("*.log"):
        old.unlink()


def sendgrid_stand_in(port: int, api_key: str, log_dir: Path, record: Path | None = None) -> Proc:
    """The SendGrid-compatible server in its own process (not started yet). `--no-schema`: the
    benches measure our processes, not the stand-in's OpenAPI validation (the documented
    limits are still checked); `record` keeps its per-address record for the duplicate count."""
    argv = [PYTHON, "-m", "tests.support.sendgrid_server", "--no-schema"]
    argv += ["--port", str(port), "--api-key", api_key]
    if record is not None:
        argv += ["--record", str(record)]
    return Proc("sendgrid", argv, log_dir=log_dir)


class PrivateRedis:
    """A redis-server of this test's own on a free port, which the test may kill and restart."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log_dir = log_dir
        self.proc: Proc | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.starts += 1
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ]
        self.proc = Proc(f"redis-{self.port}-{self.starts}", argv, log_dir=self.log_dir).start()
        wait_for(self.ping, 10, what=f"private redis on :{self.port}")
        return self

    def ping(self) -> bool:
        try:
            return bool(redis_lib.Redis.from_url(self.url, socket_timeout=0.5).ping())
        except redis_lib.RedisError:
            return False

    def kill(self) -> None:
        """kill -9: whatever was queued in memory is gone, as after a real crash."""
        if self.proc is not None:
            self.proc.kill()
        wait_for(lambda: not port_open(self.port), 10, what="redis port to close")

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout=5)


@contextlib.contextmanager
def private_redis(log_dir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(log_dir).start()
    try:
        yield server
    finally:
        server.stop()


def read_status_kb(pid: int, key: str) -> int:
    """A `VmRSS`/`VmHWM` line of /proc/<pid>/status in KiB (0 when the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0


def read_pss_kb(pid: int) -> int:
    """Proportional set size in KiB: shared pages split between the processes sharing them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        pass
    return 0


@dataclass
class MemoryRecord:
    """What the sampler learnt about one named process tree."""

    peak_process_kb: int = 0  # the largest VmHWM of any single process in the tree
    peak_tree_kb: int = 0  # the largest sum of VmRSS over the tree in one sample
    # the same with PSS (pages shared by a prefork parent and its children counted once)
    peak_tree_pss_kb: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (elapsed s, tree RSS KiB)
    cpu_by_pid: dict[int, float] = field(default_factory=dict)  # user + system seconds, latest

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid.values())


class MemorySampler:
    """Samples the RSS and CPU time of named process trees in a background thread.

    `watch_postgres` adds the server backends of one database (CPU only: their RSS counts
    shared buffers), found anew at every sample since connections come and go.
    """

    def __init__(self, interval: float = 0.25, keep_samples_every: float = 0.0) -> None:
        self.interval = interval
        self.keep_every = keep_samples_every
        self.pids: dict[str, int] = {}
        self.records: dict[str, MemoryRecord] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._started = time.monotonic()
        self._last_kept = -1e9
        self.postgres: tuple[str, str] | None = None
        self._lock = threading.Lock()

    def watch(self, name: str, pid: int) -> None:
        self.pids[name] = pid
        self.records.setdefault(name, MemoryRecord())

    def watch_postgres(self, name: str, database: str) -> None:
        self.postgres = (name, f" {database} ")
        self.records.setdefault(name, MemoryRecord())

    def _sample_postgres(self) -> None:
        if self.postgres is None:
            return
        name, needle = self.postgres
        record = self.records[name]
        for process in psutil.process_iter(["name", "cmdline"]):
            try:
                if process.info["name"] != "postgres" or needle not in " ".join(
                    process.info["cmdline"] or ()
                ):
                    continue
                times = process.cpu_times()
            except psutil.Error:
                continue
            record.cpu_by_pid[process.pid] = times.user + times.system

    def start(self) -> MemorySampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def sample(self) -> None:
        now = time.monotonic() - self._started
        keep = self.keep_every and now - self._last_kept >= self.keep_every
        for name, pid in list(self.pids.items()):
            record = self.records[name]
            try:
                root = psutil.Process(pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            total = pss = 0
            for process in tree:
                total += read_status_kb(process.pid, "VmRSS")
                pss += read_pss_kb(process.pid)
                record.peak_process_kb = max(
                    record.peak_process_kb, read_status_kb(process.pid, "VmHWM")
                )
                with contextlib.suppress(psutil.Error):
                    times = process.cpu_times()
                    record.cpu_by_pid[process.pid] = times.user + times.system
            record.peak_tree_kb = max(record.peak_tree_kb, total)
            record.peak_tree_pss_kb = max(record.peak_tree_pss_kb, pss)
            if keep:
                record.samples.append((now, total))
        self._sample_postgres()
        if keep:
            self._last_kept = now

    def _run(self) -> None:
        self.native_id = threading.get_native_id()
        while not self._stop.is_set():
            with self._lock:
                self.sample()
            self._stop.wait(self.interval)

    def own_cpu(self) -> float:
        """CPU seconds of the sampler's own thread (a bench subtracts it from its process's)."""
        native_id = getattr(self, "native_id", None)
        if native_id is None:
            return 0.0
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds used so far by each watched tree (sampled now)."""
        with self._lock:
            self.sample()
            return {name: record.cpu_seconds for name, record in self.records.items()}

    def stop(self) -> dict[str, MemoryRecord]:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        return self.records


def own_peak_kb() -> int:
    """This process's own peak RSS (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class PySpy:
    """`py-spy record` attached to running processes (and their children), collapsed stacks out.

    For `--profile DIR` runs of the benches: the profile behind each change (README, Benchmarks).
    SIGINT makes py-spy write its file; `bench.profile_summary` reads it.
    """

    def __init__(self, out_dir: Path, rate: int = 200) -> None:
        self.out_dir, self.rate = out_dir, rate
        self.procs: list[subprocess.Popen[bytes]] = []

    def attach(self, name: str, pid: int, *, children: bool = True) -> None:
        spy = str(Path(PYTHON).with_name("py-spy"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        argv = [spy, "record", "--pid", str(pid), "--nonblocking"]
        argv += ["--subprocesses"] if children else []
        argv += ["--rate", str(self.rate), "--format", "raw"]
        argv += ["-o", str(self.out_dir / f"{name}.txt")]
        log = (self.out_dir / f"{name}.py-spy.log").open("ab")
        self.procs.append(
            subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
        log.close()

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
