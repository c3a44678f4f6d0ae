#!/usr/bin/env python3
"""A burst: many `gracectl allocate` at once, beside as many portpicker calls.

    python3 docs/benchmarks/burst.py BIN [--callers 500] [--rounds 2]

Each round starts CALLERS `gracectl allocate` processes at once against a
fresh registry, with gracectl's defaults (lock timeout 10 s) except the
range, 20000-20999, which must hold them all; then CALLERS portpicker calls
(/usr/bin/python3 -c 'import portpicker; print(portpicker.pick_unused_port())')
at once. For each: the time until the last process ended, the processes
that failed (exit status other than 0, or no port printed) by exit status,
the ports handed out twice, and the CPU time each process used (median and
max, from wait4). Prints markdown. Asserts nothing.
"""
import argparse
import collections
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PORTPICKER = ["/usr/bin/python3", "-c", "import portpicker; print(portpicker.pick_unused_port())"]


def burst(argvs, env):
    """Start every argv at once (stdout to a file each), wait for all."""
    out = tempfile.mkdtemp(prefix="gracectl-burst-")
    fds, pids = [], []
    t0 = time.perf_counter()
    for i, argv in enumerate(argvs):
        fd = os.open(os.path.join(out, str(i)), os.O_WRONLY | os.O_CREAT, 0o600)
        pids.append(bench.spawn(argv, env, stdout=fd))
        fds.append(fd)
    for fd in fds:
        os.close(fd)
    codes, cpu = {}, {}
    while len(codes) < len(pids):
        pid, status, ru = os.wait4(-1, 0)
        codes[pid] = os.waitstatus_to_exitcode(status)
        cpu[pid] = ru.ru_utime + ru.ru_stime
    wall = time.perf_counter() - t0
    ports, failed = [], collections.Counter()
    for i, pid in enumerate(pids):
        with open(os.path.join(out, str(i))) as f:
            port = f.read().strip()
        if codes[pid] != 0 or not port.isdigit():
            failed["exit %d" % codes[pid]] += 1
        else:
            ports.append(port)
    shutil.rmtree(out, ignore_errors=True)
    cpus = [cpu[p] for p in pids]
    return {"wall": wall, "failed": failed, "dups": len(ports) - len(set(ports)), "ok": len(ports),
            "cpu_med": statistics.median(cpus), "cpu_max": max(cpus)}


def gracectl_round(binary, callers):
    root = tempfile.mkdtemp(prefix="gracectl-burst-root-")
    env = dict(os.environ, GRACECTL_ROOT=root, GRACECTL_WATCHDOG="off")
    env.pop("GRACECTL_LOCK_TIMEOUT", None)  # the default
    r = burst([[binary, "allocate", "--service", "c%d" % i, "--range", "20000-20999"] for i in range(callers)], env)
    with open(os.path.join(root, "databases/port_registry/port_registry.json")) as f:
        r["registry"] = len(json.load(f)["allocations"])
    shutil.rmtree(root, ignore_errors=True)
    return r


def row(name, r):
    failed = ", ".join("%d (%s)" % (n, k) for k, n in sorted(r["failed"].items())) or "0"
    reg = " (%d in the registry)" % r["registry"] if "registry" in r else ""
    return "| %s | %.2f s | %d%s | %s | %d | %.1f ms | %.1f ms |" % (
        name, r["wall"], r["ok"], reg, failed, r["dups"], r["cpu_med"] * 1e3, r["cpu_max"] * 1e3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--callers", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    bench.header("A burst of %d allocations at once, gracectl and portpicker" % a.callers, binary)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * a.callers)), hard))
    print("`python3 docs/benchmarks/burst.py %s --callers %d --rounds %d`: in each round, %d `gracectl allocate` "
          "at once (default lock timeout, range 20000-20999, a fresh registry), then %d portpicker calls at once." % (
              a.bin, a.callers, a.rounds, a.callers, a.callers))
    print()
    print("| round | wall until the last ended | got a port | failed | handed out twice | CPU per process, median | max |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for i in range(a.rounds):
        print(row("%d: gracectl allocate" % (i + 1), gracectl_round(binary, a.callers)), flush=True)
        print(row("%d: portpicker" % (i + 1), burst([PORTPICKER] * a.callers, os.environ)), flush=True)
    print()
    print("At the end: " + bench.load())


if __name__ == "__main__":
    main()
