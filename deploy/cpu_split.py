"""Where a load test's CPU time went: web, workers, PostgreSQL, Redis and the load generator.

Used by ``deploy/load-test.sh``; standard library only, Linux only (reads ``/proc``)::

    python deploy/cpu_split.py snapshot --web PID --workers PID [PID ...] > before.json
    ...  # the load test runs
    python deploy/cpu_split.py snapshot --web PID --workers PID [PID ...] > after.json
    python deploy/cpu_split.py report before.json after.json [--frames N]

A snapshot holds, per group, the CPU seconds (user + system) of its processes: ``web`` and
``workers`` are the given processes and all their descendants, ``postgres`` every process named
``postgres``, ``redis`` every ``redis-server``, ``machine`` the whole machine's busy CPU seconds
(``/proc/stat``: user + nice + system + irq + softirq + steal), so ``other`` (machine minus the
groups) is the load generator and anything else that ran. A process's ``cutime``/``cstime`` (children it has
waited for, e.g. PostgreSQL backends that exited) are counted too, so nothing that ran and ended
between two snapshots is lost. Clock ticks are ``os.sysconf("SC_CLK_TCK")`` (100 per second on
Linux), so a figure is exact to 10 ms per process. Source of the field layouts: proc(5),
``/proc/[pid]/stat`` fields 14-17 (utime, stime, cutime, cstime) and ``/proc/stat``'s ``cpu`` line.

``report`` prints each group's CPU seconds and the cores it kept busy on average (CPU seconds /
wall seconds between the snapshots), and with ``--frames`` the workers' CPU milliseconds per
analysed frame and what that means in students per worker core at 1 frame/s
(1000 / ms per frame).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float] | None:
    """``(name, parent pid, CPU seconds incl. waited-for children)`` of one process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The name is in parentheses and may contain spaces: split after the last ")".
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): field k is fields[k - 3].
    ppid = int(fields[1])
    ticks = sum(int(fields[k - 3]) for k in (14, 15, 16, 17))
    return name, ppid, ticks / TICKS_PER_S


def _machine_busy_s() -> float:
    """Busy CPU seconds of all cores since boot (``/proc/stat``'s first line)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


def snapshot(web: list[int], workers: list[int]) -> dict:
    """CPU seconds per group now, plus the wall clock (``time.monotonic``) under ``"at"``."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _stat(int(entry))) is not None:
            procs[int(entry)] = info
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)

    def tree(roots: list[int]) -> float:
        total, stack, seen = 0.0, list(roots), set()
        while stack:
            pid = stack.pop()
            if pid in seen or pid not in procs:
                continue
            seen.add(pid)
            total += procs[pid][2]
            stack.extend(children.get(pid, []))
        return total

    def named(name: str) -> float:
        return sum(cpu for n, _, cpu in procs.values() if n == name)

    return {
        "at": time.monotonic(),
        "web": tree(web),
        "workers": tree(workers),
        "postgres": named("postgres"),
        "redis": named("redis-server"),
        "machine": _machine_busy_s(),
    }


def report(before: dict, after: dict, *, frames: int | None = None) -> str:
    """The lines ``report`` prints (see the module docstring)."""
    wall = max(after["at"] - before["at"], 1e-9)
    lines = [f"CPU use over {wall:.1f} s (cores kept busy on average)"]
    groups = ("web", "workers", "postgres", "redis")
    used = {group: after[group] - before[group] for group in groups}
    machine = after["machine"] - before["machine"]
    used["other"] = max(machine - sum(used.values()), 0.0)
    used["machine"] = machine
    for group, seconds in used.items():
        lines.append(f"  {group:<10} {seconds:7.1f} s  {seconds / wall:5.2f} cores")
    worker_s = used["workers"]
    if frames and worker_s > 0:
        ms = 1000.0 * worker_s / frames
        lines.append(
            f"  workers: {ms:.1f} CPU ms per analysed frame, "
            f"{1000.0 / ms:.0f} students per worker core at 1 frame/s"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot", help="print a JSON snapshot of CPU seconds per group")
    snap.add_argument("--web", type=int, nargs="+", default=[], help="web process id(s)")
    snap.add_argument("--workers", type=int, nargs="+", default=[], help="worker process id(s)")
    rep = sub.add_parser("report", help="compare two snapshots")
    rep.add_argument("before", type=Path)
    rep.add_argument("after", type=Path)
    rep.add_argument("--frames", type=int, help="frames analysed between the snapshots")
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        print(json.dumps(snapshot(args.web, args.workers)))
        return 0
    try:
        before = json.loads(args.before.read_text())
        after = json.loads(args.after.read_text())
    except (OSError, ValueError) as exc:
        print(f"cpu_split: cannot read a snapshot: {exc}", file=sys.stderr)
        return 2
    print(report(before, after, frames=args.frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
