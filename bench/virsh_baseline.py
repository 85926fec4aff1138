r"""Save and restore a running guest with libvirt's ``virsh`` (no vmkit), as a baseline.

What it measures, per run, on a freshly booted guest (the boot itself is not timed):
  save     wall-clock seconds of ``virsh save DOMAIN FILE`` (guest RAM and device state to a
           file; the domain is gone when it returns)
  restore  seconds from starting ``virsh restore FILE`` until the guest agent answers
           guest-sync-delimited again, the same definition of ready as bench/rawboot.py

The guest is vmkit's: a transient libvirt domain of type 'qemu' (TCG) on the microvm machine,
direct kernel boot of the uncompressed vmlinux (PVH entry) and the initrd, a qcow2 overlay on the
raw root disk as a virtio(-mmio) disk, the serial console to a file, and no network at all.
The kernel command line gets tsc_early_khz, as vmkit's does: without it the boot sometimes hangs.

The guest agent's virtio-serial port is given to QEMU through <qemu:commandline>, not as a
libvirt <channel>: libvirt connects to a channel named org.qemu.guest_agent.0 itself, and QEMU's
socket serves one client at a time, so after a restore our connection would never be answered.
The domain's DAC label is root with relabel='no': libvirt changes no owner or xattr of any file.

libvirtd on Debian 12 as root when PID 1 is not systemd (what ensure_libvirtd does if the
packages are installed and the daemons are not running):
    apt-get install -y --no-install-recommends libvirt-daemon-system libvirt-clients
    printf 'user = "+0"\ngroup = "+0"\n' >> /etc/libvirt/qemu.conf
    mkdir -p /var/log/libvirt /run/libvirt
    virtlogd -d          # libvirtd hands QEMU's output to it: domains do not start without it
    libvirtd -d          # qemu:///system; its log's errors on dnsmasq, D-Bus, dmidecode are harmless
The qemu.conf lines matter where /dev/kvm is root-only: QEMU, probed as root, reports KVM, but
the default QEMU user (libvirt-qemu) cannot open /dev/kvm, so libvirt finds its capability cache
stale and probes QEMU again (seconds to a minute under TCG) on every start and restore.
stop_libvirtd() stops the daemons that ensure_libvirtd started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawboot import agent_ready

from vmkit.machine.accel import tsc_khz

URI = "qemu:///system"
CMDLINE = "console=ttyS0 root=/dev/vda rw quiet panic=-1 tsc=reliable no_timer_check mitigations=off"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
RUN_AS_ROOT = '\n# vmkit bench/virsh_baseline.py: run QEMU as root (see there)\nuser = "+0"\ngroup = "+0"\n'
AGENT_TIMEOUT = 120.0  # seconds for the agent to answer after a boot or a restore
DAEMONS = {  # daemon -> its pid file when started as root with -d
    "virtlogd": Path("/run/virtlogd.pid"),
    "libvirtd": Path("/run/libvirtd.pid"),
}
_started: list[int] = []  # pids of the daemons ensure_libvirtd started


def _virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True,
                          check=check, stdin=subprocess.DEVNULL)


def _answers() -> bool:
    return _virsh("version", check=False).returncode == 0


def _running(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def ensure_libvirtd() -> str | None:
    """Start virtlogd and libvirtd if they are installed but not running; None once virsh can
    reach qemu:///system, else one line saying why it cannot."""
    missing = [tool for tool in ("virsh", *DAEMONS) if shutil.which(tool) is None]
    if missing:
        return f"libvirt is not installed (no {', '.join(missing)})"
    if _answers():
        return None
    if os.geteuid() != 0:
        return "libvirtd is not running, and only root can start it for qemu:///system"
    if QEMU_CONF.exists() and not any(line.split("=")[0].strip() == "user"
                                      for line in QEMU_CONF.read_text().splitlines()):
        with QEMU_CONF.open("a") as f:
            f.write(RUN_AS_ROOT)
    for d in ("/var/log/libvirt", "/run/libvirt"):
        os.makedirs(d, exist_ok=True)
    for daemon, pidfile in DAEMONS.items():
        if _running(pidfile):
            continue
        result = subprocess.run([daemon, "-d"], capture_output=True, text=True, check=False,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            return f"{daemon} -d failed: {(result.stderr or result.stdout).strip()[:200]}"
        for _ in range(50):
            if _running(pidfile):
                _started.append(int(pidfile.read_text().strip()))
                break
            time.sleep(0.1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if _answers():
            return None
        time.sleep(0.2)
    detail = _virsh("version", check=False).stderr.strip().splitlines()
    return f"libvirtd does not answer on {URI}: {detail[-1] if detail else 'no error given'}"


def stop_libvirtd() -> None:
    """Stop the daemons that ensure_libvirtd started (and no others)."""
    while _started:
        pid = _started.pop()
        try:
            os.kill(pid, 15)
        except ProcessLookupError:
            pass


def domain_xml(name: str, kernel: Path, initrd: Path, cmdline: str, rootfs: Path, disk: Path,
               agent_sock: Path, console: Path, memory_mib: int) -> str:
    """A microvm domain with direct kernel boot, one virtio disk, the agent port, no network."""
    def a(value: object) -> str:
        return quoteattr(str(value))

    return f"""\
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='microvm'>hvm</type>
    <kernel>{escape(str(kernel))}</kernel>
    <initrd>{escape(str(initrd))}</initrd>
    <cmdline>{escape(cmdline)}</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={a(disk)}/>
      <backingStore type='file'>
        <format type='raw'/>
        <source file={a(rootfs)}/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
      <address type='virtio-mmio'/>
    </disk>
    <controller type='virtio-serial' index='0'><address type='virtio-mmio'/></controller>
    <controller type='usb' model='none'/>
    <serial type='file'><source path={a(console)}/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-chardev'/>
    <qemu:arg value={a(f"socket,id=benchagent,path={agent_sock},server=on,wait=off")}/>
    <qemu:arg value='-device'/>
    <qemu:arg value='{{"driver":"virtserialport","bus":"virtio-serial0.0","chardev":"benchagent","name":"org.qemu.guest_agent.0"}}'/>
  </qemu:commandline>
</domain>
"""


def _one_run(name: str, kernel: Path, initrd: Path, rootfs: Path, memory_mib: int,
             tmp: Path) -> tuple[float, float]:
    disk, sock, state = tmp / "disk.qcow2", tmp / "agent.sock", tmp / "state.save"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(rootfs), "-F", "raw",
                    str(disk)], check=True, capture_output=True, text=True)
    xml = tmp / "domain.xml"
    # microvm has no HPET, and the kernel's TSC calibration against the PIT fails now and then
    # under TCG, which hangs the boot: give it the TSC rate, as vmkit does.
    cmdline = f"{CMDLINE} tsc_early_khz={tsc_khz()}"
    xml.write_text(domain_xml(name, kernel, initrd, cmdline, rootfs, disk, sock,
                              tmp / "console.log", memory_mib))
    _virsh("create", str(xml))
    agent_ready(str(sock), time.monotonic() + AGENT_TIMEOUT)

    start = time.monotonic()
    _virsh("save", name, str(state))
    save = time.monotonic() - start

    start = time.monotonic()
    _virsh("restore", str(state))
    agent_ready(str(sock), start + AGENT_TIMEOUT)
    return save, time.monotonic() - start


