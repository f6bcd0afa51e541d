"""Local multi-node Ray clusters for tests: each node a ``ray start --block`` process in its own process group,
with its own ports, so that two nodes (and other Ray runtimes) share one machine. A node is stopped by signalling
its group, never with ``ray stop``, which would kill every Ray process of the user on the machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path

__all__ = ["RAY", "free_port", "kill_node", "node_ports", "start_node", "stop_node", "wait_for"]

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_ports() -> list[str]:
    """Free ports for one node's services: two nodes on one machine (and other Ray runtimes) must not collide."""
    ports = [f"--{name}-port={free_port()}" for name in
             ("node-manager", "object-manager", "dashboard-agent-listen", "metrics-export", "runtime-env-agent")]
    return [*ports, "--min-worker-port=0", "--max-worker-port=0"]


def start_node(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL to the node's whole process group, as when its machine disappears."""
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait()


def stop_node(node: subprocess.Popen) -> None:
    """SIGTERM to the node's ``ray start --block`` (it stops what it started), then SIGKILL to its group."""
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    kill_node(node)


def wait_for(ready: Callable[[], object], nodes: list[subprocess.Popen], log: Path, timeout: float = 90) -> None:
    """Poll ``ready()`` until it is truthy; AssertionError with ``log`` if a node exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(node.poll() is not None for node in nodes):
            raise AssertionError(f"ray start exited:\n{log.read_text()}")
        try:
            if ready():
                return
        except (OSError, KeyError, urllib.error.URLError):
            pass
        time.sleep(1)
    raise AssertionError(f"the cluster did not come up in {timeout:.0f} s:\n{log.read_text()}")
