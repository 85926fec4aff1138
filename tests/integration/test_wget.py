"""The tiny guest's HTTP client, through the VM's NAT to a server on the host's loopback.

Debian's busybox wget segfaulted (exit 139) on "-T SEC" before it connected, whatever the
URL; the image now has GNU wget behind a shell that finds it. The VM runs on network "nat"
under a vmkitd inside a network namespace made for the test (no route out), where the guest
reaches the namespace's 127.0.0.1 as 10.0.2.2.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ..conftest import Daemon

# Serves BODY at /hello on 127.0.0.1, on a port of its choosing that it prints first.
SERVER = """
import http.server, sys
body = sys.argv[1].encode()
class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/hello"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body) if ok else 0))
        self.end_headers()
        if ok:
            self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hello)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"vmkit-wget{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.fixture
def served(namespace: str) -> Iterator[tuple[int, bytes]]:
    """An HTTP server on the namespace's loopback: its port and the body it serves."""
    body = secrets.token_hex(16).encode()
    proc = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-c", SERVER,
                             body.decode()], stdout=subprocess.PIPE)
    try:
        assert proc.stdout
        yield int(proc.stdout.readline()), body
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def nat_daemon(own_daemon, namespace: str) -> Daemon:
    return own_daemon(netns=namespace)


def test_guest_wget_fetches_from_the_host_through_nat(nat_daemon: Daemon,
                                                      served: tuple[int, bytes]) -> None:
    port, body = served
    with nat_daemon.client() as c:
        c.create_vm("wget1", network="nat")
        # -T is what made busybox's wget segfault; through "sh -c" as a user's script runs it.
        got = c.exec("wget1", ["sh", "-c", f"wget -T 20 -q -O- http://10.0.2.2:{port}/hello"])
        assert (got.exit_code, got.stdout) == (0, body), got.stderr
        # Nothing listens on port 1 of the test's namespace: a plain failure, not a crash.
        closed = c.exec("wget1", ["wget", "-T", "20", "-O-", "http://10.0.2.2:1/"])
        assert closed.exit_code == 4, closed.stderr  # GNU wget: network failure
        assert b"Connection refused" in closed.stderr
        missing = c.exec("wget1", ["wget", "-T", "20", "-O-", f"http://10.0.2.2:{port}/nope"])
        assert missing.exit_code == 8 and b"404" in missing.stderr  # 8: an error response
