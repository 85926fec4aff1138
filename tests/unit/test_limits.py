"""Cgroup names and cleanup (machine/limits.py), on a fake cgroup tree in a temporary dir."""

from __future__ import annotations

from pathlib import Path

from vmkit.machine.limits import Limits, group_name, home_tag


def test_no_two_qemus_share_a_group() -> None:
    a, b = Path("/srv/vmkit-a"), Path("/srv/vmkit-b")
    # A VM moving between two homes on one host, VMs of one name in two homes, two QEMUs of
    # one VM in turn (a restart), and a pid two homes' QEMUs happen to share.
    names = {group_name(a, "web", 100), group_name(b, "web", 101), group_name(b, "web", 100),
             group_name(a, "web", 102), group_name(a, "db", 100)}
    assert len(names) == 5
    assert group_name(a, "web", 100) == f"{home_tag(a)}.web.100"
    assert group_name(a, "web", 100) == group_name(Path("/srv/vmkit-a"), "web", 100)  # stable


def _v1_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A cgroup v1 layout with cpu and memory controllers, and vmkitd's /proc/self/cgroup."""
    root = tmp_path / "cgroup"
    (root / "cpu").mkdir(parents=True)
    (root / "memory" / "session").mkdir(parents=True)
    proc_self = tmp_path / "self-cgroup"
    proc_self.write_text("4:memory:/session\n1:cpu:/\n0::/\n")
    return root, proc_self


def test_apply_puts_each_qemu_in_a_group_of_its_own(tmp_path: Path) -> None:
    root, proc_self = _v1_tree(tmp_path)
    here = Limits(tmp_path / "home-a", root=root, proc_self=proc_self)
    there = Limits(tmp_path / "home-b", root=root, proc_self=proc_self)
    assert here.version == 1
    here.apply("web", 100, 2, 256)
    there.apply("web", 200, 1, 256)  # the same VM arriving from another home on this host
    name = group_name(tmp_path / "home-a", "web", 100)
    assert set(here.groups("web", 100)) == {root / "cpu" / "vmkit" / name,
                                             root / "memory" / "session" / "vmkit" / name}
    for limits, pid, quota in ((here, 100, "200000"), (there, 200, "100000")):
        for group in limits.groups("web", pid):
            assert (group / "cgroup.procs").read_text() == str(pid)
        cpu = next(g for g in limits.groups("web", pid) if (g / "cpu.cfs_quota_us").exists())
        assert (cpu / "cpu.cfs_quota_us").read_text() == quota
    assert set(here.groups("web", 100)).isdisjoint(there.groups("web", 200))


def test_release_and_clean_remove_only_this_homes_empty_groups(tmp_path: Path) -> None:
    root, proc_self = _v1_tree(tmp_path)
    home, other = tmp_path / "home", tmp_path / "other"
    limits = Limits(home, root=root, proc_self=proc_self)
    bases = [root / "cpu" / "vmkit", root / "memory" / "session" / "vmkit"]

    def make(h: Path, vm: str, pid: int, live: bool = False) -> list[Path]:
        groups = [base / group_name(h, vm, pid) for base in bases]
        for g in groups:
            g.mkdir()
            if live:  # a group with a process in it cannot be removed; a file stands for it
                (g / "cgroup.procs").write_text(str(pid))
        return groups

    gone = make(home, "web", 100)  # its QEMU exited
    older = make(home, "web", 90)  # of a QEMU that exited while no vmkitd ran
    running = make(home, "web", 110, live=True)
    web2 = make(home, "web2", 120)  # another VM (a name that begins with "web")
    theirs = make(other, "web", 100)  # another vmkitd's, on this host
    limits.release("web")
    assert not any(g.exists() for g in gone + older)
    assert all(g.exists() for g in running + web2 + theirs)
    stale = make(home, "db", 130)  # left by a vmkitd that died
    limits.clean()
    assert not any(g.exists() for g in stale + web2)
    assert all(g.exists() for g in running + theirs)


def test_without_cgroups_nothing_is_done(tmp_path: Path) -> None:
    limits = Limits(tmp_path / "home", root=tmp_path / "none", proc_self=tmp_path / "missing")
    assert not limits.enforced and "cannot read" in limits.reason
    limits.apply("web", 100, 1, 256)
    limits.release("web")
    limits.clean()
    assert limits.groups("web", 100) == []
