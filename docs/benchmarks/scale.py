#!/usr/bin/env python3
"""Scale: each command at 100 and at 5,000 allocations, taking turns.

    python3 docs/benchmarks/scale.py BIN [--runs 20]

Two registries in a 10,000-port range (10000-19999), one of 100
allocations and one of 5,000 (every other port from 10000), each owned by
one of ten live `sleep` processes, recorded with their start times, as
`gracectl run` or `register` records them. In each round, each command runs
once against each registry: `check` (probes every owner, writes the
statuses: it exits 1, as the owners listen nowhere), `status`, `allocate`
(then `release`, untimed) and `release` (of a port allocated untimed just
before). Prints the medians of the wall time with min-max and the ratio
5,000 / 100 (the median of the round-by-round ratios), and the same for
the CPU time (user + system, wait4), in markdown. Asserts nothing.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

RANGE = "10000-19999"


def write_owned_registry(root, n, owners):
    """n allocations on 10000, 10002, ..., owned in turn by owners."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip()
    starts = {}
    for pid in owners:
        with open("/proc/%d/stat" % pid) as f:
            starts[pid] = int(f.read().rsplit(")", 1)[1].split()[19])
    allocs = {}
    for i in range(n):
        p, o = 10000 + 2 * i, owners[i % len(owners)]
        allocs[str(p)] = {"port": p, "service_name": "svc%d" % i, "started_by": "serve.py", "purpose": "scale",
                          "pid": o, "allocated_at": "2026-01-01T00:00:00Z", "health_status": "active",
                          "request_count": 0, "error_count": 0, "allocation_id": "%016x" % i,
                          "pid_start": starts[o], "boot_id": boot, "registered_at": "2026-01-01T00:00:00Z"}
    d = os.path.join(root, "databases/port_registry")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "port_registry.json"), "w") as f:
        json.dump({"allocations": allocs, "last_updated": "2026-01-01T00:00:00Z"}, f, indent=2)


def measure(binary, roots, runs):
    envs = {n: dict(os.environ, GRACECTL_ROOT=r, GRACECTL_RANGE=RANGE, GRACECTL_WATCHDOG="off") for n, r in roots.items()}

    def check(env):
        w, c, _, code = bench.run_timed([binary, "check"], env)
        if code not in (0, 1):
            raise RuntimeError("check exited %d" % code)
        return w, c

    def status(env):
        return bench.run_timed([binary, "status"], env)[:2]

    def allocate(env):
        w, c, out, _ = bench.run_timed([binary, "allocate", "--service", "x", "--preferred", "10001"], env)
        subprocess.run([binary, "release", out.strip(), "--force"], env=env, capture_output=True, check=True)
        return w, c

    def release(env):
        port = subprocess.run([binary, "allocate", "--service", "x", "--preferred", "10001"], env=env,
                              capture_output=True, text=True, check=True).stdout.strip()
        return bench.run_timed([binary, "release", port, "--force"], env)[:2]

    cmds = [("check", check), ("status", status), ("allocate", allocate), ("release", release)]
    xs = {(c, n): [] for c, _ in cmds for n in roots}
    for i in range(runs + 2):
        for c, fn in cmds:
            for n in (roots if i % 2 == 0 else list(roots)[::-1]):
                t = fn(envs[n])
                if i >= 2:  # two rounds of warm-up
                    xs[(c, n)].append(t)
    return [c for c, _ in cmds], xs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    bench.header("Scale: 100 and 5,000 allocations", binary)
    owners = [bench.spawn(["sleep", "3600"]) for _ in range(10)]
    roots = {}
    try:
        for n in (100, 5000):
            roots[n] = tempfile.mkdtemp(prefix="gracectl-scale-%d-" % n)
            write_owned_registry(roots[n], n, owners)
        cmds, xs = measure(binary, roots, a.runs)
    finally:
        for pid in owners:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for r in roots.values():
            shutil.rmtree(r, ignore_errors=True)
    print("`python3 docs/benchmarks/scale.py %s --runs %d`: %d rounds; range %s; owners alive, listening nowhere." % (
        a.bin, a.runs, a.runs, RANGE))
    print()
    print("| command | 100 allocations: wall | 5,000 allocations: wall | ratio 5,000 / 100 | CPU at 100 | CPU at 5,000 | CPU ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ratios = {}
    for c in cmds:
        small, big = [x[0] for x in xs[(c, 100)]], [x[0] for x in xs[(c, 5000)]]
        csmall, cbig = [x[1] for x in xs[(c, 100)]], [x[1] for x in xs[(c, 5000)]]
        ratios[c] = bench.med([b / s for b, s in zip(big, small)])
        print("| `gracectl %s` | %s | %s | %.2f | %.1f ms | %.1f ms | %.2f |" % (
            c, bench.spread(small), bench.spread(big), ratios[c], bench.med(csmall) * 1e3, bench.med(cbig) * 1e3,
            bench.med([b / s for b, s in zip(cbig, csmall) if s > 0])))
    print()
    print("Target: `check` at 5,000 ≤ 4× at 100: %.2f× (%s)." % (ratios["check"], "met" if ratios["check"] <= 4 else "not met"))
    print()
    print("At the end: " + bench.load())


if __name__ == "__main__":
    main()
