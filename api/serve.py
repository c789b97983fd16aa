"""Serving the API with several worker processes, each on its own listening socket (``SO_REUSEPORT``).

``uvicorn --workers N`` shares one listening socket between its workers, and whichever worker wakes first
accepts every connection waiting (asyncio accepts up to its backlog at a time): 200 connections opened
together landed 170 on one worker and 30 on the other here, and the first worker's answers took twice as
long while the second idled. With a socket per worker bound with ``SO_REUSEPORT`` the kernel spreads new
connections over the sockets by their addresses, evenly (Linux; where the option is missing, ``--workers``
above 1 is refused in one line).

The supervisor starts the workers, starts a worker again when one dies (after a pause that grows when it
dies at once again and again; a worker that cannot start at all stops the whole server with its exit
code) and on SIGTERM or SIGINT stops them all and waits for them (uvicorn lets each finish the answers it
has begun). The connections the kernel had already given a worker that is killed, waiting in its socket's
queue, are lost with it (the client sees the connection reset and retries); the other workers' are not.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from typing import Any

__all__ = ["reuse_port_socket", "serve"]

#: a worker that dies sooner than this after its start counts as one that could not start
QUICK_DEATH_S = 10.0
#: how many quick deaths in a row stop the server
QUICK_DEATHS_MAX = 3


def reuse_port_socket(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other processes may bind too (``SO_REUSEPORT``); listening
    unless ``listen`` is false (a bound socket that does not listen gets no connections)."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise OSError("this system has no SO_REUSEPORT; serve with one worker (--workers 1)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _worker(config_path: str, host: str, port: int, uvicorn_kwargs: dict[str, Any]) -> None:
    """One worker: its own socket on the shared address, the app, uvicorn serving until told to stop."""
    import uvicorn

    from api.app import create_app
    from rotation_platform.observability.logs import configure

    configure(default="json")  # as the one-process server: JSON lines, uvicorn's access log too
    app = create_app(config_path)
    # bound, not listening: asyncio's server listens once uvicorn has run the app's startup, so a worker
    # started again is given no connections to keep waiting while it imports and starts
    sock = reuse_port_socket(host, port, listen=False)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_kwargs))
    server.run(sockets=[sock])


def serve(config_path: str, host: str, port: int, workers: int, **uvicorn_kwargs: Any) -> int:
    """Serve with ``workers`` processes until SIGTERM/SIGINT; the exit code (0 when stopped on purpose)."""
    # each worker binds and listens on its own socket; bound here first (not listening, so it is given no
    # connections), a port in use is one line before anything starts, and the address stays reserved
    # while workers come and go
    try:
        held = reuse_port_socket(host, port, listen=False)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or stop what "
              "uses it", file=sys.stderr)
        return 5
    context = multiprocessing.get_context("spawn")  # no threads or loops of the supervisor in the workers
    procs: dict[int, Any] = {}
    stopping = [False]
    quick = [0]

    def start(slot: int) -> None:
        proc = context.Process(target=_worker, args=(config_path, host, port, uvicorn_kwargs),
                               name=f"api-worker-{slot}", daemon=False)
        proc.start()
        proc.started_at = time.monotonic()  # type: ignore[attr-defined]
        procs[slot] = proc

    def stop(signum, _frame) -> None:
        stopping[0] = True
        for proc in procs.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM if signum != signal.SIGINT else signal.SIGINT)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        for slot in range(workers):
            start(slot)
        while not stopping[0]:
            time.sleep(0.2)
            for slot, proc in list(procs.items()):
                if proc.is_alive() or stopping[0]:
                    continue
                proc.join()
                lived = time.monotonic() - proc.started_at  # type: ignore[attr-defined]
                quick[0] = quick[0] + 1 if lived < QUICK_DEATH_S else 0
                print(f"api worker {proc.pid} exited with code {proc.exitcode} after {lived:.1f}s"
                      + ("" if quick[0] < QUICK_DEATHS_MAX else "; it cannot start: stopping the server"),
                      file=sys.stderr, flush=True)
                if quick[0] >= QUICK_DEATHS_MAX:
                    code = proc.exitcode or 1
                    stop(signal.SIGTERM, None)
                    break
                time.sleep(min(5.0, 0.5 * 2 ** quick[0]) if quick[0] else 0.0)
                start(slot)
    finally:
        stop(signal.SIGTERM, None)
        for proc in procs.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for s, handler in previous.items():
            signal.signal(s, handler)
        held.close()
    return code
