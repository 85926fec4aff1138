"""Attach the local terminal to a VM's serial console over vmkitd's websocket.

Two pumps: a thread copies websocket frames to stdout; the main thread copies stdin to the
websocket. The terminal is in raw mode meanwhile, so Ctrl-C, arrows and tab completion go to
the guest; Ctrl-] detaches and leaves the VM running. When the VM stops, vmkitd closes the
socket and ``attach`` returns.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

DETACH_KEY = b"\x1d"  # Ctrl-]
DETACHED, STOPPED = "detached", "stopped"


def attach_and_report(client: Any, name: str) -> None:
    """``attach``, then say on stderr how the session ended and how to get back."""
    if attach(client, name) == DETACHED:
        sys.stderr.write(f"\r\nDetached from {name}; it keeps running. "
                         f"Reattach with 'vmkit console {name}'.\n")
    else:
        sys.stderr.write(f"\r\n{name} stopped.\n")
    sys.stderr.flush()


def attach(client: Any, name: str) -> str:
    """Pump the console of ``name`` until the user detaches (DETACHED) or the VM stops
    (STOPPED). Raises VmkitError if the connection to vmkitd breaks."""
    import select

    from httpx_ws import HTTPXWSException, WebSocketDisconnect, WebSocketUpgradeError

    from ..errors import InvalidStateError, VmkitError

    try:
        session = client.console(name)
        ws = session.__enter__()
    except WebSocketUpgradeError:
        # vmkitd refuses the upgrade (closing before accept) when the VM has no console;
        # ask for the VM to say why in a sentence.
        vm = client.get_vm(name)
        raise InvalidStateError(f"{name} is {vm['state']}: its console is available while it "
                                f"runs; start it with 'vmkit start {name}'") from None

    outcome: dict[str, BaseException | None] = {}
    wake_r, wake_w = os.pipe()

    def pump_out() -> None:
        try:
            while True:
                _write_all(1, ws.receive_bytes())
        except BaseException as e:  # noqa: BLE001 - reported to the main thread
            outcome["end"] = e
        finally:
            os.write(wake_w, b"x")

    sys.stdout.flush()  # the reader writes to fd 1 directly, past Python's buffer
    tty_fd = stdin_fd = _stdin_fd()
    saved = _raw(tty_fd)
    sys.stderr.write(f"Connected to {name}'s console. Press Ctrl-] to detach; "
                     "press Enter for a prompt.\r\n")
    sys.stderr.flush()
    reader = threading.Thread(target=pump_out, name="console-out", daemon=True)
    reader.start()
    result = DETACHED
    try:
        while True:
            fds = [wake_r] if stdin_fd is None else [wake_r, stdin_fd]
            ready, _, _ = select.select(fds, [], [])
            if wake_r in ready:
                result = STOPPED
                break
            data = os.read(stdin_fd, 1024)  # type: ignore[arg-type]
            if not data:  # stdin ended (a pipe, /dev/null): keep showing output
                stdin_fd = None
                continue
            if DETACH_KEY in data:
                head = data[:data.index(DETACH_KEY)]
                if head:
                    ws.send_bytes(head)
                break
            ws.send_bytes(data)
    except HTTPXWSException:  # the socket closed under us while sending
        reader.join(timeout=2.0)
        result = STOPPED
    finally:
        _restore(tty_fd, saved)
        with contextlib.suppress(HTTPXWSException, OSError):  # the server may have closed it
            session.__exit__(None, None, None)
        reader.join(timeout=2.0)
        if not reader.is_alive():  # else it may still write the pipe: leave it open
            os.close(wake_r)
            os.close(wake_w)

    if result == STOPPED:
        end = outcome.get("end")
        if not isinstance(end, WebSocketDisconnect) or end.code != 1000:
            if isinstance(end, WebSocketDisconnect):
                detail = f"code {end.code} {end.reason}".strip()
            else:
                detail = f"{type(end).__name__}: {end}" if end else "closed"
            sys.stderr.write("\r\n")  # the guest's output may have left the cursor mid-line
            raise VmkitError(f"lost the console connection to vmkitd ({detail})")
    return result


def _stdin_fd() -> int | None:
    try:
        fd = sys.stdin.fileno()
        os.fstat(fd)
        return fd
    except (AttributeError, ValueError, OSError):  # stdin closed or not a real file
        return None


def _raw(fd: int | None) -> list[Any] | None:
    """Put a terminal in raw mode; returns what ``_restore`` needs (None if not a TTY)."""
    if fd is None or not os.isatty(fd):
        return None
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    return saved


def _restore(fd: int | None, saved: list[Any] | None) -> None:
    if fd is None or saved is None:
        return
    import termios

    termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def run_terminal(client: Any, name: str, argv: list[str] | None) -> int:
    """Run ``argv`` (root's login shell without it) on a terminal in the guest, with this
    terminal in raw mode and its window size followed; returns the command's exit code."""
    import select
    import shutil
    import signal

    fd = sys.stdin.fileno()
    size = shutil.get_terminal_size()
    resized = threading.Event()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_winch(signum: int, frame: Any) -> None:
        resized.set()
        with contextlib.suppress(BlockingIOError):
            os.write(wake_w, b"w")

    with client.terminal(name, argv, rows=size.lines, cols=size.columns,
                         term=os.environ.get("TERM", "xterm")) as session:
        outcome: dict[str, Any] = {}  # "code": the exit code, or "error": what went wrong

        def pump_out() -> None:
            try:
                while isinstance(data := session.receive(), bytes):
                    _write_all(1, data)
                outcome["code"] = data
            except BaseException as e:  # noqa: BLE001 - reported to the main thread
                outcome["error"] = e
            finally:
                with contextlib.suppress(OSError):
                    os.write(wake_w, b"x")

        sys.stdout.flush()
        previous = signal.signal(signal.SIGWINCH, on_winch)
        saved = _raw(fd)
        reader = threading.Thread(target=pump_out, name="terminal-out", daemon=True)
        reader.start()
        watched = [wake_r, fd]
        try:
            while not outcome:
                ready, _, _ = select.select(watched, [], [])
                if resized.is_set():
                    resized.clear()
                    size = shutil.get_terminal_size()
                    session.resize(size.lines, size.columns)
                if fd in ready and not outcome:
                    if data := os.read(fd, 4096):
                        session.send(data)
                    else:  # the terminal went away: the command's output may still come
                        watched = [wake_r]
                if wake_r in ready:
                    os.read(wake_r, 64)
        finally:
            _restore(fd, saved)
            signal.signal(signal.SIGWINCH, previous)
            reader.join(timeout=2.0)
            os.close(wake_r)
            os.close(wake_w)
    if "error" in outcome:
        raise outcome["error"]
    return int(outcome["code"])
