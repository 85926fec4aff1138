"""What the QEMU jail costs at start: QEMU up to its first QMP answer, jailed and not.

    sudo python bench/jail.py [--runs 10]

Both sides start the same QEMU command line (a microvm, stopped before it runs: -S), with its
socket in a directory of its own, and time from spawning it to QMP's greeting. The jailed side
goes through machine/jail.py as vmkitd does under root: a Python process making the PID and
mount namespaces, the tmpfs root with its bind mounts, pivot_root, and the switch to the
vmkit-qemu user. Runs alternate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import row

from vmkit.machine import jail


def first_answer(argv: list[str], sock: Path, timeout: float = 20.0) -> float:
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - start < timeout:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(sock))
                    if s.recv(1024).startswith(b'{"QMP"'):
                        return time.monotonic() - start
            except OSError:
                time.sleep(0.002)
        raise SystemExit(f"QEMU did not answer: {' '.join(argv)}")
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/jail.py needs root: the jail exists only under root")
    root = Path(tempfile.mkdtemp(prefix="vmkit-bench-jail-", dir="/tmp"))
    try:
        vm_dir, jail_root = root / "vm", root / "jail"
        vm_dir.mkdir(mode=0o700)
        the_jail = jail.Jail(jail_root, *jail.qemu_user())
        jail_root.mkdir(mode=0o700)
        the_jail.give(vm_dir)
        sock = vm_dir / "qmp.sock"
        qemu = [shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
                "-machine", "microvm", "-accel", "tcg", "-nodefaults", "-no-user-config",
                "-display", "none", "-S", "-sandbox", "on",
                "-chardev", f"socket,id=qmp,path={sock},server=on,wait=off",
                "-mon", "chardev=qmp,mode=control"]
        jailed = the_jail.command(qemu, [(vm_dir, True)])
        plain, boxed = [], []
        for _ in range(args.runs):
            for argv, out in ((qemu, plain), (jailed, boxed)):
                sock.unlink(missing_ok=True)
                out.append(first_answer(argv, sock) * 1000)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nQEMU start to first QMP answer (microvm, -S), {args.runs} runs each")
    print(row("QEMU, not jailed", plain, fmt="{:.0f} ms"))
    print(row("QEMU in vmkit's jail", boxed, fmt="{:.0f} ms"))
    cost = sorted(boxed)[len(boxed) // 2] - sorted(plain)[len(plain) // 2]
    print(f"the jail's cost (median)           {cost:+.0f} ms")


if __name__ == "__main__":
    main()
