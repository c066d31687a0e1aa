"""A real local Ray cluster for the tests and the benchmark: ``ray start --head --block`` on
127.0.0.1, in a process group of its own, stopped by ending exactly that group (``ray stop``
would end every Ray on the machine, other people's included)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port


def start_local_ray(temp: Path, num_cpus: int, num_gpus: int = 0,
                    env_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    """The head node's process and its address, once it accepts drivers. ``temp`` must be
    short (Ray's socket paths are limited to about 100 characters). Every port is a free
    one, so that two clusters on one machine never meet."""
    port, client, agent, agent_grpc, metrics = (free_port() for _ in range(5))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
           "RAY_USAGE_STATS_ENABLED": "0", **(env_extra or {})}
    env.pop("RAY_ADDRESS", None)
    log_path = temp / "ray-start.log"
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
         "--port", str(port), "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus), "--include-dashboard",
         "false", "--object-store-memory", str(400 * 1024 * 1024), "--temp-dir", str(temp), "--disable-usage-stats",
         "--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent),
         "--dashboard-agent-grpc-port", str(agent_grpc), "--metrics-export-port", str(metrics)],
        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited: {log_path.read_text(errors='replace')[-3000:]}")
        if "--block" in log_path.read_text(errors="replace"):  # printed once the head is up
            return proc, f"127.0.0.1:{port}"
        time.sleep(0.3)
    stop_local_ray(proc)
    raise RuntimeError(f"ray start did not come up within 180 s: {log_path.read_text(errors='replace')[-3000:]}")


def stop_local_ray(proc: subprocess.Popen) -> None:
    """End the head and everything it started (raylet, GCS, workers: one process group)."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
