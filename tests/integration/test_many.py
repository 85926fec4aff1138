"""Eight small VMs at once on a 2-core host, each with its own name, disk, port and console."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx


from ..conftest import Daemon, free_port


def test_eight_vms_at_once(daemon: Daemon, make_vm) -> None:
    ports = [free_port() for _ in range(8)]
    names = [f"many{i}" for i in range(8)]

    def boot(i: int) -> dict:
        return make_vm(names[i], memory="128M", ports=[f"{ports[i]}:8000"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        vms = list(pool.map(boot, range(8)))
    assert all(v["state"] == "running" for v in vms)
    assert len({v["pid"] for v in vms}) == 8 and len({v["mac"] for v in vms}) == 8

    with daemon.client() as c:
        for i, name in enumerate(names):
            assert c.exec(name, ["hostname"]).stdout == f"{name}\n".encode()
            c.exec(name, ["sh", "-c", f"echo own-{i} > /root/id && mkdir -p /w && "
                          f"echo {name} > /w/index.html && httpd -p 8000 -h /w"])
        for i, name in enumerate(names):
            assert c.exec(name, ["cat", "/root/id"]).stdout == f"own-{i}\n".encode()
            r = httpx.get(f"http://127.0.0.1:{ports[i]}/index.html", timeout=10)
            assert r.text == f"{name}\n"
        with c.console(names[3]) as ws:
            ws.send_bytes(b"\rhostname\r")
            seen = b""
            while b"many3\r\n" not in seen:
                seen += ws.receive_bytes(timeout=20)
        listed = {v["name"]: v["state"] for v in c.list_vms()}
        assert all(listed[n] == "running" for n in names)
