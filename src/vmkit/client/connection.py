"""How the SDK reaches vmkitd: HTTP over its Unix socket or TCP, errors turned back into
vmkit's exceptions, starting a local daemon on demand, and answers read into models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx

from ..errors import DaemonError, HostError, VmkitError, error_from_body
from ..paths import HomePaths, default_home
from ..spec import validate_name
from .answers import SAVED_FILE, Answer
from .hints import with_sdk_calls

if TYPE_CHECKING:
    from ..models import SavedFile

LONG = 600.0  # seconds: creating, starting and stopping VMs wait for the guest
PROVISION = 3600.0  # creating a VM waits for cloud-init, which may install packages

T = TypeVar("T")


def seg(name: str, what: str = "VM") -> str:
    """``name`` as one segment of a URL path: checked as a name, then percent-encoded, so that
    no '..', '/', '?' or '#' in it can reach another route (belt and braces)."""
    return urllib.parse.quote(validate_name(name, what), safe="")


class Connection:
    """The connection under a :class:`vmkit.Client`: use the Client, which has every call."""

    def __init__(self, url: str | None = None, token: str | None = None,
                 home: Path | None = None, autostart: bool = True, timeout: float = 30.0,
                 ca: str | None = None, plain: bool = False) -> None:
        """Local daemon by default, started when it is not running unless ``autostart`` is
        False (as the ``vmkit`` command does); ``url`` for a remote one,
        with ``ca`` the CA file to trust for an https URL with a certificate of its own.
        ``plain``: answers as dicts whose keys are also attributes, not models (pydantic is
        then never imported: the CLI starts faster)."""
        self.plain = plain
        self.paths = HomePaths(home or default_home())
        self.local = url is None  # this host's vmkitd, over its Unix socket
        self.autostart = autostart and self.local
        self._where = url or str(self.paths.socket)  # for messages
        if url is None:  # no TLS and no proxies on a Unix socket: skip loading their settings
            transport = httpx.HTTPTransport(uds=str(self.paths.socket), verify=False)
            base = "http://vmkitd"
        else:
            transport, base = httpx.HTTPTransport(verify=ca or True), url.rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(transport=transport, base_url=base, headers=headers,
                                  timeout=timeout, trust_env=url is not None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (``with Client() as c:`` does it on leaving the block)."""
        self._http.close()

    def start_daemon(self, wait: float = 15.0) -> None:
        """Start vmkitd in the background for this VMKIT_HOME and wait until it answers.

        A client made with ``autostart=True`` calls it by itself when no daemon answers."""
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

    # --- requests ----------------------------------------------------------------------

    def _send(self, method: str, path: str, stream: bool = False, **kw: Any) -> httpx.Response:
        """Send a request to /v1``path``; an error answer is raised as its VmkitError."""
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
            if not self.plain:  # an SDK user: the Client's calls beside the CLI's commands
                body = {**body, "message": with_sdk_calls(str(body.get("message", "")))}
            raise error_from_body(body)
        return response

    def _why_unreachable(self, error: Exception) -> str:
        if self._where == str(self.paths.socket):
            return "start it with 'vmkitd'"
        if "CERTIFICATE_VERIFY_FAILED" in str(error):
            return (f"its TLS certificate is not trusted ({error}); give the CA that signed it "
                    "(vmkit host add --ca)")
        return f"{error or 'connection refused'}; is 'vmkitd --listen' running there?"

    def _call(self, method: str, path: str, into: Answer[T], **kw: Any) -> T:
        """Send a request and read its JSON answer as ``into`` (a model, or a list of them)."""
        return into.read(self._send(method, path, **kw).content, f"{method} {path}", self.plain)

    def _stream(self, path: str, params: dict[str, Any], timeout: float | None
                ) -> Iterator[bytes]:
        """GET ``path``'s answer in chunks, as they come (sent at the first ``next``)."""
        response = self._send("GET", path, stream=True, params=params, timeout=timeout)
        try:
            yield from response.iter_bytes()
        finally:
            response.close()

    def _do(self, method: str, path: str, **kw: Any) -> None:
        """Send a request whose answer says nothing but that it succeeded."""
        self._send(method, path, **kw)

    def _download(self, path: str, dest: Path, unpack: bool,
                  on_progress: Callable[[int, int], None] | None, **kw: Any) -> SavedFile:
        """POST ``path`` and write the answer to ``dest`` (as a directory if ``unpack``)."""
        from ..formats import files

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
        return SAVED_FILE.make(self.plain, path=str(dest), bytes=done, sha256=sha256)
