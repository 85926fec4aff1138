"""The SDK's interactive terminal in a guest: a login shell or a command on a pseudo-terminal,
over vmkitd's websocket /v1/vms/NAME/terminal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import VmkitError, error_from_body
from .connection import Connection, seg

if TYPE_CHECKING:
    from httpx_ws import WebSocketSession

# `vmkit shell` with its input from a pipe, as `ssh host < script`: root's login shell reads
# it, in root's home, without a terminal.
LOGIN_SHELL = ["/bin/sh", "-c", """shell=/bin/sh home=/root
while IFS=: read -r user x uid rest; do
    [ "$uid" = 0 ] && { home=$(echo "$rest" | cut -d: -f3) shell=${rest##*:}; break; }
done < /etc/passwd
export HOME="$home" USER=root LOGNAME=root SHELL="$shell"
cd "$home" 2>/dev/null || cd /
exec "$shell" -l"""]


class TerminalSession:
    """A command on a terminal in the guest: ``send`` keystrokes, ``resize`` the window,
    ``receive`` its output (bytes) until it ends (its exit code, an int)."""

    def __init__(self, ws: WebSocketSession) -> None:
        self.ws = ws

    def send(self, data: bytes) -> None:
        self.ws.send_bytes(data)

    def resize(self, rows: int, cols: int) -> None:
        self.ws.send_text(json.dumps({"rows": rows, "cols": cols}))

    def receive(self, timeout: float | None = None) -> bytes | int:
        """The terminal's next output, or the command's exit code when it has ended."""
        from httpx_ws import WebSocketDisconnect

        try:
            msg = self.ws.receive(timeout)
        except WebSocketDisconnect as e:
            raise _closed(e.code, e.reason) from None
        if isinstance(msg.data, bytes):  # type: ignore[attr-defined]
            return bytes(msg.data)  # type: ignore[attr-defined]
        return int(json.loads(msg.data)["exit_code"])  # type: ignore[attr-defined]


def _closed(code: int, reason: str | None) -> VmkitError:
    """The server's close (code 4000 + HTTP status, reason "KIND:MESSAGE") as the error."""
    kind, sep, message = (reason or "").partition(":")
    if code >= 4000 and sep:
        return error_from_body({"error": kind, "message": message})
    return VmkitError(f"the terminal connection closed (code {code} {reason or ''})".strip())


class TerminalCalls(Connection):
    @contextmanager
    def terminal(self, name: str, argv: list[str] | None = None, rows: int = 24,
                 cols: int = 80, term: str = "xterm") -> Iterator[TerminalSession]:
        """A command (root's login shell without ``argv``) on a terminal in the guest::

            with c.terminal("web") as t:
                t.send(b"stty size; exit 3\\n")
                while isinstance(out := t.receive(), bytes):
                    print(out.decode(), end="")
                assert out == 3
        """
        from httpx_ws import connect_ws

        start: dict[str, Any] = {"argv": argv, "rows": rows, "cols": cols, "term": term}
        ws: WebSocketSession
        with connect_ws(f"/v1/vms/{seg(name)}/terminal", self._http) as ws:
            ws.send_text(json.dumps(start))
            yield TerminalSession(ws)
