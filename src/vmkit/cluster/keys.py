"""Where the cluster keeps its shared state in etcd: every key vmkit writes there, in one
place (as paths.py names every file of a home)."""

from __future__ import annotations

ROOT = "/vmkit/"
TOKEN = ROOT + "token"  # the API token every member's TCP listener takes
MEMBERS = ROOT + "members/"  # MEMBERS + name: the host's API URL; stays when it goes down
ALIVE = ROOT + "alive/"  # ALIVE + name: its facts, under its lease: gone = down
STATE = ROOT + "state/"  # STATE + name: "cordoned" or "draining"; absent = ready
VMS = ROOT + "vms/"  # VMS + VM name: where it lives and what it holds (index.py)


def member(name: str) -> str:
    return MEMBERS + name


def alive(name: str) -> str:
    return ALIVE + name


def state(name: str) -> str:
    return STATE + name


def vm(name: str) -> str:
    return VMS + name