def virsh_save_restore(kernel: Path, initrd: Path, rootfs: Path, memory_mib: int,
                       runs: int) -> dict[str, list[float]] | str:
    """Seconds of ``virsh save`` and of ``virsh restore`` to the agent's answer, ``runs`` times;
    or one line saying why libvirt cannot do it here."""
    error = ensure_libvirtd()
    if error:
        return error
    results: dict[str, list[float]] = {"save": [], "restore": []}
    for i in range(runs):
        name = f"vmkit-bench-{os.getpid()}-{i}"
        tmp = Path(tempfile.mkdtemp(prefix="virsh-bench-", dir="/tmp"))
        try:
            save, restore = _one_run(name, Path(kernel).resolve(), Path(initrd).resolve(),
                                     Path(rootfs).resolve(), memory_mib, tmp)
            results["save"].append(save)
            results["restore"].append(restore)
        except subprocess.CalledProcessError as e:
            step = " ".join([a for a in e.cmd if a not in ("-q", "-c", URI)][:2])
            lines = (e.stderr or e.stdout or "").strip().splitlines() or ["no message"]
            return f"{step} failed: {lines[-1][:300]}"
        except TimeoutError:
            return f"the guest agent did not answer within {AGENT_TIMEOUT:.0f} s under libvirt"
        finally:
            _virsh("destroy", name, check=False)  # gone already unless a step failed
            shutil.rmtree(tmp, ignore_errors=True)
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel", type=Path)
    parser.add_argument("initrd", type=Path)
    parser.add_argument("rootfs", type=Path)
    parser.add_argument("--memory", type=int, default=256, help="MiB (default 256)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    try:
        out = virsh_save_restore(args.kernel, args.initrd, args.rootfs, args.memory, args.runs)
    finally:
        stop_libvirtd()
    if isinstance(out, str):
        print(out)
    else:
        for key, values in out.items():
            print(f"{key:8} " + "  ".join(f"{v:.3f}" for v in values) + " s")
