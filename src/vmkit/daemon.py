"""vmkitd: serves the API on a Unix socket private to its user, and on TCP only when asked
(``--listen ADDR:PORT``), where every request needs the token in VMKIT_HOME/run/token
('vmkit host token' shows it), over TLS when given a certificate (``--tls-cert/--tls-key``).
With ``--cluster URL[,URL...]`` it joins the cluster whose state is in that etcd, and serves
the cluster's token instead (every member takes the same one).

VMs are QEMU processes of their own: stopping or killing vmkitd leaves them running, and the
next vmkitd re-attaches to them.
"""

from __future__ import annotations

import argparse
import contextlib
import asyncio
import logging
import os
import secrets
import socket
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from .api.app import create_app
from .cluster.etcd import Tls, check_endpoints
from .cluster.membership import ClusterConfig, check_config
from .errors import VmkitError
from .core.registry import AlreadyRunningError
from .server import Server
from .paths import HomePaths, atomic_write, default_home

log = logging.getLogger("vmkitd")
EXIT_ALREADY_RUNNING = 3  # the CLI's autostart then waits for the daemon that is running


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to vmkitd, which runs several of them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def load_token(paths: HomePaths) -> str:
    """The TCP API token, made on first use and kept private to the user."""
    try:
        return paths.token.read_text().strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        atomic_write(paths.token, token.encode() + b"\n", 0o600)
        return token


def bind_unix(path: Path) -> socket.socket:
    """Bind the API socket with mode 0600 (we hold the home's lock: any old socket is stale)."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock


def parse_listen(text: str) -> tuple[str, int]:
    addr, _, port = text.rpartition(":")
    if not port.isdigit() or not addr:
        raise VmkitError(f"--listen {text!r}: use ADDR:PORT, e.g. 127.0.0.1:8765")
    return addr.strip("[]"), int(port)


def _api_server(app: Any, tls: tuple[Path, Path] | None = None) -> _Server:
    cert, key = tls or (None, None)
    return _Server(uvicorn.Config(app, lifespan="off", log_level="warning", ws="auto",
                                  ssl_certfile=cert, ssl_keyfile=key))


def ui_url(listen: str, tls: bool) -> str:
    """The dashboard's URL on the TCP listener; a wildcard address is reached locally."""
    addr, port = parse_listen(listen)
    addr = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(addr, addr)
    return f"{'https' if tls else 'http'}://{f'[{addr}]' if ':' in addr else addr}:{port}/ui/"


def check_tls(listen: str | None, cert: Path | None, key: Path | None
              ) -> tuple[Path, Path] | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None or listen is None:
        raise VmkitError("TLS needs --listen, --tls-cert and --tls-key together")
    for path in (cert, key):
        if not os.access(path, os.R_OK):
            raise VmkitError(f"cannot read {path}: give a PEM certificate and its key")
    return cert, key


async def serve(home: Path, listen: str | None, tls: tuple[Path, Path] | None = None,
                cluster: ClusterConfig | None = None) -> None:
    server = await Server.open(home, cluster)
    paths = server.core.paths
    # made now, so that 'vmkit host token' can show it; a cluster's members share one
    token = server.cluster.token if server.cluster else load_token(paths)
    ui = ui_url(listen, tls is not None) if listen else None
    listeners = [(_api_server(create_app(server, ui_url=ui)), bind_unix(paths.socket))]
    if listen:
        addr, port = parse_listen(listen)
        tcp = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((addr, port))
        listeners.append((_api_server(create_app(server, token=token, ui_url=ui), tls), tcp))
        log.info("API on %s://%s:%d (token in %s)", "https" if tls else "http", addr, port,
                 paths.token)
    apis = [s for s, _ in listeners]
    atomic_write(paths.daemon_pid, f"{os.getpid()}\n".encode())
    log.info("vmkitd %d serving on %s", os.getpid(), paths.socket)
    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in listeners]

    def stop_serving() -> None:
        server.core.changes.close()  # event streams never end on their own
        for api in apis:
            api.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop_serving)
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_serving()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.close()
        paths.socket.unlink(missing_ok=True)  # ours: the lock kept any other daemon out
        paths.daemon_pid.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vmkitd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=None,
                        help="state directory (default: $VMKIT_HOME or ~/.local/share/vmkit)")
    parser.add_argument("--listen", metavar="ADDR:PORT",
                        help="also serve the API on TCP, protected by a token")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM",
                        help="serve TCP over TLS with this certificate (and --tls-key)")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    parser.add_argument("--cluster", metavar="URL[,URL...]",
                        help="join the cluster whose state is in this etcd (its members' "
                             "client URLs); needs --listen")
    parser.add_argument("--host-name", metavar="NAME", default=socket.gethostname().split(".")[0],
                        help="this host's name in the cluster (default: the hostname)")
    for opt, what in (("ca", "the CA of etcd's certificates"),
                      ("cert", "a client certificate for etcd"), ("key", "its key")):
        parser.add_argument(f"--etcd-{opt}", metavar="PEM", help=what)
    parser.add_argument("--cluster-ca", metavar="PEM",
                        help="the CA that signed the members' --tls-cert: members check each "
                             "other's API with it (default: the public CAs)")
    parser.add_argument("--cluster-memory", type=int, metavar="MIB",
                        help="memory this host offers the cluster's VMs (default: all of it)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # qemu.qmp logs every refused connect and every disconnect; vmkit reports what matters.
    logging.getLogger("qemu.qmp").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    # httpx logs every request at INFO: a cluster member renews its lease every few seconds.
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        tls = check_tls(args.listen, args.tls_cert, args.tls_key)
        cluster = check_config(check_endpoints(args.cluster), args.host_name, args.listen,
                               tls is not None, Tls(args.etcd_ca, args.etcd_cert, args.etcd_key),
                               args.cluster_memory, args.cluster_ca) if args.cluster else None
        asyncio.run(serve(args.home or default_home(), args.listen, tls, cluster))
    except VmkitError as e:
        print(f"vmkitd: {e.message}", file=sys.stderr)
        sys.exit(EXIT_ALREADY_RUNNING if isinstance(e, AlreadyRunningError) else 1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
