#!/usr/bin/env python3
"""Whole-process benchmarks of gracectl. `make bench` runs it.

    python3 docs/benchmarks/bench.py BIN [--runs N] [--quick]

100 concurrent allocations; the time `gracectl run` adds before its child
starts; the watchdog over 101 allocations (cycle time, RSS, CPU per cycle,
the API under wrk, the CPU a /metrics scrape costs); a cycle with 50 hanging
health endpoints; SIGKILL of an owner to its release. Every figure is a
median over repeated runs with its min-max. It also holds what the other
scripts share: the network namespace, the load line, process timing.
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
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..", "..")
# Baselines are built as `make build` builds gracectl.
GO_BUILD = ["go", "build", "-trimpath", "-ldflags=-s -w"]


def isolate():
    """Re-run this script in a network namespace of its own (as root, with
    unshare): its ports then collide with nothing else on the machine, not
    another benchmark, not a test suite, not a service. Returns a line that
    says where it runs."""
    if os.environ.get("GRACECTL_BENCH_NETNS") == "1":
        return "network: a namespace of its own (unshare --net), loopback only"
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        env = dict(os.environ, GRACECTL_BENCH_NETNS="1")
        argv = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                sys.executable, os.path.abspath(sys.argv[0]), *sys.argv[1:]]
        sys.stdout.flush()
        os.execvpe("unshare", argv, env)
    return "network: the host's (not root, or no unshare): its ports may meet other programs'"


def load():
    """The machine's load, for the record beside each table."""
    one, five, fifteen = os.getloadavg()
    return "load average %.2f, %.2f, %.2f (1, 5, 15 min) on %d cores" % (one, five, fifteen, os.cpu_count())


def header(title, binary):
    """The lines every script prints first: what ran, where, and the load.
    It first moves the script into a network namespace of its own."""
    where = isolate()
    print("# " + title)
    print()
    rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print("- machine: %s, %d cores, Linux %s; %s" % (os.uname().machine, os.cpu_count(), os.uname().release,
                                                   subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()))
    if binary:
        ver = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
        print("- binary: %s (%s, %.1f MB), tree at %s" % (binary, ver, os.path.getsize(binary) / 1e6, rev or "?"))
    print("- " + where)
    print("- at the start: " + load())
    print()


def build_go(pkg, name):
    """A program of docs/benchmarks, built static like gracectl."""
    out = os.path.join(tempfile.mkdtemp(prefix="gracectl-%s-" % name), name)
    subprocess.run(GO_BUILD + ["-o", out, pkg], check=True, cwd=REPO, env=dict(os.environ, CGO_ENABLED="0"))
    return out


def spawn(argv, env=None, stdout=None):
    """Start argv (searched in PATH) with stdin and stderr on /dev/null and
    stdout on the fd given (default /dev/null); returns its pid. posix_spawn
    rather than subprocess: less of the parent's own time in the figures."""
    acts = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0)]
    if stdout is None:
        acts.append((os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0))
    else:
        acts.append((os.POSIX_SPAWN_DUP2, stdout, 1))
    return os.posix_spawnp(argv[0], argv, env if env is not None else os.environ, file_actions=acts)


def run_timed(argv, env=None):
    """Run argv to its end: (wall seconds, CPU seconds of the child, its
    stdout, its exit code). Wall is from before the spawn to after the
    wait; CPU is the child's user + system time (wait4)."""
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = spawn(argv, env, stdout=w)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    os.close(r)
    return wall, ru.ru_utime + ru.ru_stime, b"".join(chunks).decode(), os.waitstatus_to_exitcode(status)


def spread(xs, scale=1e3, unit="ms", digits=2):
    """A median with its min-max: "12.34 ms (10.01-20.50)"."""
    f = "%%.%df" % digits
    return (f + " %s (" + f + "-" + f + ")") % (med(xs) * scale, unit, min(xs) * scale, max(xs) * scale)


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
    return build_go("./docs/benchmarks/minimal", "minimal")


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
        got = [p for p in ports if p]
        dups = len(got) - len(set(got))
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
        e.run("register", str(first + i), "--pid", str(helper.pid), "--service", "s%d" % i)
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


def bench_metrics(binary, scrapes):
    """CPU of the watch process per /metrics scrape, 100 allocations with
    live owners, after the first cycle (interval 1 h: no cycle runs while
    scraping); plain, then gzip-encoded as Prometheus asks."""
    e = Env(binary)
    rg, api = "20000-20099", "127.0.0.1:20150"
    owner = subprocess.Popen(["sleep", "3600"])
    for i in range(100):
        e.run("allocate", "--service", "s%d" % i, "--range", rg, "--pid", str(owner.pid))
    w = subprocess.Popen([e.bin, "watch", "--interval", "1h", "--range", rg, "--api", api], env=e.env, stderr=subprocess.DEVNULL)
    while e.watchdog().get("checks_performed", 0) < 1:
        time.sleep(0.05)
    out = {}
    for name, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        req = urllib.request.Request("http://%s/metrics" % api, headers=headers)
        for _ in range(20):
            urllib.request.urlopen(req).read()
        t0 = cpu_ticks(w.pid)
        for _ in range(scrapes):
            size = len(urllib.request.urlopen(req).read())
        out[name] = ((cpu_ticks(w.pid) - t0) * 10.0 / scrapes, size)  # USER_HZ is 100
    w.send_signal(signal.SIGTERM)
    w.wait()
    owner.kill()
    owner.wait()
    e.close()
    return out


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="fewer crash-to-release runs")
    a = ap.parse_args()
    b = os.path.abspath(a.bin)
    header("gracectl whole-process benchmarks", b)
    print("`python3 docs/benchmarks/bench.py %s --runs %d%s`" % (a.bin, a.runs, " --quick" if a.quick else ""))
    print()
    print("| measurement | result |")
    print("| --- | --- |")
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
    scrapes = 2000
    for name, (ms, size) in bench_metrics(b, scrapes).items():
        print("| `watch` CPU per `/metrics` scrape, 100 allocations, %s (%d scrapes, %d bytes each) | %.3f ms |" % (name, scrapes, size, ms))
    d50, _, _, _ = bench_watchdog(b, 50, 4, timeout="2s")
    print("| watchdog cycle, 101 allocations, 50 hanging (2 s timeout) | %s |" % fmt_ms(d50))
    # SIGKILL of a registered owner until its port is gone from the registry,
    # with the default interval: the pidfd path, not the cycle.
    cr30 = bench_crash_release(b, "30s", 5 if a.quick else 20)
    print("| crash-to-release, default 30 s interval (pidfd; the registry polled every 10 ms) | %s |" % fmt_ms(cr30))
    print()
    print("At the end: " + load())


if __name__ == "__main__":
    main()
