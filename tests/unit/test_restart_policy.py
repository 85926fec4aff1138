"""Restart policies (vmkit run --restart): the spec field and when vmkitd starts a VM again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from vmkit.core import watch
from vmkit.core.watch import MAX_DELAY, Watch, restart_delay, restart_wanted
from vmkit.errors import InvalidInputError
from vmkit.spec import VmSpec, check_spec, make_spec
from vmkit.state import VmState


def test_a_record_made_before_restart_policies_reads_as_no() -> None:
    old = make_spec("web").to_json()
    del old["restart"]
    assert VmSpec.from_json(old).restart == "no"


@pytest.mark.parametrize("policy", ["no", "on-failure", "always"])
def test_policies_round_trip(policy: str) -> None:
    spec = make_spec("web", restart=policy)
    assert check_spec(spec.to_json()).restart == policy


@pytest.mark.parametrize("kw,word", [({"restart": "unless-stopped"}, "use no, on-failure"),
                                     ({"restart": "always", "auto_remove": True}, "--rm"),
                                     ({"restart": "on-failure", "disposable": True}, "--rm")])
def test_bad_policies_are_refused(kw: dict[str, object], word: str) -> None:
    with pytest.raises(InvalidInputError, match=word):
        make_spec("web", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy,requested,why,wanted", [
    ("no", False, "", False),                       # a crash, no policy
    ("on-failure", False, "", True),                # a crash (QEMU died, killed, host reboot)
    ("always", False, "", True),
    ("on-failure", False, "guest-panic", True),
    ("on-failure", False, "guest-shutdown", False),  # the guest powered off: no failure
    ("always", False, "guest-shutdown", True),
    ("always", True, "", False),                    # vmkit stop / kill / rm -f
    ("on-failure", True, "guest-shutdown", False),
    ("always", False, "host-qmp-quit", False),      # someone quit QEMU over QMP
    ("always", False, "host-qmp-system-reset", False),
])
def test_when_a_vm_is_started_again(policy: str, requested: bool, why: str,
                                    wanted: bool) -> None:
    assert restart_wanted(policy, requested, why) is wanted


def test_the_back_off_doubles_up_to_a_minute() -> None:
    delays = [restart_delay(n) for n in range(10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert delays[-1] == MAX_DELAY and restart_delay(10**6) == MAX_DELAY
    assert delays == sorted(delays)


def test_a_waiting_restart_is_called_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """What stop, kill, rm and 'update --restart no' do to a restart that waits."""
    monkeypatch.setattr(watch, "restart_delay", lambda failures: 0.01)
    crashed = SimpleNamespace(state=VmState.CRASHED, spec=SimpleNamespace(restart="always"))
    started: list[str] = []

    async def start(name: str) -> None:
        started.append(name)

    async def main() -> None:
        reg = SimpleNamespace(spawn=asyncio.create_task,
                              store=SimpleNamespace(vm=lambda name: crashed))
        w = Watch(reg, None)  # type: ignore[arg-type]
        w.start = start
        w.restart_later("a")
        w.restart_later("b")
        assert w.cancel_restart("a") and not w.cancel_restart("a")
        await asyncio.sleep(0.2)
        assert started == ["b"] and not w.cancel_restart("b")  # it ran: nothing waits

    asyncio.run(main())
