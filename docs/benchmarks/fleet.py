#!/usr/bin/env python3
"""The fleet view on etcd: publish latency, status --fleet time, etcd writes at rest.

    python3 docs/benchmarks/fleet.py BIN [--hosts 3] [--many 50] [--allocs 100]

Starts one etcd (Debian's etcd-server) on 127.0.0.1:26190 and simulated
hosts: a root each with ALLOCS allocations, each with its own `gracectl watch
--fleet --host-id hN --interval 30s`. Measures: allocate -> visible through
`gracectl port --fleet` (median of 20; it includes that command's own start,
so it is an upper bound); `status --fleet` with HOSTS and with MANY hosts
(median of 20); and etcd's committed proposals over 60 s at rest (HOSTS
hosts, default interval). Prints a markdown table.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

EP = "etcd://127.0.0.1:26190"


def proposals():
    body = urllib.request.urlopen("http://127.0.0.1:26190/metrics").read().decode()
    for line in body.splitlines():
        if line.startswith("etcd_server_proposals_committed_total "):
            return float(line.split()[1])
    return 0.0


def start_hosts(binary, n, allocs, first_id):
    procs, roots = [], []
    for i in range(n):
        root = tempfile.mkdtemp(prefix="gracectl-fleet-")
        bench.write_registry(root, allocs, 30000 + 100 * (first_id + i) % 20000, 1)
        env = dict(os.environ, GRACECTL_ROOT=root, GRACECTL_WATCHDOG="off")
        p = subprocess.Popen([binary, "watch", "--fleet", EP, "--host-id", "h%d" % (first_id + i),
                              "--range", "20000-20099"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        roots.append(root)
    return procs, roots


def wait_hosts(binary, n):
    for _ in range(600):
        r = subprocess.run([binary, "status", "--json", "--fleet=" + EP], capture_output=True, text=True)
        if r.returncode == 0 and len(json.loads(r.stdout)["hosts"]) >= n:
            return
        time.sleep(0.1)
    sys.exit("hosts did not appear")


def time_status(binary, n=20):
    return [bench.timed([binary, "status", "--fleet=" + EP], os.environ) for _ in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--hosts", type=int, default=3)
    ap.add_argument("--many", type=int, default=50)
    ap.add_argument("--allocs", type=int, default=100)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    if not shutil.which("etcd"):
        print("etcd is not installed: skipped")
        return
    bench.header("The fleet view on etcd", binary)
    print("`python3 docs/benchmarks/fleet.py %s --hosts %d --many %d --allocs %d`" % (a.bin, a.hosts, a.many, a.allocs))
    print()
    d = tempfile.mkdtemp(prefix="gracectl-etcd-")
    etcd = subprocess.Popen(["etcd", "--data-dir", d, "--listen-client-urls", "http://127.0.0.1:26190",
                             "--advertise-client-urls", "http://127.0.0.1:26190", "--listen-peer-urls", "http://127.0.0.1:26191",
                             "--initial-advertise-peer-urls", "http://127.0.0.1:26191",
                             "--initial-cluster", "default=http://127.0.0.1:26191"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    procs, roots = start_hosts(binary, a.hosts, a.allocs, 0)
    wait_hosts(binary, a.hosts)
    # Publish latency on host 0.
    env = dict(os.environ, GRACECTL_ROOT=roots[0], GRACECTL_WATCHDOG="off")
    lat = []
    for i in range(20):
        t0 = time.perf_counter()
        subprocess.run([binary, "allocate", "--service", "lat%d" % i, "--range", "20000-20099"], env=env, capture_output=True, check=True)
        while subprocess.run([binary, "port", "lat%d" % i, "--fleet=" + EP], capture_output=True).returncode != 0:
            pass
        lat.append(time.perf_counter() - t0)
    few = time_status(binary)
    # At rest: committed proposals over 60 s.
    time.sleep(5)
    p0 = proposals()
    time.sleep(60)
    rest = proposals() - p0
    more, more_roots = start_hosts(binary, a.many - a.hosts, a.allocs, a.hosts)
    wait_hosts(binary, a.many)
    many = time_status(binary)
    for p in procs + more:
        p.send_signal(signal.SIGTERM)
    for p in procs + more:
        p.wait()
    etcd.send_signal(signal.SIGTERM)
    etcd.wait()
    for r in roots + more_roots + [d]:
        shutil.rmtree(r, ignore_errors=True)
    print("| measurement | result |")
    print("| --- | --- |")
    print("| allocate -> visible via `port --fleet` (upper bound) | %s |" % bench.fmt_ms(lat))
    print("| `status --fleet`, %d hosts x %d allocations | %s |" % (a.hosts, a.allocs, bench.fmt_ms(few)))
    print("| `status --fleet`, %d hosts x %d allocations | %s |" % (a.many, a.allocs, bench.fmt_ms(many)))
    print("| etcd proposals committed in 60 s at rest, %d hosts, 30 s interval | %.0f |" % (a.hosts, rest))
    print()
    print("At the end: " + bench.load())


if __name__ == "__main__":
    main()
