"""What a CLI command costs on top of the work it asks vmkitd for: commands that go through the
SDK (`vmkit inspect`, `vmkit ls --json`, `vmkit images`), timed against the interpreter's bare
start and, with ``--against``, against another source tree's CLI on the same daemon.

The runs alternate between the two trees, so that the machine's load hits both alike:

    git worktree add /tmp/old 57d8c71
    python bench/cli.py --against /tmp/old/src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from common import open_home, ratio, row, stop_daemon, timed

COMMANDS = (("inspect", "bench-cli"), ("ls", "--json"), ("image", "ls"))


def cli(src: Path | None, *args: str) -> None:
    """One ``vmkit`` command, from the installed package or from the tree ``src``."""
    env = dict(os.environ, **({"PYTHONPATH": str(src)} if src else {}))
    subprocess.run([sys.executable, "-m", "vmkit.cli.main", *args], env=env,
                   capture_output=True, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--home", type=Path, default=None, help="VMKIT_HOME (default: a new one)")
    parser.add_argument("--against", type=Path, default=None,
                        help="another tree's src/ directory, timed alternately with this one")
    args = parser.parse_args()
    home, client = open_home(args.home)
    try:
        client.create_vm("bench-cli", memory="256M", network="restricted")
        if args.against:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(args.against)],
                           check=True, capture_output=True)
        floor = [timed(subprocess.run, [sys.executable, "-c", "pass"], check=True)
                 for _ in range(args.runs)]
        print(f"CLI commands through the SDK, {args.runs} runs each, one VM")
        for command in COMMANDS:
            ours, theirs = [], []
            for _ in range(args.runs):
                ours.append(timed(cli, None, *command))
                if args.against:
                    theirs.append(timed(cli, args.against, *command))
            label = "vmkit " + " ".join(command)
            print(row(label, ours, 1000, "{:.0f} ms"))
            if theirs:
                print(row(f"{label} ({args.against})", theirs, 1000, "{:.0f} ms"))
                print(ratio("ratio this tree / the other", ours, theirs))
            print(ratio("ratio / python floor", ours, floor))
        print(row("python -c pass (interpreter floor)", floor, 1000, "{:.0f} ms"))
    finally:
        client.remove_vm("bench-cli", force=True)
        stop_daemon(home, client)


if __name__ == "__main__":
    main()
