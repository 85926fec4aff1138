"""What the routes hand on as they get it, checked where it lands: a new VM's request (the
default network), the fast template's settings, a migration's destination and incoming spec,
the registered hosts' public view, the serial log, and the bursts of the event feed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from vmkit import hosts
from vmkit.core.boot import host_memory_mib
from vmkit.core.core import Core
from vmkit.core.guest import Guest
from vmkit.core.registry import Hooks
from vmkit.core.request import VmRequest, default_network
from vmkit.errors import InvalidInputError, NotFoundError
from vmkit.events import CLOSED, OVERFLOW, Change, bursts
from vmkit.paths import HomePaths
from vmkit.services.migration import Migrations, Peer
from vmkit.services.snapshots import Snapshots


def _core(**parts: Any) -> Any:
    """A core with only ``parts`` (and the hooks services register on)."""
    return SimpleNamespace(hooks=Hooks(), **parts)


# --- a new VM's request ------------------------------------------------------------------

@pytest.mark.parametrize("network, disposable, nics", [
    (None, False, ("nat",)), (None, True, ()), ([], False, ()), ("", False, ()),
    (["lab", "nat"], True, ("lab", "nat")), ("restricted", False, ("restricted",)),
])
def test_a_request_gets_the_default_network_only_when_it_names_none(
        network: Any, disposable: bool, nics: tuple[str, ...]) -> None:
    spec = VmRequest("web", network=network, disposable=disposable).spec()
    assert tuple(a for a in (spec.network, *spec.more_networks) if a != "none") == nics
    assert default_network(disposable) == ("none" if disposable else "nat")


def test_a_request_is_checked_against_the_host_memory_when_given() -> None:
    assert VmRequest("web", memory="2G").spec().memory_mib == 2048
    with pytest.raises(InvalidInputError, match="more than this host has"):
        VmRequest("web", memory="2G").spec(host_memory_mib=1024)


# --- the fast template ---------------------------------------------------------------------

def _snapshots() -> tuple[Snapshots, list[tuple[Any, ...]]]:
    made: list[tuple[Any, ...]] = []
    snapshots = Snapshots(_core())

    async def fast_template(image: str, cpus: int, memory_mib: int, nic: bool) -> str:
        made.append((image, cpus, memory_mib, nic))
        return "fast-t"

    snapshots.fast_template = fast_template  # type: ignore[method-assign]
    snapshots.get_template = lambda name: {"name": name}  # type: ignore[method-assign]
    return snapshots, made


def test_the_fast_template_is_checked_then_made_and_described() -> None:
    snapshots, made = _snapshots()
    assert asyncio.run(snapshots.ensure_fast_template()) == {"name": "fast-t"}
    assert asyncio.run(snapshots.ensure_fast_template("debian", 2, "1G", "none")) \
        == {"name": "fast-t"}
    assert made == [("tiny", 1, 256, True), ("debian", 2, 1024, False)]


@pytest.mark.parametrize("settings, word", [
    ({"memory": "lots"}, "memory"), ({"memory": "16M"}, "memory"), ({"cpus": 0}, "cpus"),
    ({"memory": f"{1 << 20}M"}, "memory"), ({"image": "a.b"}, "image"),
])
def test_the_fast_template_refuses_bad_settings_before_making_anything(
        settings: dict[str, Any], word: str) -> None:
    snapshots, made = _snapshots()
    with pytest.raises(InvalidInputError, match=word):
        asyncio.run(snapshots.ensure_fast_template(**settings))
    assert made == []


# --- migrations ----------------------------------------------------------------------------

def test_the_destination_is_a_registered_host_or_a_url_and_token(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path / "home")
    hosts.add(paths, hosts.peer("lab", "https://10.0.0.5:8765/", "tok"))
    migrations = Migrations(_core(paths=paths))
    assert migrations.peer(host="lab") == Peer("https://10.0.0.5:8765", "tok", None)
    assert migrations.peer(url="http://10.0.0.6:1/", token="t", ca="/ca.pem") \
        == Peer("http://10.0.0.6:1", "t", "/ca.pem")
    with pytest.raises(NotFoundError, match="no host named 'edge'"):
        migrations.peer(host="edge")
    with pytest.raises(InvalidInputError, match="host URL"):
        migrations.peer(url="ftp://10.0.0.6:1", token="t")
    for half in ({"url": "http://10.0.0.6:1"}, {"token": "t"}, {}):
        with pytest.raises(InvalidInputError, match="registered host"):
            migrations.peer(**half)


def test_an_incoming_spec_is_checked_before_anything_else() -> None:
    migrations = Migrations(_core())  # a core it must not reach
    good = VmRequest("web").spec().to_json()
    too_big = {**good, "memory_mib": host_memory_mib() + 1}
    for sent, word in (({**good, "name": "a.b"}, "VM name"), (too_big, "this host has"),
                       ({**good, "ports": [{"to": 80}]}, "invalid VM spec"), ("garbage", "invalid VM spec")):
        with pytest.raises(InvalidInputError, match=word):
            asyncio.run(migrations.accept(sent, "52:54:00:00:00:01", 1 << 30, 0, "9.2.0",
                                          "127.0.0.1"))


# --- the registered hosts ------------------------------------------------------------------

def test_the_hosts_public_view_has_no_tokens(tmp_path: Path) -> None:
    paths = HomePaths(tmp_path / "home")
    assert Core.peers(cast(Core, SimpleNamespace(paths=paths))) == []
    hosts.add(paths, hosts.peer("lab", "https://10.0.0.5:8765", "secret"))
    assert Core.peers(cast(Core, SimpleNamespace(paths=paths))) \
        == [{"name": "lab", "url": "https://10.0.0.5:8765"}]


# --- the serial log ------------------------------------------------------------------------

class _Registry:
    def __init__(self, home: Path, live: list[bool]) -> None:
        self.paths = HomePaths(home)
        self.live = live

    def record(self, name: str) -> None:
        if name != "web":
            raise NotFoundError(f"no VM named {name!r}")

    def is_live(self, name: str) -> bool:
        return self.live.pop(0) if self.live else False


async def _read(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


def test_the_log_is_read_and_followed_while_the_vm_runs(tmp_path: Path) -> None:
    reg = _Registry(tmp_path / "home", [True, True])
    log = reg.paths.vm("web").serial_log
    log.parent.mkdir(parents=True)
    log.write_bytes(b"boot\n")
    guest = Guest(cast(Any, reg))
    assert asyncio.run(_read(guest.log("web"))) == b"boot\n"
    assert reg.live == [True, True]  # not followed: is_live never asked

    async def follow() -> bytes:
        chunks = guest.log("web", follow=True)
        first = await anext(chunks)
        with log.open("ab") as f:
            f.write(b"more\n")
        return first + await _read(chunks)

    assert asyncio.run(follow()) == b"boot\nmore\n"
    assert reg.live == []


def test_the_log_of_an_unknown_vm_fails_at_once(tmp_path: Path) -> None:
    guest = Guest(cast(Any, _Registry(tmp_path / "home", [])))
    with pytest.raises(NotFoundError):
        guest.log("nope")  # before anything is iterated: the API answers 404
    assert asyncio.run(_read(guest.log("web"))) == b""  # no log yet: an empty one


# --- the event feed ------------------------------------------------------------------------

def test_bursts_merge_changes_stop_at_closed_and_tell_idleness() -> None:
    async def main() -> list[list[Change]]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        out = []
        it = bursts(queue, 0.01)
        out.append(await anext(it))  # nothing came: an empty burst
        for change in (("vm", "a"), ("snapshots", "a"), ("vm", "a"), OVERFLOW):
            queue.put_nowait(change)
        out.append(await anext(it))
        for change in (("vm", "b"), CLOSED, ("vm", "c")):
            queue.put_nowait(change)
        out.extend([b async for b in it])
        return out

    assert asyncio.run(main()) == [[], [("vm", "a"), ("snapshots", "a"), OVERFLOW],
                                   [("vm", "b")]]


def test_bursts_end_at_once_at_a_lone_closed() -> None:
    async def main() -> list[list[Change]]:
        queue: asyncio.Queue[Change] = asyncio.Queue()
        queue.put_nowait(CLOSED)
        return [b async for b in bursts(queue, 10.0)]

    assert asyncio.run(main()) == []


# --- resize ----------------------------------------------------------------------------------

@pytest.mark.parametrize("disk", ["", "  "])
def test_resize_to_an_empty_disk_size_is_refused_before_the_vm_is_looked_at(disk: str) -> None:
    from vmkit.core.lifecycle import Lifecycle

    lifecycle = Lifecycle(cast(Any, None), cast(Any, None), cast(Any, None), cast(Any, None))
    with pytest.raises(InvalidInputError, match="needs a size"):
        asyncio.run(lifecycle.resize("web", disk=disk))
