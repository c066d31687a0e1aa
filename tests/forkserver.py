"""Processes forked from one preloaded interpreter, for tests that start many short
programs: the crash tests' jobs (tests/reliability/crash.py) and `python -m store` runs
(the ``run_cli`` fixture, the README's command lines).

A fresh interpreter spends 1 to 4 s (far more on a loaded machine) importing the store,
Chroma, torch, open_clip and sentence-transformers; this server imports them once, as
multiprocessing's forkserver does, and forks a child per run. A child runs its script as
`python -c` would and exits as the interpreter does (non-daemon threads joined, atexit
handlers run), but without tearing down the preloaded modules one by one (2 s with torch
loaded, and no part of any program under test)."""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FORK_SERVER = r"""
import json, os, sys
import numpy, PIL.Image, torch, open_clip, chromadb, chromadb.api.rust, store, store.embedders.job, store.io.transfer
import sentence_transformers, store.cli
print("up", json.dumps(dict(os.environ)), flush=True)  # as its imports left it
job = None
while line := sys.stdin.readline():
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        job = req
        break
    print(pid, flush=True)
    sys.stdin.readline()  # reaped only when asked: until then a finished job stays a zombie, so its pid is not reused
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
if job is None:
    sys.exit(0)
for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        (2, job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
    os.dup2(os.open(path, flags, 0o644), fd)
sys.argv = ["-c", *job["args"]]
exec(compile(job["job"], "<string>", "exec"), {"__name__": "__main__"})
print("end", flush=True)  # the job's code ran to its end: a kill after this is not mid-job
import atexit, threading
threading._shutdown()
atexit._run_exitfuncs()
sys.stdout.flush()
os._exit(0)
"""


class ForkServer:
    """One per test session, started on first use, stopped at exit."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        env.pop("FEATURELAB_CHROMA_URL", None)
        self.proc = subprocess.Popen([sys.executable, "-c", FORK_SERVER], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        up, _, loaded = self.proc.stdout.readline().partition(" ")
        assert up == "up", "the fork server did not start"
        self.env: dict[str, str] = json.loads(loaded)  # what every child starts with
        self.set_by_imports = {k for k in self.env if env.get(k) != self.env[k]}  # torch's KMP_*, say
        self.dir = Path(tempfile.mkdtemp(prefix="featurelab-fork-"))
        atexit.register(self.stop)

    def start(self, job: str, args: tuple[str, ...]) -> tuple[int, Path, Path]:
        out, err = self.dir / "out", self.dir / "err"
        out.write_text("")
        self.proc.stdin.write(json.dumps({"job": job, "args": list(args), "out": str(out), "err": str(err)}) + "\n")
        return int(self.proc.stdout.readline()), out, err

    def wait(self) -> int:
        """The exit code of the job started last (negative: killed by that signal)."""
        self.proc.stdin.write("reap\n")
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


_server: ForkServer | None = None


def server() -> ForkServer:
    global _server
    if _server is None:
        _server = ForkServer()
    return _server


def spawn(job: str, *args: str) -> tuple[int, Path, Path]:
    """Start the job; return once it has printed ``ready``: (pid, stdout file, stderr file)."""
    pid, out, err = server().start(job, args)
    deadline = time.monotonic() + 120
    while not out.read_text().startswith("ready\n"):
        if time.monotonic() > deadline or is_zombie(pid):
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"job {pid} never said ready (exit {server().wait()}): {err.read_text()[-3000:]}")
        time.sleep(0.002)
    return pid, out, err


def is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


# `python -c CODE ARGS` in a child: the environment and folder it is given, then CODE as -c
# runs it; its exit status is the program's (no teardown of the preloaded modules).
_PYTHON_C = r"""
import atexit, json, os, sys, threading, traceback
os.environ.clear()
os.environ.update(json.loads(sys.argv[1]))
os.chdir(sys.argv[2])
code, sys.argv = sys.argv[3], ["-c", *sys.argv[4:]]
print("ready", flush=True)
try:
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
    status = 0
except SystemExit as exc:
    status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if isinstance(exc.code, str):
        print(exc.code, file=sys.stderr)
except BaseException:
    traceback.print_exc()
    status = 1
threading._shutdown()
atexit._run_exitfuncs()
sys.stdout.flush()
sys.stderr.flush()
os._exit(status)
"""

# `python -m store` is this, run by -c.
_STORE_MAIN = "import runpy\nrunpy.run_module('store', run_name='__main__', alter_sys=True)\n"

# Read at run time (or, pytest's own, by nothing under test), so a child may differ from the
# server in them; any other difference (a variable some module read when the server imported
# it) needs a fresh interpreter.
_RUNTIME_ENV = {"FEATURELAB_HOME", "NUMBA_CACHE_DIR", "PYTEST_CURRENT_TEST"}  # numba: not preloaded


def _can_fork(env: dict[str, str]) -> bool:
    """Whether a child of the server sees what a fresh interpreter with ``env`` would see:
    the same environment but for what is read at run time, and what the preloaded imports
    set themselves (a fresh interpreter's imports set it too)."""
    fs = server()
    return all(env.get(k) == fs.env.get(k) or (k in fs.set_by_imports and k not in env)
               for k in set(env) | set(fs.env) if k not in _RUNTIME_ENV)


def run_python(code: str, args: list[str], env: dict[str, str], cwd: Path | str = ".", *, fresh: bool = False,
               timeout: float = 300, argv: list[str] | None = None) -> subprocess.CompletedProcess:
    """`python -c code *args` with ``env`` in ``cwd``: forked from the preloaded server, or
    in a fresh interpreter when ``fresh`` or when ``env`` differs from the server's in more
    than what is read at run time. Output as subprocess.run(capture_output=True, text=True)
    gives it; a crash is a negative status, as there."""
    argv = argv or [sys.executable, "-c", code, *args]
    if fresh or not _can_fork(env):
        return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)
    fs = server()
    env = {**{k: fs.env[k] for k in fs.set_by_imports if k not in env}, **env}  # as the imports would set them
    pid, out, err = spawn(_PYTHON_C, json.dumps(env), str(Path(cwd).resolve()), code, *args)
    status = fs.wait()
    return subprocess.CompletedProcess(argv, status, out.read_text()[len("ready\n"):], err.read_text())


def run_store(args: list[str], env: dict[str, str], cwd: Path | str, *, fresh: bool = False,
              timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m store *args`, as ``run_python`` runs code."""
    return run_python(_STORE_MAIN, list(args), env, cwd, fresh=fresh, timeout=timeout,
                      argv=[sys.executable, "-m", "store", *args])
