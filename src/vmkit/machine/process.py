"""One VM's QEMU process: launch it, re-attach to it, drive it through QMP, stop it.

Like QEMU's own ``QEMUMachine``: a failed launch cleans up and raises LaunchError with the log
tail, and stopping is a ladder (agent shutdown, ACPI power button, ``quit``, SIGKILL). The
process runs in its own session so it outlives vmkitd; a new daemon re-attaches by pid + QMP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient, Runstate
from qemu.qmp.events import EventListener

from .agent import GuestAgent
from ..errors import LaunchError, QmpError
from ..paths import VmPaths, open_nofollow

WATCHED_EVENTS = ("SHUTDOWN", "STOP", "RESUME")
_UNPRINTABLE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, a shell's \x1b[6n query
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: a window title
    r"|\x1b[ -/]*[0-~]"  # the other escape sequences
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # control characters but tab and line ends


def printable(text: str) -> str:
    """``text`` (a guest's console output) without terminal escape sequences and control
    characters."""
    return _UNPRINTABLE.sub("", text)


def log_tail(path: Path, lines: int = 5) -> str:
    """The last ``lines`` non-empty lines of a log, printable, joined by " / "."""
    try:
        with open_nofollow(path) as f:
            text = printable(f.read().decode(errors="replace"))
    except OSError:
        return ""
    return " / ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])


def exit_status_text(code: int) -> str:
    """How a process ended, from its exit code as subprocess gives it (negative: the signal
    that killed it): "exited with code 1", "was killed by signal 9 (SIGKILL)"."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"was killed by signal {-code}{name}"


def read_exit_status(path: Path) -> int | None:
    """The exit code a jail wrote to ``path`` when its QEMU ended (paths.VmPaths.exit_status),
    or None if it has not (QEMU runs, was not jailed, or its jail was killed)."""
    try:
        with open_nofollow(path) as f:
            return int(f.read(16))
    except (OSError, ValueError):
        return None


def pid_matches(pid: int, paths: VmPaths) -> bool:
    """True if ``pid`` is alive and is this VM's QEMU (not a recycled pid, nor its jail)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"qemu-system" in argv[0] and str(paths.qmp).encode() in b" ".join(argv)


def find_qemu(paths: VmPaths) -> int | None:
    """The pid of this VM's QEMU, looked for among all processes (a jailed QEMU's pidfile
    holds its pid in its own namespace: 1)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_matches(int(entry.name), paths):
            return int(entry.name)
    return None


def _only_child(pid: int) -> int:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    if len(children) != 1:
        raise LaunchError(f"the jail of QEMU has {len(children)} processes instead of one")
    return int(children[0])


