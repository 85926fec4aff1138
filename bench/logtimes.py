"""What dating the serial logs costs vmkitd ('vmkit logs --since'): one LogTimes tick (a stat
of each running VM's log, a mark appended where it grew) over N VMs, on files like a real
home's, idle and with every log growing. Its baseline: the loop that does nothing but visit
the VMs' names.

    python bench/logtimes.py --vms 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from vmkit.core.logtimes import LogTimes
from vmkit.paths import HomePaths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = HomePaths(Path(tmp))
        names = [f"vm{i}" for i in range(args.vms)]
        for name in names:
            paths.vm(name).dir.mkdir(parents=True)
            paths.vm(name).serial_log.write_bytes(b"boot\n" * 100)
        reg = SimpleNamespace(paths=paths, machines=dict.fromkeys(names))
        times = LogTimes(reg)  # type: ignore[arg-type]
        times.tick(time.time())  # the first marks
        for label, grow in (("idle logs", False), ("every log growing", True)):
            spent = []
            for _ in range(args.ticks):
                if grow:
                    for name in names:
                        with open(paths.vm(name).serial_log, "ab") as f:
                            f.write(b"x\n")
                start = time.perf_counter()
                times.tick(time.time())
                spent.append(time.perf_counter() - start)
            spent.sort()
            print(f"{label}, {args.vms} VMs: tick min {spent[0] * 1e3:.2f} ms, median "
                  f"{spent[len(spent) // 2] * 1e3:.2f} ms (once a second: "
                  f"{spent[len(spent) // 2] * 100:.3f} % of a core)")
        start = time.perf_counter()
        for _ in range(args.ticks):
            for name in set(reg.machines):
                paths.vm(name)
        print(f"baseline (names only): {(time.perf_counter() - start) / args.ticks * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
