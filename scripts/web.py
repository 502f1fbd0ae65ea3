#!/usr/bin/env python
"""The `web` process: WEB_CONCURRENCY daphne processes serving one listening socket.

One daphne runs Python on one core at a time (the GIL); a machine with more cores serves more requests with more
processes. This script binds the address once per daphne with SO_REUSEPORT, so that the kernel spreads new
connections evenly over them (one shared socket let whichever process woke first take a whole burst of
keep-alive connections), starts each daphne on its socket (`daphne --fd`, the way daphne's docs run it under a
process manager), and stays in front of them: SIGTERM/SIGINT stop them all, and if
one dies the others are stopped and this script exits with its status, so honcho (or systemd, or the container
runtime) sees the web process fail rather than run at part strength.

    scripts/web.py [--bind 0.0.0.0] [--port 8000] [-- daphne options…]
"""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def concurrency():
    value = os.environ.get("WEB_CONCURRENCY", "").strip()
    if value:
        return max(1, int(value))
    return max(1, len(os.sched_getaffinity(0)))


def listening_socket(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("daphne_args", nargs="*", help="passed to every daphne, after --")
    args = parser.parse_args(argv)
    sockets = [listening_socket(args.bind, args.port) for _ in range(concurrency())]
    # SWITCHBOARD_PROCESS=web: each daphne writes a `web` heartbeat (config.asgi), which health and alerts read.
    environment = {**os.environ, "SWITCHBOARD_PROCESS": "web"}
    children = [subprocess.Popen([sys.executable, "-m", "daphne", "--fd", str(sock.fileno()), *args.daphne_args,
                                  "config.asgi:application"], pass_fds=(sock.fileno(),), env=environment)
                for sock in sockets]
    print(f"web: {len(children)} daphne process(es) on {args.bind}:{args.port}", flush=True)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while any(child.poll() is None for child in children):
        for child in children:
            if child.poll() is not None and not stopping:  # one died on its own: take the rest down with it
                status = child.returncode or 1
                stop(signal.SIGTERM, None)
        time.sleep(0.2)
    return 0 if stopping and not status else status


if __name__ == "__main__":
    sys.exit(main())