class Machine:
    """A running QEMU. ``on_event`` is called with each QMP event name and on exit ("EXIT")."""

    def __init__(self, paths: VmPaths, pid: int, child: subprocess.Popen[bytes] | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.paths = paths
        self.pid = pid
        self._child = child
        self._on_event = on_event or (lambda name: None)
        self.qmp = QMPClient(paths.dir.name)
        self.agent = GuestAgent(paths.agent)
        self.shutdown_reason = ""  # from QEMU's SHUTDOWN event: "guest-shutdown", "guest-reset"...
        self._detaching = False
        self.exited = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    # --- start and re-attach -----------------------------------------------------------

    @classmethod
    async def launch(cls, argv: list[str], paths: VmPaths, timeout: float = 10.0,
                     on_event: Callable[[str], None] | None = None, jailed: bool = False
                     ) -> Machine:
        """Start ``argv``. ``jailed``: it is QEMU wrapped in a jail (jail.py), whose only
        child is QEMU."""
        for stale in (paths.qmp, paths.agent, paths.console, paths.pid, paths.exit_status):
            stale.unlink(missing_ok=True)
        with open_nofollow(paths.qemu_log, append=True) as log:
            try:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True, close_fds=True,
                                         umask=0o177)  # its sockets: 0600
            except OSError as e:
                raise LaunchError(f"cannot run {argv[0]}: {e.strerror}; is QEMU installed?") from e
        machine = cls(paths, child.pid, child, on_event)
        try:
            await machine._connect_qmp(timeout)
            if jailed:  # QEMU answers, so it has replaced the jail's setup code by now
                machine.pid = _only_child(child.pid)
        except BaseException:
            child.kill()  # the jailed QEMU dies with it (PR_SET_PDEATHSIG)
            child.wait()
            raise
        return machine

    @classmethod
    async def attach(cls, paths: VmPaths, pid: int,
                     on_event: Callable[[str], None] | None = None) -> Machine:
        machine = cls(paths, pid, None, on_event)
        await machine._connect_qmp(timeout=5.0)
        return machine

    async def _connect_qmp(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._child and self._child.poll() is not None:
                raise LaunchError(
                    f"QEMU exited at start (code {self._child.returncode}): "
                    f"{log_tail(self.paths.qemu_log) or 'no message'}"
                )
            try:
                # The socket file appears slightly before QEMU accepts on it: retry.
                await self.qmp.connect(str(self.paths.qmp))
                break
            except ConnectError as e:
                if time.monotonic() > deadline:
                    raise LaunchError(f"QEMU's monitor did not answer within {timeout:.0f} s: {e}") from e
                await asyncio.sleep(0.01)
        listener = EventListener(WATCHED_EVENTS)
        self.qmp.register_listener(listener)
        self._watcher = asyncio.create_task(self._watch(listener))

    async def _watch(self, listener: EventListener) -> None:
        async def events() -> None:
            async for event in listener:
                name = str(event["event"])
                if name == "SHUTDOWN":
                    data: Any = event.get("data") or {}
                    self.shutdown_reason = str(data.get("reason", ""))
                self._on_event(name)

        pump = asyncio.create_task(events())
        while self.qmp.runstate == Runstate.RUNNING:
            await self.qmp.runstate_changed()
        pump.cancel()
        with contextlib.suppress(Exception):
            await self.qmp.disconnect()
        if not self._detaching:  # a detached QEMU runs on: no waiting for it to exit
            await self._wait_process_gone()
        await self.agent.close()
        if not self._detaching:
            self._on_event("EXIT")  # before exited is set, so waiters see the final state
        self.exited.set()

    async def _wait_process_gone(self) -> None:
        for _ in range(500):
            if self._child:
                if self._child.poll() is not None:
                    return
            elif not pid_matches(self.pid, self.paths) and not self._jail_writing():
                return
            await asyncio.sleep(0.01)

    def _jail_writing(self) -> bool:
        """Whether QEMU's jail made its exit status file but has not written to it yet."""
        try:
            return os.lstat(self.paths.exit_status).st_size == 0
        except OSError:
            return False

    async def detach(self) -> None:
        """Let go of QEMU (the daemon is stopping); the VM keeps running."""
        self._detaching = True
        await self.agent.close()
        with contextlib.suppress(Exception):
            await self.qmp.disconnect()
        if self._watcher:
            await self._watcher

    # --- control -------------------------------------------------------------------

    async def execute(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await self.qmp.execute(cmd, args)
        except ExecuteError as e:
            raise QmpError(f"QEMU refused {cmd}: {e} ({e.error_class})") from e
        except Exception as e:
            await self._settle_if_gone()
            raise QmpError(f"QEMU's monitor failed during {cmd}: {e}") from e

    async def _settle_if_gone(self) -> None:
        """When the monitor failed because QEMU died, let its exit be recorded first, so
        that whoever hears of the failure already sees the VM as crashed, not as it was."""
        if self.qmp.runstate != Runstate.RUNNING and not self._detaching:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited.wait()), 6.0)

    async def status(self) -> str:
        return str((await self.execute("query-status"))["status"])

    async def stop(self, timeout: float = 20.0) -> str:
        """Stop gracefully if the guest cooperates, by force if not. Returns how it stopped:
        "agent" (guest-shutdown), "acpi" (power button), "quit" or "killed"."""
        deadline = time.monotonic() + timeout
        steps: list[tuple[str, float]] = []
        if self.agent.connected and await self.agent_answers():
            steps.append(("agent", deadline - timeout / 2))
        steps += [("acpi", deadline), ("quit", deadline + 3.0)]
        for how, until in steps:
            with contextlib.suppress(Exception):
                if how == "agent":
                    await self.agent.shutdown()
                elif how == "acpi":
                    if await self.status() == "paused":
                        await self.execute("cont")
                    await self.execute("system_powerdown")
                else:
                    await self.execute("quit")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.exited.wait(), max(0.1, until - time.monotonic()))
                return how
        await self.kill()
        return "killed"

    async def agent_answers(self, timeout: float = 1.0) -> bool:
        try:
            await self.agent.execute("guest-ping", timeout=timeout)
            return True
        except Exception:  # a frozen or absent agent: go straight to the power button
            return False

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self._child or pid_matches(self.pid, self.paths):
                os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.exited.wait(), 5.0)

    @property
    def reattached(self) -> bool:
        """Whether this QEMU was started by an earlier vmkitd (this one is not its parent)."""
        return self._child is None

    @property
    def exit_code(self) -> int | None:
        """How QEMU ended (negative: killed by that signal): known to its parent, vmkitd or
        its jail (which passes it on as its own and writes it down), else None."""
        if self._child:
            return self._child.returncode
        return read_exit_status(self.paths.exit_status)
