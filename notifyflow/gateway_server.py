"""`notifyflow gateway`: the gateway in one process, or in N worker processes on one port.

With `--workers N`, each worker binds its own listening socket to the port with SO_REUSEPORT. The
kernel spreads new connections over the sockets (by a hash of each connection's addresses), each
worker accepts from its own queue, and each has its own descriptor limit and memory: one machine
holds N times the connections one process can (bench.gateway). (uvicorn's own `workers` shares one
socket, whose connections go to whichever worker accepts first, not evenly.) The parent only
supervises: it restarts a worker that dies (its devices reconnect to the others meanwhile) and
stops them all on SIGINT or SIGTERM. /health and /metrics answer for the worker that takes the
request; on Kubernetes run one worker per pod and scale pods instead.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gateway.app import SERVER_OPTIONS

log = logging.getLogger(__name__)
BACKLOG = 4096  # a reconnect storm after a restart queues here rather than being refused
RESTART_PAUSE_S = 1.0  # a worker that dies at once is not restarted in a tight loop


def serve(host: str, port: int, workers: int = 1, log_level: str = "info") -> None:
    if workers <= 1:
        import uvicorn

        uvicorn.run("gateway.app:create_app", host=host, port=port, log_level=log_level, backlog=BACKLOG,
                    **SERVER_OPTIONS)
        return
    supervise(host, port, workers, log_level)


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def run_worker(host: str, port: int, log_level: str) -> None:
    """One worker: uvicorn on its own SO_REUSEPORT socket (uvicorn handles SIGINT/SIGTERM)."""
    import uvicorn

    sock = reuse_port_socket(host, port)
    config = uvicorn.Config("gateway.app:create_app", host=host, port=port, log_level=log_level,
                            backlog=BACKLOG, **SERVER_OPTIONS)
    uvicorn.Server(config).run(sockets=[sock])


def supervise(host: str, port: int, workers: int, log_level: str) -> None:
    command = [sys.executable, "-m", "notifyflow.gateway_server", "--host", host, "--port", str(port),
               "--log-level", log_level]
    stopping: list[int] = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    children = [subprocess.Popen(command) for _ in range(workers)]
    try:
        while not stopping:
            time.sleep(0.2)
            for n, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    log.warning("gateway worker %d exited with %s; starting it again", child.pid, child.returncode)
                    time.sleep(RESTART_PAUSE_S)
                    children[n] = subprocess.Popen(command)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)  # uvicorn's graceful stop: connections are closed, not cut
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def listening(port: int) -> int:
    """How many sockets listen on the port here (each worker has its own): to wait for all of them."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description="one gateway worker on a shared port (see notifyflow gateway)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    run_worker(args.host, args.port, args.log_level)


if __name__ == "__main__":
    main()
