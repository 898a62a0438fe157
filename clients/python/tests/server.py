"""A real whizbangd for the tests, started as the C end-to-end tests start
it (tests/e2e_util.c): 127.0.0.1 port 0, a fresh temporary data directory,
the port read from --port-file, stopped with SIGTERM and a bounded wait.
kill() ends the process only (SIGKILL by default: no goodbye to anyone);
restart() then starts a new whizbangd on the same port and data directory."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Optional, Sequence

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 20


def program(env: str, built: str) -> str:
    """$env, or the program in the source tree's build/ for a run by hand."""
    path = os.environ.get(env) or os.path.join(REPO, "build", built)
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{env} is not set and {path} does not exist: run through "
                           "`meson test -C build --suite clients`, or build first")
    return path


class Server:
    def __init__(self) -> None:
        self.dir = ""
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.extra: list[str] = []

    @property
    def data_dir(self) -> str:
        return os.path.join(self.dir, "data")

    @property
    def log_file(self) -> str:
        return os.path.join(self.dir, "server.log")

    @property
    def url(self) -> str:
        return f"whizbang://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"whizbang+unix://{os.path.join(self.data_dir, 'whizbangd.sock')}"

    def start(self, extra: Sequence[str] = ()) -> None:
        self.dir = tempfile.mkdtemp(prefix="wb-py-")
        self.extra = list(extra)
        self._spawn()

    def _spawn(self) -> None:
        port_file = os.path.join(self.dir, "port")
        if os.path.exists(port_file):
            os.unlink(port_file)
        args = [program("WHIZBANGD", "server/whizbangd"), "--listen", f"127.0.0.1:{self.port}",
                "--data-dir", self.data_dir, "--port-file", port_file, "--log-level", "info",
                "--metrics-listen", "off", "--anonymous-role=admin", *self.extra]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text.isdigit() and 0 < int(text) < 65536:
                    self.port = int(text)
                    return
            except FileNotFoundError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"whizbangd exited during start-up ({self.proc.returncode}):\n"
                                   + self.log_tail())
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError(f"whizbangd wrote no port file within {START_TIMEOUT_S} s:\n"
                                   + self.log_tail())
            time.sleep(0.005)

    def kill(self, sig: int = signal.SIGKILL) -> int:
        """Sends sig and waits for the process to end (bounded); returns its
        status. The data directory stays, for restart()."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self) -> None:
        """A new whizbangd on the same port and data directory (after
        kill()); the port may take a moment to be free again."""
        assert self.proc is None or self.proc.poll() is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self._spawn()
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_file, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> int:
        """SIGTERM, a bounded wait (then SIGKILL); returns the exit status.
        Keeps the log in $WB_KEEP_SERVER_LOGS for tests/secret-scan.sh."""
        status = -1
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.proc is not None:
            status = self.proc.returncode
        self.proc = None
        keep = os.environ.get("WB_KEEP_SERVER_LOGS")
        if keep and os.path.isdir(keep) and os.path.exists(self.log_file):
            shutil.copy(self.log_file, os.path.join(keep, f"py-{os.getpid()}-{os.path.basename(self.dir)}.log"))
        shutil.rmtree(self.dir, ignore_errors=True)
        return status


def bench_server(address: Optional[str], whizbangd: str) -> tuple[Optional[Server], str]:
    """The server a benchmark runs against: HOST:PORT of a running one, or
    (address None) a whizbangd spawned from whizbangd on 127.0.0.1:0 with a
    fresh data directory, returned to be stopped."""
    if address is not None:
        return None, address
    os.environ.setdefault("WHIZBANGD", whizbangd)
    spawned = Server()
    spawned.start()
    return spawned, f"127.0.0.1:{spawned.port}"
