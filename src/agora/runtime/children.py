"""Child processes of `agora cluster`: started, their output forwarded, stopped.

Each child's stdout and stderr go, line by line, to one stream with the child's name as
prefix (`auth.1          | ...`), and its last lines are kept for error messages. A
child runs in a session of its own, so that a terminal's Ctrl-C reaches only the
cluster, which stops the children in order; and it gets SIGKILL from the kernel if the
cluster dies without stopping it (Linux's PR_SET_PDEATHSIG), so that none outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import httpx

START_SECONDS = 30.0
STOP_SECONDS = 10.0
TAIL_LINES = 200

# Loaded once, here: the function run between fork and exec must not load anything.
try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not a glibc/musl system
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _LIBC is not None and hasattr(_LIBC, "prctl"):
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


class ChildFailed(Exception):
    """A child exited, or did not answer, while the cluster was starting."""


class Output:
    """Forwards children's lines, prefixed, to one stream; keeps each child's tail."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.tails: dict[str, list[str]] = {}

    def line(self, name: str, text: str) -> None:
        with self.lock:
            tail = self.tails.setdefault(name, [])
            tail.append(text)
            del tail[:-TAIL_LINES]
            with contextlib.suppress(ValueError, OSError):  # a closed stream drops lines
                self.stream.write(f"{name:<15} | {text}\n")
                self.stream.flush()

    def say(self, text: str) -> None:
        self.line("cluster", text)

    def tail(self, name: str) -> str:
        with self.lock:
            return "\n".join(self.tails.get(name, []))


@dataclass
class Child:
    """One process: its name, command line, environment, and the URL that tells it is up
    (any HTTP answer there)."""

    name: str
    command: list[str]
    env: dict[str, str]
    output: Output
    probe_url: str
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None

    def spawn(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (our own command line)
            self.command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        pipe = self.process.stdout
        assert pipe is not None

        def pump() -> None:
            with pipe:
                for raw in pipe:
                    self.output.line(self.name, raw.decode(errors="replace").rstrip("\n"))

        self.reader = threading.Thread(target=pump, name=f"output-{self.name}", daemon=True)
        self.reader.start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        """Up and not saying "not ready" (an instance's /readyz answers 503 until it is)."""
        try:
            response = httpx.get(self.probe_url, timeout=2)
        except httpx.TransportError:
            return False
        return response.status_code != 503

    def signal(self, number: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(number)

    def wait(self, timeout: float = STOP_SECONDS) -> None:
        """Wait for the exit, SIGKILL after `timeout`; then drain the output."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.output.say(f"{self.name} did not stop within {timeout:.0f}s: SIGKILL")
            self.process.kill()
            self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=2)

    def kill(self) -> None:
        """SIGKILL, as a crash would (a fault test's way to lose an instance)."""
        self.signal(signal.SIGKILL)
        self.wait()

    def start(self) -> None:
        """Spawn and wait until it answers (a test restarting one instance)."""
        self.spawn()
        wait_ready([self])


def wait_ready(children: Sequence[Child], stopping: threading.Event | None = None) -> None:
    """Until each answers; ChildFailed if one exits or is still silent after START_SECONDS,
    or if `stopping` is set meanwhile."""
    waiting = list(children)
    deadline = time.monotonic() + START_SECONDS
    while waiting:
        for child in list(waiting):
            code = child.exit_code()
            if code is not None:
                raise ChildFailed(f"{child.name} exited with {code} while starting")
            if child.answers():
                waiting.remove(child)
        if not waiting:
            return
        if time.monotonic() > deadline:
            names = ", ".join(child.name for child in waiting)
            raise ChildFailed(f"no answer within {START_SECONDS:.0f}s from {names}")
        if stopping is not None and stopping.wait(0.1):
            raise ChildFailed("stopped while starting")
        if stopping is None:
            time.sleep(0.1)
