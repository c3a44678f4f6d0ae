#!/usr/bin/env python3
"""Whole-process benchmarks of gracectl. `make bench` runs it.

    python3 docs/benchmarks/bench.py BIN [--runs N] [--quick]

Every figure is a median over repeated runs with its min-max, and where a
baseline makes sense it is measured in the same run and the ratio given.
Ports used: 20000-20399 (below the ephemeral range, away from 8000-8100).
Nothing here is a test: it prints numbers, it asserts nothing.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def med(xs):
    return statistics.median(xs)


def fmt_ms(xs):
    return "%.2f ms (min %.2f, max %.2f, n=%d)" % (med(xs) * 1e3, min(xs) * 1e3, max(xs) * 1e3, len(xs))


class Env:
    def __init__(self, binary):
        self.bin = binary
        self.root = tempfile.mkdtemp(prefix="gracectl-bench-")
        self.env = dict(os.environ, GRACECTL_ROOT=self.root)

    def run(self, *args, check=True):
        return subprocess.run([self.bin, *args], env=self.env, capture_output=True, text=True, check=check)

    def registry(self):
        p = os.path.join(self.root, "databases/port_registry/port_registry.json")
        with open(p) as f:
            return json.load(f)

    def watchdog(self):
        p = os.path.join(self.root, "databases/port_registry/watchdog.json")
        try:
            with open(p) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)


def timed(argv, env=None):
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def build_minimal():
    """The baseline program of docs/benchmarks/minimal, built static like gracectl."""
    out = os.path.join(tempfile.mkdtemp(prefix="gracectl-minimal-"), "minimal")
    subprocess.run(["go", "build", "-o", out, "./docs/benchmarks/minimal"], check=True,
                   cwd=os.path.join(HERE, "..", ".."), env=dict(os.environ, CGO_ENABLED="0"))
    return out


def bench_allocate(binary, runs):
    e = Env(binary)
    rg = "20000-20199"
    for i in range(100):
        e.run("allocate", "--service", "held%d" % i, "--range", rg)
    minimal = build_minimal()
    mdir = tempfile.mkdtemp(prefix="gracectl-minimal-state-")
    for _ in range(100):
        subprocess.run([minimal, mdir, "20200", "20399"], capture_output=True, check=True)
    alloc, true, status, base = [], [], [], []
    for _ in range(runs):
        true.append(timed(["/bin/true"]))
        t0 = time.perf_counter()
        port = subprocess.run([minimal, mdir, "20200", "20399"], capture_output=True, text=True, check=True).stdout.strip()
        base.append(time.perf_counter() - t0)
        with open(os.path.join(mdir, "registry.json")) as f:
            reg = json.load(f)
        del reg[port]
        with open(os.path.join(mdir, "registry.json"), "w") as f:
            json.dump(reg, f)
        t0 = time.perf_counter()
        port = e.run("allocate", "--service", "bench", "--range", rg).stdout.strip()
        alloc.append(time.perf_counter() - t0)
        e.run("release", port, "--force")
    e.run("allocate", "--service", "held100", "--range", rg)
    for _ in range(runs):
        status.append(timed([binary, "status", "--range", rg], e.env))
    e.close()
    shutil.rmtree(mdir, ignore_errors=True)
    return alloc, true, status, base


def bench_contention(binary, callers=100, rounds=3):
    out = []
    for _ in range(rounds):
        e = Env(binary)
        t0 = time.perf_counter()
        procs = [subprocess.Popen([binary, "allocate", "--service", "c%d" % i, "--range", "20200-20399"],
                                  env=e.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(callers)]
        ports = [p.communicate()[0].strip() for p in procs]
        wall = time.perf_counter() - t0
        failed = sum(1 for p in procs if p.returncode != 0)
        dups = len(ports) - len(set(ports))
        out.append((wall, dups, failed, len(e.registry()["allocations"])))
        e.close()
    return out


def bench_run_overhead(binary, runs):
    e = Env(binary)
    direct, wrapped = [], []
    for _ in range(runs):
        t0 = time.time_ns()
        child = int(subprocess.run(["date", "+%s%N"], capture_output=True, text=True).stdout)
        direct.append((child - t0) / 1e9)
        t0 = time.time_ns()
        child = int(subprocess.run([binary, "run", "-q", "--range", "20000-20099", "--", "date", "+%s%N"],
                                   env=e.env, capture_output=True, text=True).stdout)
        wrapped.append((child - t0) / 1e9)
    e.close()
    return direct, wrapped


def start_helpers(first, count, hanging):
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "helper_servers.py"), str(first), str(count), str(hanging)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    return p


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def bench_watchdog(binary, hanging, cycles, timeout="2s", api=None):
    first = 20000
    e = Env(binary)
    rg = "%d-%d" % (first, first + 100)
    # Allocate first (a port something listens on is never handed out),
    # then start the servers and register them as the owner.
    for i in range(101):
        e.run("allocate", "--service", "s%d" % i, "--range", rg, "--preferred", str(first + i), "--health-path", "/health")
    helper = start_helpers(first, 101, hanging)
    for i in range(101):
        e.run("register", str(first + i), "--pid", str(helper.pid))
    args = ["watch", "--interval", "1s", "--health-timeout", timeout, "--range", rg]
    if api:
        args += ["--api", api]
    w = subprocess.Popen([e.bin, *args], env=e.env, stderr=subprocess.DEVNULL)
    durations, seen = [], 0
    deadline = time.time() + cycles * 5 + 30
    ticks0 = None
    while seen < cycles and time.time() < deadline:
        st = e.watchdog()
        n = st.get("checks_performed", 0)
        if n > seen:
            if n == 2:
                ticks0 = cpu_ticks(w.pid)
            if n >= 2:
                durations.append(st["last_cycle_duration_ms"] / 1e3)
            seen = n
        time.sleep(0.05)
    ticks = cpu_ticks(w.pid) - (ticks0 or 0)
    rss = rss_kb(w.pid)
    extra = None
    if api:
        extra = bench_api(api)
    w.send_signal(signal.SIGTERM)
    w.wait()
    helper.kill()
    helper.wait()
    e.close()
    idle_cpu_ms = ticks * 10.0 / max(1, len(durations))  # USER_HZ is 100
    return durations, rss, idle_cpu_ms, extra


def bench_api(addr):
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t2", "-c32", "-d5s", "--latency", "http://%s/api/ports/status" % addr],
                         capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1, "s": 1e3}[p99.group(2)]
    return rps, float(p99.group(1)) * scale


def bench_crash_release(binary, interval, runs):
    out = []
    for _ in range(runs):
        e = Env(binary)
        w = subprocess.Popen([e.bin, "watch", "--interval", interval, "--range", "20000-20099"], env=e.env,
                             stderr=subprocess.DEVNULL)
        svc = subprocess.Popen(["sleep", "3600"])
        port = e.run("allocate", "--service", "victim", "--range", "20000-20099", "--pid", str(svc.pid)).stdout.strip()
        while e.watchdog().get("checks_performed", 0) < 1:
            time.sleep(0.01)
        t0 = time.perf_counter()
        svc.kill()
        svc.wait()
        while port in e.registry()["allocations"]:
            time.sleep(0.01)
        out.append(time.perf_counter() - t0)
        w.send_signal(signal.SIGTERM)
        w.wait()
        e.close()
    return out


def write_registry(root, n, first, step):
    d = os.path.join(root, "databases/port_registry")
    os.makedirs(d, exist_ok=True)
    allocs = {}
    for i in range(n):
        p = first + step * i
        allocs[str(p)] = {"port": p, "service_name": "svc%d" % i, "started_by": "serve.py", "purpose": "scale",
                          "allocated_at": "2026-01-01T00:00:00Z", "health_status": "reserved",
                          "request_count": 0, "error_count": 0, "allocation_id": "%016x" % i}
    with open(os.path.join(d, "port_registry.json"), "w") as f:
        json.dump({"allocations": allocs, "last_updated": "2026-01-01T00:00:00Z"}, f, indent=2)


def bench_scale(binary, runs):
    """A 10,000-port range with 5,000 allocations; then the same with a year of logs."""
    e = Env(binary)
    write_registry(e.root, 5000, 10000, 2)
    rg = "10000-19999"

    def measure():
        alloc, rel, status = [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            port = e.run("allocate", "--service", "x", "--range", rg, "--preferred", "10001").stdout.strip()
            alloc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            e.run("release", port, "--force")
            rel.append(time.perf_counter() - t0)
            status.append(timed([binary, "status", "--range", rg], e.env))
        return alloc, rel, status

    before = measure()
    # A year of daily logs, a million lines in all.
    logdir = os.path.join(e.root, "logs/port_manager")
    os.makedirs(logdir, exist_ok=True)
    line = ('{"timestamp":"2025-01-01T00:00:00Z","action":"allocate","port":8000,"service_name":"grace_backend",'
            '"started_by":"serve.py","purpose":"Main Grace API server"}\n')
    per = 1000000 // 365 + 1
    for d in range(365):
        day = time.strftime("%Y%m%d", time.gmtime(time.time() - (d + 1) * 86400))
        with open(os.path.join(logdir, "allocations_%s.jsonl" % day), "w") as f:
            f.write(line * per)
    after = measure()
    e.close()
    return before, after


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="fewer crash-to-release runs")
    ap.add_argument("--scale", action="store_true", help="only the scale runs (5,000 allocations; a year of logs)")
    a = ap.parse_args()
    b = os.path.abspath(a.bin)
    print("# gracectl whole-process benchmarks")
    print()
    print("machine: %s, %d cores, %s" % (os.uname().machine, os.cpu_count(), os.uname().release))
    print("binary: %s (%s)" % (b, subprocess.run([b, "--version"], capture_output=True, text=True).stdout.strip()))
    print()
    if a.scale:
        before, after = bench_scale(b, min(a.runs, 20))
        print("| 10,000-port range, 5,000 allocations | no old logs | 365 daily logs, 1M lines |")
        print("| --- | --- | --- |")
        for i, name in enumerate(["allocate", "release", "status"]):
            print("| `gracectl %s` | %s | %s |" % (name, fmt_ms(before[i]), fmt_ms(after[i])))
        return
    alloc, true, status, base = bench_allocate(b, a.runs)
    print("| measurement | result |")
    print("| --- | --- |")
    print("| `gracectl allocate`, 100 ports held (exec to exit) | %s |" % fmt_ms(alloc))
    print("| baseline: minimal Go flock+read+bind+fsync+rename, 100 held, same run | %s |" % fmt_ms(base))
    print("| ratio gracectl / minimal (medians) | %.2f |" % (med(alloc) / med(base)))
    print("| baseline: `/bin/true` (exec to exit), same run | %s |" % fmt_ms(true))
    print("| `gracectl status`, 101 allocations | %s |" % fmt_ms(status))
    for i, (wall, dups, failed, n) in enumerate(bench_contention(b)):
        print("| 100 concurrent `allocate`, round %d | %.0f ms wall, %d duplicates, %d failed, %d in registry |" % (i + 1, wall * 1e3, dups, failed, n))
    direct, wrapped = bench_run_overhead(b, a.runs)
    over = [w - d for w, d in zip(wrapped, direct)]
    print("| time to child's exec, direct (`date`) | %s |" % fmt_ms(direct))
    print("| time to child's exec, `gracectl run -- date` | %s |" % fmt_ms(wrapped))
    print("| `run` overhead (pairwise difference) | %.2f ms median |" % (med(over) * 1e3))
    d0, rss0, cpu0, api = bench_watchdog(b, 0, 12, api="127.0.0.1:20150")
    print("| watchdog cycle, 101 allocations, healthy | %s |" % fmt_ms(d0))
    print("| `watch` RSS, 101 monitored ports | %.1f MB |" % (rss0 / 1024))
    print("| `watch` CPU per cycle (101 ports, 1 s interval) | %.1f ms |" % cpu0)
    if api:
        print("| API `GET /api/ports/status` (wrk -t2 -c32 -d5s) | %.0f req/s, p99 %.2f ms |" % api)
    else:
        print("| API throughput | wrk not installed (apt-get install wrk) |")
    d50, _, _, _ = bench_watchdog(b, 50, 4, timeout="2s")
    print("| watchdog cycle, 101 allocations, 50 hanging (2 s timeout) | %s |" % fmt_ms(d50))
    # SIGKILL of a registered owner until its port is gone from the registry,
    # with the default interval: the pidfd path, not the cycle.
    cr30 = bench_crash_release(b, "30s", 5 if a.quick else 20)
    print("| crash-to-release, default 30 s interval (pidfd) | %s |" % fmt_ms(cr30))


if __name__ == "__main__":
    main()
