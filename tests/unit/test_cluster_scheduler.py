"""The scheduler's filters and weights (vmkit.cluster.scheduler) and the VM index's entries
and its keeper (vmkit.cluster.index), on a small in-memory etcd for the keeper."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest

from vmkit.cluster import index, keys
from vmkit.cluster.etcd import Compare
from vmkit.cluster.index import Entry, Keeper
from vmkit.cluster.scheduler import CPU_RATIO, Request, choose, used_memory
from vmkit.errors import ConflictError


def host(name: str, memory: int = 1024, cpus: int = 2, state: str = "ready",
         images: tuple[str, ...] = ("tiny",), qemu: str = "7.2.0", **facts: Any
         ) -> dict[str, Any]:
    return {"name": name, "state": state, "memory_mib": memory, "cpus": cpus,
            "images": [(i, "sha256:x") for i in images], "qemu_version": qemu, **facts}


THREE = [host("h1"), host("h2"), host("h3")]


def vms(*placed: tuple[Any, ...]) -> dict[str, Entry]:
    """Index entries: (host, MiB[, group]) each, named v0, v1, ..."""
    return {f"v{n}": Entry(p[0], 1, p[1], "tiny", p[2] if len(p) > 2 else None)
            for n, p in enumerate(placed)}


def ask(memory: int = 256, **rules: Any) -> Request:
    return Request(1, memory, "tiny", **rules)


def test_the_host_with_most_free_memory_wins_and_every_host_says_why() -> None:
    choice = choose(THREE, vms(("h1", 512), ("h2", 256)), ask())
    assert choice.host == "h3"
    assert choice.why["h3"] == "chosen: most free memory (1024 MiB)"
    assert choice.why["h1"] == "fits, less free memory (512 MiB)"


def test_ties_go_to_the_first_name_so_placement_is_predictable() -> None:
    assert choose(THREE, {}, ask()).host == "h1"


def test_what_a_host_reports_counts_when_it_is_more_than_the_index_says() -> None:
    busy = host("h1", memory_used_mib=900)
    assert used_memory(busy, vms(("h1", 256))) == 900
    assert choose([busy, host("h2", memory=512)], {}, ask()).host == "h2"


def test_filters_refuse_with_their_reasons() -> None:
    hosts = [host("h1", memory=512), host("h2", state="cordoned"), host("h3", state="down"),
             host("h4", qemu="6.2.0"), host("h5", cpus=1)]
    index = vms(("h1", 384), *[("h5", 1)] * int(CPU_RATIO))
    with pytest.raises(ConflictError) as e:
        choose(hosts, index, Request(1, 256, "tiny", qemu="7.2.0"))
    assert e.value.message == (
        "no host can take this VM (h1: 128 MiB of memory free, 256 MiB needed; "
        "h2: cordoned; h3: down; h4: QEMU 6.2.0 is older than 7.2.0; "
        "h5: 0 vCPUs free (at 4 per CPU), 1 needed)")


def test_memory_is_not_overcommitted_but_cpus_are_four_to_one() -> None:
    assert choose([host("h1", memory=256)], {}, ask(256)).host == "h1"
    with pytest.raises(ConflictError):
        choose([host("h1", memory=256)], {}, ask(257))
    one_cpu = [host("h1", cpus=1)]
    assert choose(one_cpu, vms(*[("h1", 1)] * 3), ask(1)).host == "h1"
    with pytest.raises(ConflictError, match="0 vCPUs free"):
        choose(one_cpu, vms(*[("h1", 1)] * 4), ask(1))


def test_an_image_is_shipped_from_a_host_that_has_it_or_refused_if_none_has() -> None:
    hosts = [host("h1", memory=256), host("h2", images=())]
    choice = choose(hosts, vms(("h1", 128)), ask(128))
    assert choice.host == "h2" and choice.why["h2"].endswith("image tiny is shipped there")
    with pytest.raises(ConflictError, match="h2: no host has image tiny"):
        choose([host("h2", images=())], {}, ask())
    down = [host("h1", state="down"), host("h2", images=())]  # its only holder is down
    with pytest.raises(ConflictError, match="no host has image tiny"):
        choose(down, {}, ask())


def test_spread_puts_a_group_on_distinct_hosts_and_refuses_when_it_cannot() -> None:
    index = vms(("h1", 128, "web"))
    spread = ask(group="web", policy="spread")
    assert choose(THREE, index, spread).host == "h2"
    index |= {"w2": Entry("h2", 1, 128, "tiny", "web"), "w3": Entry("h3", 1, 128, "tiny", "web")}
    with pytest.raises(ConflictError, match="h1: has a VM of group web \\(--spread\\)"):
        choose(THREE, index, spread)


def test_a_group_without_a_rule_prefers_hosts_with_fewer_of_it() -> None:
    index = vms(("h1", 128, "g"), ("h2", 512))  # h1 has more free memory but a VM of g
    assert choose(THREE[:2], index, ask(group="g")).host == "h2"


def test_pack_keeps_a_group_together_even_on_a_fuller_host() -> None:
    index = vms(("h2", 512, "db"))
    assert choose(THREE, index, ask(group="db", policy="pack")).host == "h2"
    with pytest.raises(ConflictError, match="h1: group db is on h2 \\(--pack\\)"):
        choose(THREE, vms(("h2", 1024, "db")), ask(group="db", policy="pack"))


def test_a_moving_vm_leaves_its_host_and_keeps_its_group_rule() -> None:
    index = vms(("h1", 128, "db"), ("h1", 128, "db"))  # both on h1, which drains
    move = ask(group="db", policy="pack", away_from="h1")
    assert choose(THREE, index, move).host == "h2"  # the first to move: anywhere
    index["v0"] = Entry("h3", 1, 128, "tiny", "db")  # it went to h3
    assert choose(THREE, index, move).host == "h3"  # the second follows it
    with pytest.raises(ConflictError, match="h1: being drained"):
        choose(THREE[:1], {}, ask(away_from="h1"))


def test_pinning_takes_only_that_host() -> None:
    choice = choose(THREE, vms(("h2", 512)), ask(pin="h2"))
    assert choice.host == "h2" and choice.why["h1"] == "not the host asked for (--host h2)"


# --- the index ------------------------------------------------------------------------------

def test_an_entry_reads_back_and_old_entries_read_with_defaults() -> None:
    entry = Entry("h1", 2, 512, "tiny", "web", {"h1": "chosen"}, "spread", 12.5)
    assert index.read(entry.dump()) == entry
    assert index.read(b'{"host": "h2", "cpus": 1, "memory_mib": 256}') == Entry("h2", 1, 256)


class MemoryEtcd:
    """The part of vmkit.cluster.etcd.Etcd the index uses, in memory, with revisions."""

    def __init__(self) -> None:
        self.kv: dict[str, tuple[bytes, int, int]] = {}  # key -> value, create, mod revision
        self.revision = 1

    async def get(self, key: str) -> bytes | None:
        return self.kv[key][0] if key in self.kv else None

    async def put(self, key: str, value: bytes | str, lease: int = 0) -> None:
        self.revision += 1
        raw = value.encode() if isinstance(value, str) else value
        self.kv[key] = (raw, self.kv.get(key, (b"", self.revision, 0))[1], self.revision)

    async def put_if_absent(self, key: str, value: bytes | str, lease: int = 0) -> bool:
        if key in self.kv:
            return False
        await self.put(key, value)
        return True

    async def range_at(self, prefix: str) -> tuple[dict[str, bytes], int]:
        return {k: v[0] for k, v in self.kv.items() if k.startswith(prefix)}, self.revision

    async def txn(self, compare: list[Compare], success: list[dict[str, Any]]) -> bool:
        if not all(self._holds(c) for c in compare):
            return False
        for op in success:
            if "request_put" in op:
                await self.put(_text(op["request_put"]["key"]),
                               base64.b64decode(op["request_put"]["value"]))
            else:
                self.kv.pop(_text(op["request_delete_range"]["key"]), None)
        return True

    def _holds(self, c: Compare) -> bool:
        found = [v for k, v in self.kv.items() if k == c.key or (c.prefix and k.startswith(c.key))]
        if c.target == "VALUE":
            return bool(found) and found[0][0] == c.value
        if c.target == "CREATE":
            return not found if c.value == 0 else any(v[1] == c.value for v in found)
        assert c.target == "MOD" and c.result == "LESS"
        return all(v[2] < int(c.value) for v in found)


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode()


def test_a_reservation_fails_once_any_entry_changed_since_it_was_read() -> None:
    async def run() -> None:
        etcd: Any = MemoryEtcd()
        _, seen = await index.entries(etcd)
        assert await index.reserve(etcd, "a", Entry("h1", 1, 256), seen)
        assert not await index.reserve(etcd, "b", Entry("h1", 1, 256), seen)  # stale view
        _, seen = await index.entries(etcd)
        with pytest.raises(ConflictError, match="a VM named a already exists.*on h1"):
            await index.reserve(etcd, "a", Entry("h2", 1, 256), seen)
        assert await index.reserve(etcd, "a", Entry("h2", 1, 256), seen, new=False)  # moves
        assert (await index.lookup(etcd, "a")) == Entry("h2", 1, 256)
        await index.release(etcd, "a", "h1")  # not there any more: kept
        assert await index.lookup(etcd, "a") is not None
        await index.release(etcd, "a", "h2")
        assert await index.lookup(etcd, "a") is None

    asyncio.run(run())


def test_the_keeper_follows_the_hosts_vms_and_leaves_arrivals_and_others_alone() -> None:
    async def run() -> None:
        etcd: Any = MemoryEtcd()
        keeper = Keeper(etcd, "h1")
        placed = Entry("h1", 1, 256, "tiny", "web", policy="spread", placed=time.time())
        await etcd.put(keys.vm("web"), placed.dump())  # a placement, before its VM exists
        await etcd.put(keys.vm("moving"), Entry("h2", 1, 128).dump())  # arriving from h2
        await keeper.sync({"web": Entry("h1", 1, 256, "tiny"), "mine": Entry("h1", 1, 64),
                           "moving": Entry("h1", 1, 128)})
        assert await index.lookup(etcd, "web") == placed  # its group stays
        assert await index.lookup(etcd, "mine") == Entry("h1", 1, 64)
        assert (await index.lookup(etcd, "moving") or placed).host == "h2"
        await keeper.sync({"moving": Entry("h1", 1, 128)})  # web and mine went away
        assert set((await index.entries(etcd))[0]) == {"moving"}

    asyncio.run(run())


def test_a_reservation_whose_vm_never_came_is_swept_after_its_hold() -> None:
    async def run() -> None:
        etcd: Any = MemoryEtcd()
        for name, age in (("old", index.HOLD + 1), ("new", 1.0), ("here", index.HOLD + 1)):
            await etcd.put(keys.vm(name), Entry("h1", 1, 64, placed=time.time() - age).dump())
        await etcd.put(keys.vm("other"), Entry("h2", 1, 64).dump())
        assert await Keeper(etcd, "h1").sweep(["here"]) == ["old"]
        assert set((await index.entries(etcd))[0]) == {"new", "here", "other"}

    asyncio.run(run())
