"""The Python SDK: ``vmkit.Client`` speaks to vmkitd's REST API, locally over its Unix socket
or remotely over TCP with a token. The CLI is built on it, so the SDK can do all the CLI can.

    with vmkit.Client() as c:
        c.create_vm("web", ports=["8080:80"])
        print(c.exec("web", ["uname", "-a"]).stdout)
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .errors import DaemonError, HostError, VmkitError, error_from_body
from .paths import HomePaths, default_home
from .spec import validate_name

LONG = 600.0  # seconds: creating, starting and stopping VMs wait for the guest
PROVISION = 3600.0  # creating a VM waits for cloud-init, which may install packages


def _seg(name: str, what: str = "VM") -> str:
    """``name`` as one segment of a URL path: checked as a name, then percent-encoded, so that
    no '..', '/', '?' or '#' in it can reach another route (belt and braces)."""
    return urllib.parse.quote(validate_name(name, what), safe="")


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes


class Client:
    def __init__(self, url: str | None = None, token: str | None = None,
                 home: Path | None = None, autostart: bool = False, timeout: float = 30.0,
                 ca: str | None = None) -> None:
        """Local daemon by default (starting it when ``autostart``); ``url`` for a remote one,
        with ``ca`` the CA file to trust for an https URL with a certificate of its own."""
        self.paths = HomePaths(home or default_home())
        self.autostart = autostart and url is None
        self._where = url or str(self.paths.socket)  # for messages
        if url is None:  # no TLS and no proxies on a Unix socket: skip loading their settings
            transport = httpx.HTTPTransport(uds=str(self.paths.socket), verify=False)
            base = "http://vmkitd"
        else:
            transport, base = httpx.HTTPTransport(verify=ca or True), url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(transport=transport, base_url=base, headers=headers,
                                  timeout=timeout, trust_env=url is not None)

    def __enter__(self) -> Client:
        return self

    @classmethod
    def for_host(cls, name: str, home: Path | None = None) -> Client:
        """A client of the host registered as ``name`` ('vmkit host add')."""
        from . import hosts

        peer = hosts.get(HomePaths(home or default_home()), name)
        return cls(url=peer.url, token=peer.token, home=home, ca=peer.ca)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- transport -------------------------------------------------------------------

    def _send(self, method: str, path: str, stream: bool = False, **kw: Any) -> httpx.Response:
        request = self._http.build_request(method, "/v1" + path, **kw)
        for attempt in range(2):
            try:
                response = self._http.send(request, stream=stream)
                break
            except (httpx.ConnectError, FileNotFoundError) as e:
                if attempt or not self.autostart:
                    raise DaemonError(f"cannot reach vmkitd at {self._where}: "
                                      f"{self._why_unreachable(e)}") from e
                self.start_daemon()
        if response.status_code >= 400:
            response.read()
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise VmkitError(f"vmkitd answered {response.status_code}: {response.text[:200]}")
            raise error_from_body(body)
        return response

    def _why_unreachable(self, error: Exception) -> str:
        if self._where == str(self.paths.socket):
            return "start it with 'vmkitd'"
        if "CERTIFICATE_VERIFY_FAILED" in str(error):
            return (f"its TLS certificate is not trusted ({error}); give the CA that signed it "
                    "(vmkit host add --ca)")
        return f"{error or 'connection refused'}; is 'vmkitd --listen' running there?"

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self._send(method, path, **kw)
        return response.json() if response.content else None

    def start_daemon(self, wait: float = 15.0) -> None:
        """Start vmkitd in the background for this VMKIT_HOME and wait until it answers."""
        env = dict(os.environ, VMKIT_HOME=str(self.paths.root))
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                self.paths.run.mkdir(parents=True, exist_ok=True, mode=0o700)
                with open(self.paths.daemon_log, "ab") as log:
                    daemon = subprocess.Popen([sys.executable, "-m", "vmkit.daemon"], env=env,
                                              stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                              start_new_session=True)
            except OSError as e:
                raise HostError(f"cannot start vmkitd in VMKIT_HOME {self.paths.root}: "
                                f"{e.strerror}; set VMKIT_HOME to a directory you can write"
                                ) from None
            while daemon.poll() is None and time.monotonic() < deadline:
                if self._answers():
                    return
                time.sleep(0.02)
            if daemon.returncode == 3:  # another vmkitd owns this home: up, or shutting down
                if self._answers():
                    return
                time.sleep(0.2)
                continue
            if daemon.returncode is not None:
                tail = self.paths.daemon_log.read_text(errors="replace").strip().splitlines()
                raise DaemonError(f"vmkitd did not start: {tail[-1] if tail else 'no output'}")
        raise DaemonError(f"vmkitd did not answer within {wait:.0f} s; see {self.paths.daemon_log}")

    def _answers(self) -> bool:
        try:
            self._http.get("/v1/info", timeout=1.0)
            return True
        except (httpx.TransportError, FileNotFoundError):
            return False

    # --- host and images --------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return self._json("GET", "/info")

    def list_images(self) -> list[dict[str, Any]]:
        return self._json("GET", "/images")

    def get_image(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/images/{_seg(name, 'image')}")

    def build_image(self, name: str = "tiny", force: bool = False, builder: str | None = None,
                    **debian: Any) -> dict[str, Any]:
        """Start a build; returns the operation. ``wait_operation`` follows it. ``debian``:
        release, size, packages (comma-separated) and minimal, for the debian builder."""
        params = {"force": force, **({"builder": builder} if builder else {}), **debian}
        return self._json("POST", f"/images/{_seg(name, 'image')}/build", params=params)

    def import_image(self, name: str, path: str | Path) -> dict[str, Any]:
        """Start importing a disk image or ISO on the daemon's host; returns the operation."""
        return self._json("POST", f"/images/{_seg(name, 'image')}/import",
                          json={"path": str(Path(path).absolute())})

    def cancel_operation(self, op_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/operations/{_seg(op_id, 'operation')}")

    def remove_image(self, name: str) -> None:
        self._json("DELETE", f"/images/{_seg(name, 'image')}")

    def operation(self, op_id: str) -> dict[str, Any]:
        return self._json("GET", f"/operations/{_seg(op_id, 'operation')}")

    def wait_operation(self, op_id: str, on_progress: Callable[[dict[str, Any]], None] | None = None,
                       interval: float = 0.25) -> dict[str, Any]:
        """Poll an operation until it ends; raise its error if it failed."""
        while True:
            op = self.operation(op_id)
            if on_progress:
                on_progress(op)
            if op["state"] == "failed":
                raise VmkitError(op["error"] or "the operation failed")
            if op["state"] == "succeeded":
                return op
            time.sleep(interval)

    # --- VMs --------------------------------------------------------------------------

    def list_vms(self) -> list[dict[str, Any]]:
        return self._json("GET", "/vms")

    def get_vm(self, name: str) -> dict[str, Any]:
        return self._json("GET", f"/vms/{_seg(name)}")

    def create_vm(self, name: str, image: str | None = "tiny", cpus: int = 1,
                  memory: str = "256M", disk: str | None = None, ports: Iterable[str] = (),
                  network: str | list[str] | None = None, auto_remove: bool = False,
                  disposable: bool = False, io_limit: str | None = None,
                  display: str = "none", cdrom: str | None = None, firmware: str = "bios",
                  ssh_keys: str | None = None, user_data: str | None = None,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
        """Create and boot a VM; returns when its guest agent answers (and, for an image with
        cloud-init, when cloud-init is done: see the result's ``cloud_init``). ``network``:
        nat by default, none for a ``disposable`` VM (removed with all it wrote when it
        stops). ``io_limit``: disk throttling, e.g. "300iops,20M" (per second). ``display``:
        "vnc" for a VNC server (``vnc_display`` tells where). ``cdrom``: an ISO image in the
        CD drive; with ``image=None`` the disk starts blank (give ``disk``). ``ssh_keys``,
        ``user_data`` (#cloud-config text) and ``env``: cloud-init provisioning."""
        body = {"name": name, "image": image, "cpus": cpus, "memory": memory, "disk": disk,
                "ports": list(ports), "network": network, "auto_remove": auto_remove,
                "disposable": disposable, "io_limit": io_limit, "display": display,
                "cdrom": cdrom, "firmware": firmware, "ssh_keys": ssh_keys,
                "user_data": user_data, "env": env or {}}
        return self._json("POST", "/vms", json=body, timeout=PROVISION)

    def _action(self, name: str, action: str, **params: Any) -> dict[str, Any]:
        return self._json("POST", f"/vms/{_seg(name)}/{action}", params=params, timeout=LONG)

    def start_vm(self, name: str) -> dict[str, Any]:
        return self._action(name, "start")

    def stop_vm(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        return self._action(name, "stop", timeout=timeout)

    def resize_vm(self, name: str, cpus: int | None = None, memory: str | None = None,
                  disk: str | None = None) -> dict[str, Any]:
        """New CPUs, memory and/or a bigger disk for a stopped VM."""
        return self._json("POST", f"/vms/{_seg(name)}/resize",
                          json={"cpus": cpus, "memory": memory, "disk": disk})

    def kill_vm(self, name: str) -> dict[str, Any]:
        return self._action(name, "kill")

    def restart_vm(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        return self._action(name, "restart", timeout=timeout)

    def pause_vm(self, name: str) -> dict[str, Any]:
        return self._action(name, "pause")

    def resume_vm(self, name: str) -> dict[str, Any]:
        return self._action(name, "resume")

    def remove_vm(self, name: str, force: bool = False) -> None:
        self._json("DELETE", f"/vms/{_seg(name)}", params={"force": force}, timeout=LONG)

    # --- snapshots, forks, templates ---------------------------------------------------

    def list_snapshots(self, vm: str) -> list[dict[str, Any]]:
        return self._json("GET", f"/vms/{_seg(vm)}/snapshots")

    def create_snapshot(self, vm: str, name: str | None = None, memory: bool = True
                        ) -> dict[str, Any]:
        """Snapshot the disk, and memory + devices if the VM runs (unless memory=False)."""
        return self._json("POST", f"/vms/{_seg(vm)}/snapshots",
                          json={"name": name, "memory": memory}, timeout=LONG)

    def get_snapshot(self, vm: str, name: str) -> dict[str, Any]:
        return self._json("GET", f"/vms/{_seg(vm)}/snapshots/{_seg(name, 'snapshot')}")

    def restore_snapshot(self, vm: str, name: str) -> dict[str, Any]:
        return self._json("POST", f"/vms/{_seg(vm)}/snapshots/{_seg(name, 'snapshot')}/restore",
                          timeout=LONG)

    def remove_snapshot(self, vm: str, name: str) -> None:
        self._json("DELETE", f"/vms/{_seg(vm)}/snapshots/{_seg(name, 'snapshot')}", timeout=LONG)

    def fork(self, source: str, name: str, ports: Iterable[str] = (), network: str | None = None,
             auto_remove: bool = False) -> dict[str, Any]:
        """A new running VM from ``source``: VM@SNAPSHOT, a template, or a running VM."""
        body = {"source": source, "name": name, "ports": list(ports), "network": network,
                "auto_remove": auto_remove}
        return self._json("POST", "/forks", json=body, timeout=LONG)

    def list_templates(self) -> list[dict[str, Any]]:
        return self._json("GET", "/templates")

    def create_template(self, name: str, source: str) -> dict[str, Any]:
        return self._json("POST", "/templates", json={"name": name, "source": source},
                          timeout=LONG)

    def fast_template(self, image: str = "tiny", cpus: int = 1, memory: str = "256M",
                      network: str = "nat") -> dict[str, Any]:
        """The template 'run --fast' forks; made on first use."""
        body = {"image": image, "cpus": cpus, "memory": memory, "network": network}
        return self._json("POST", "/templates/fast", json=body, timeout=LONG)

    def remove_template(self, name: str) -> None:
        self._json("DELETE", f"/templates/{_seg(name, 'template')}", timeout=LONG)

    # --- migration --------------------------------------------------------------------

    def migrate(self, name: str, url: str, token: str, ca: str | None = None,
                postcopy: bool = False, verify: bool | None = None,
                watch: float | None = None, ports: Iterable[str] | None = None
                ) -> dict[str, Any]:
        """Start moving a running VM to the vmkit host at ``url``; returns the operation
        (follow it with ``wait_operation``). ``verify``: compare the guest's memory on both
        sides before it runs there (default: where the QEMU is not trusted to); ``watch``:
        seconds the guest must run well there before this host lets go of it (default 30);
        ``ports``: port forwards it gets there instead of its own, e.g. ["8081:80"] (needed
        for a destination on this same host, whose ports the VM holds until the switch)."""
        body = {"url": url, "token": token, "ca": ca, "postcopy": postcopy, "verify": verify,
                "watch": watch, "ports": None if ports is None else list(ports)}
        return self._json("POST", f"/vms/{_seg(name)}/migrate", json=body)

    def cancel_migration(self, name: str) -> None:
        self._json("POST", f"/vms/{_seg(name)}/migrate/cancel")

    # --- export and import ------------------------------------------------------------

    def export_vm(self, name: str, dest: Path, format: str = "vmkit", memory: bool = False,
                  on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Write VM ``name`` to the file ``dest`` (for ``format="libvirt"``, the new directory
        ``dest``). ``on_progress(done, total)`` follows the bytes. Nothing is left at ``dest``
        if it fails. Returns the path, size and SHA-256 of what was written."""
        from .formats import files

        dest = Path(dest).absolute()
        unpacked = format == "libvirt"
        files.check_destination(dest, unpacked)
        body = {"format": format, "memory": memory, "directory": str(dest) if unpacked else None}
        return {**self._download(f"/vms/{_seg(name)}/export", dest, unpacked, on_progress,
                                 json=body), "format": format}

    def dump_vm(self, name: str, dest: Path,
                on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Write the guest's memory to ``dest`` as an ELF core file (the guest pauses while
        it is taken). Returns the path, size and SHA-256 of what was written."""
        from .formats import files

        dest = Path(dest).absolute()
        files.check_destination(dest, False)
        return self._download(f"/vms/{_seg(name)}/dump", dest, False, on_progress)

    # --- private networks -------------------------------------------------------------

    def list_networks(self) -> list[dict[str, Any]]:
        return self._json("GET", "/networks")

    def create_network(self, name: str, subnet: str | None = None, isolated: bool = False
                       ) -> dict[str, Any]:
        """A private network (a bridge with DHCP and DNS); vmkitd must run as root."""
        return self._json("POST", "/networks",
                          json={"name": name, "subnet": subnet, "isolated": isolated})

    def remove_network(self, name: str) -> None:
        self._json("DELETE", f"/networks/{_seg(name, 'network')}")

    def vnc_display(self, name: str) -> dict[str, Any]:
        """The VNC server of a VM run with display vnc: its Unix socket and password."""
        return self._json("GET", f"/vms/{_seg(name)}/display")

    def stats(self, name: str) -> dict[str, Any]:
        """CPU, memory, disk and network counters of VM ``name``."""
        return self._json("GET", f"/vms/{_seg(name)}/stats")

    def diff(self, name: str, before: str | None = None, after: str | None = None
             ) -> list[dict[str, str]]:
        """Files added, removed and changed on the VM's disk from snapshot ``before`` (default:
        its image) to snapshot ``after`` (default: now)."""
        params = {k: v for k, v in (("from", before), ("to", after)) if v is not None}
        return self._json("GET", f"/vms/{_seg(name)}/diff", params=params, timeout=LONG)

    def start_capture(self, name: str) -> dict[str, Any]:
        """Start recording the VM's network traffic; ``stop_capture`` ends it."""
        return self._json("POST", f"/vms/{_seg(name)}/capture")

    def stop_capture(self, name: str, dest: Path,
                     on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """End the VM's capture and write it to ``dest`` as a pcap file."""
        from .formats import files

        dest = Path(dest).absolute()
        files.check_destination(dest, False)
        return self._download(f"/vms/{_seg(name)}/capture/stop", dest, False, on_progress)

    def _download(self, path: str, dest: Path, unpack: bool,
                  on_progress: Callable[[int, int], None] | None, **kw: Any) -> dict[str, Any]:
        """POST ``path`` and write the answer to ``dest`` (as a directory if ``unpack``)."""
        from .formats import files

        # The answer starts once vmkitd has the file ready: no read timeout until then.
        response = self._send("POST", path, stream=True, timeout=httpx.Timeout(30.0, read=None),
                              **kw)
        total, done = int(response.headers.get("content-length", 0)), 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(done, total)

        try:
            write = files.unpack if unpack else files.save
            sha256 = write(response.iter_bytes(1 << 20), dest, progress)
        except httpx.TransportError as e:
            raise DaemonError(f"the download from vmkitd broke off: {e}") from e
        finally:
            response.close()
        if done != total:
            raise DaemonError(f"the download from vmkitd broke off after {done} of {total} "
                              "bytes")
        return {"path": str(dest), "bytes": done, "sha256": sha256}

    def import_vm(self, path: Path, name: str | None = None, image: str | None = None,
                  ports: Iterable[str] | None = None,
                  on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Make a VM of a vmkit export, an OVA or a plain disk image (see the API).
        ``ports``: port forwards instead of the exported ones."""
        path = Path(path)
        total = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            done = 0
            with open(path, "rb") as f:
                while data := f.read(1 << 20):
                    done += len(data)
                    yield data
                    if on_progress:
                        on_progress(done, total)

        params: dict[str, Any] = {k: v for k, v in (("name", name), ("image", image))
                                  if v is not None}
        if ports is not None:
            params["port"] = list(ports)
        return self._json("POST", "/imports", params={**params, "filename": path.name},
                          content=chunks(), headers={"content-length": str(total)},
                          timeout=httpx.Timeout(30.0, read=None, write=None))

    # --- guest access -----------------------------------------------------------------

    def exec_stream(self, name: str, argv: list[str], stdin: bytes | None = None
                    ) -> Iterator[tuple[str, bytes | int]]:
        """Yield ("stdout"|"stderr", bytes) as the guest command writes, then ("exit", code)."""
        body: dict[str, Any] = {"argv": argv}
        if stdin:
            body["stdin"] = base64.b64encode(stdin).decode()
        r = self._send("POST", f"/vms/{_seg(name)}/exec", stream=True, json=body, timeout=None)
        try:
            for line in r.iter_lines():
                event = json.loads(line)
                if "exit_code" in event:
                    yield "exit", int(event["exit_code"])
                elif "error" in event:
                    raise error_from_body(event)
                else:
                    stream, data = next(iter(event.items()))
                    yield stream, base64.b64decode(data)
        finally:
            r.close()

    def exec(self, name: str, argv: list[str], stdin: bytes | None = None) -> ExecResult:
        out, err, code = bytearray(), bytearray(), -1
        for stream, data in self.exec_stream(name, argv, stdin):
            if stream == "exit":
                code = int(data)
            else:
                (out if stream == "stdout" else err).extend(data)  # type: ignore[arg-type]
        return ExecResult(code, bytes(out), bytes(err))

    def read_file(self, name: str, path: str) -> Iterator[bytes]:
        response = self._send("GET", f"/vms/{_seg(name)}/files", stream=True,
                              params={"path": path}, timeout=LONG)
        try:
            yield from response.iter_bytes()
        finally:
            response.close()

    def write_file(self, name: str, path: str, data: bytes | Iterable[bytes]) -> int:
        return int(self._json("PUT", f"/vms/{_seg(name)}/files", params={"path": path},
                              content=data, timeout=LONG)["bytes"])

    def logs(self, name: str, follow: bool = False) -> Iterator[bytes]:
        response = self._send("GET", f"/vms/{_seg(name)}/logs", stream=True,
                              params={"follow": follow}, timeout=None)
        try:
            yield from response.iter_bytes()
        finally:
            response.close()

    def console(self, name: str) -> Any:
        """A websocket session to the serial console (an httpx_ws context manager)."""
        from httpx_ws import connect_ws

        self.get_vm(name)  # starts the daemon if needed, and names a missing VM clearly
        return connect_ws(f"/v1/vms/{_seg(name)}/console", self._http)
