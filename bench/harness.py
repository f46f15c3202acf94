"""Start a server on a free local port, load it with wrk, stop it: the parts every bench shares."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
WRK_INSTALL = "apt-get update && apt-get install -y wrk  (Debian/Ubuntu; macOS: brew install wrk)"


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            f"wrk is needed for the benchmark and was not found. Install it: {WRK_INSTALL}"
        )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of a GET; an HTTP error status is an answer, not an exception."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextlib.contextmanager
def serving(
    command: Sequence[str], probe_url: str, env: Mapping[str, str], timeout: float = 30.0
) -> Iterator[int]:
    """Run `command` in its own process group until the block ends; ready when it answers."""
    with tempfile.TemporaryFile() as stderr:  # a file, so a chatty server never blocks on a pipe
        process = subprocess.Popen(
            list(command),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # one group, so its workers stop with it
        )
        try:
            _wait_until_answering(process, probe_url, timeout, stderr)
            yield process.pid  # also the process group of the server and its workers
        finally:
            _stop(process)


def _wait_until_answering(
    process: subprocess.Popen[bytes], url: str, timeout: float, stderr: IO[bytes]
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr.seek(0)
            output = stderr.read().decode(errors="replace")
            raise SystemExit(f"server exited with {process.returncode}:\n{output[-2000:]}")
        try:
            http_get(url)
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server did not answer {url} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):  # a worker that outlived its master
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class WrkResult:
    requests_per_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    requests: int
    non_2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    # CPU (in cores) that processes other than the server and wrk used during the round.
    other_cpu_cores: float | None = None


SOCKET_ERRORS = ("connect", "read", "write", "timeout")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M)
    if not (rate and total and p50 and p99):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        latency_p50_ms=_ms(p50.group(1)),
        latency_p99_ms=_ms(p99.group(1)),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(zip(SOCKET_ERRORS, map(int, errors.groups()), strict=True))
        if errors
        else {},
    )


def run_wrk(
    url: str, *, seconds: int, connections: int, threads: int, headers: Mapping[str, str]
) -> WrkResult:
    command = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    return parse_wrk(done.stdout)


class OtherCpu:
    """How busy the machine was with work that is not ours, during one load run.

    The machine may be shared; the figures are only comparable when this stays near 0.
    Busy time of the whole machine (hypervisor steal included) minus the server's
    process group and wrk (a reaped child of ours), in cores. None without /proc.
    """

    def __init__(self, server_group: int) -> None:
        self.group = server_group
        self.hz = os.sysconf("SC_CLK_TCK")

    def _snapshot(self) -> tuple[float, float, float, float]:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        # Interrupt time is left out: it is mostly the loopback traffic of the load itself.
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, fields[:8])
        machine_busy = (user + nice + system + steal) / self.hz
        server = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                after_name = stat.read_text().rsplit(")", 1)[1].split()
                if int(after_name[2]) == self.group:  # field 5, pgrp
                    server += int(after_name[11]) + int(after_name[12])  # utime, stime
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return machine_busy, server / self.hz, children.ru_utime + children.ru_stime, time.time()

    @contextlib.contextmanager
    def measuring(self) -> Iterator[dict[str, float | None]]:
        out: dict[str, float | None] = {"cores": None}
        try:
            before = self._snapshot()
        except OSError:
            yield out
            return
        yield out
        after = self._snapshot()
        busy, server, wrk, wall = (a - b for a, b in zip(after, before, strict=True))
        out["cores"] = round(max(0.0, busy - server - wrk) / wall, 2)


def machine_busy_cores(seconds: float = 2.0) -> float | None:
    """How many cores the whole machine kept busy over `seconds` (None without /proc)."""
    try:
        first = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
        time.sleep(seconds)
        second = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return None
    busy = [0, 1, 2, 7]  # user, nice, system, steal
    used = sum(int(second[i]) - int(first[i]) for i in busy)
    return used / os.sysconf("SC_CLK_TCK") / seconds


def wait_for_idle(max_seconds: float, threshold: float = 0.2) -> float | None:
    """On a shared machine, wait (at most `max_seconds`) until others leave the CPUs alone.

    Returns the last busy figure seen; the caller measures anyway after the wait.
    """
    deadline = time.monotonic() + max_seconds
    busy = machine_busy_cores()
    while busy is not None and busy > threshold and time.monotonic() < deadline:
        busy = machine_busy_cores()
    return busy


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk_path = shutil.which("wrk")
    wrk = subprocess.run([wrk_path, "-v"], capture_output=True, text=True) if wrk_path else None
    return {
        "hostname": socket.gethostname(),
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "wrk": (wrk.stdout or wrk.stderr).split("[")[0].strip() if wrk else "absent",
    }


RESULTS_DIR = ROOT / "bench" / "results"


def write_results(name: str, report: dict[str, Any]) -> Path:
    """`bench/results/<name>-<UTC stamp>.json` (git-ignored); returns the path, relative."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(report, indent=2, default=str))
    return path.relative_to(ROOT)


def benchmark_of(path: Path) -> str | None:
    """`auth-20261207T101500Z.json` -> "auth"; None for a name that is not a run's."""
    match = re.fullmatch(r"(.+)-\d{8}T\d{6}Z\.json", path.name)
    return match.group(1) if match else None


def newest(benchmark: str, since: float = 0.0) -> Path | None:
    runs = [
        p
        for p in RESULTS_DIR.glob(f"{benchmark}-*.json")
        if benchmark_of(p) == benchmark and p.stat().st_mtime >= since
    ]
    return max(runs, key=lambda p: p.name, default=None)


def load(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data: Any = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
