#!/usr/bin/env python3
"""gracectl's portserver against portpicker's own portserver.py, in one run.

    python3 docs/benchmarks/portserver.py BIN [--requests 500] [--clients 100] [--per-client 12]
        [--range 21000-22999] [--pool 23000-24999]

Starts `gracectl watch --portserver @…` (on --range, a fresh root) and
Debian's `portserver` (python3-portpicker, on --pool) side by side. One
client makes REQUESTS sequential requests, taking turns between the two
servers request by request, and reports the median time per request of
each. Then CLIENTS processes ask each server for PER-CLIENT ports at once
(gracectl first, then portserver.py, then both again in the other order),
and the ports handed out twice are counted. CPU per request is each
server's user + system time (/proc/PID/stat) over a phase, divided by the
requests answered in it; for the burst it is counted until every client
has its ports, not while gracectl releases them after the clients exit
(portserver.py does no such work). gracectl's per-user and per-client
limits are set to the range's size: portserver.py has none, and one user
asks for everything here. A client that got no reply (or could not
connect) counts as "no port"; the lines gracectl's log has about its
portserver (refusals, errors) are printed after the table. Prints a
markdown table.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def ask(addr, pid):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\0" + addr[1:])
    s.sendall(b"%d\n" % pid)
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(64)
        if not chunk:
            break
        buf += chunk
    s.close()
    return buf.strip()


def wait_for(addr, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect("\0" + addr[1:])
            s.close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("no server on " + addr)


CLIENT = r"""
import os, socket, sys
addr, n = sys.argv[1], int(sys.argv[2])
out = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("\0" + addr[1:])
    s.sendall(b"%d\n" % os.getpid())
    out.append(s.recv(64).strip().decode())
    s.close()
print(" ".join(out), flush=True)
sys.stdin.read()
"""


def cpu(pid):
    """User + system CPU seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def contention(addr, clients, per, server):
    c0 = cpu(server)
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, addr, str(per)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    ports = [p.stdout.readline().split() for p in procs]
    wall = time.perf_counter() - t0
    used = cpu(server) - c0
    for p in procs:
        p.stdin.close()
        p.wait()
    flat = [x for ps in ports for x in ps]
    given = [x for x in flat if x not in ("", "0")]
    # A client whose connection was closed without a reply (or refused)
    # dies before printing: every port it did not print is counted.
    none = clients * per - len(given)
    return wall, len(given) - len(set(given)), none, used / max(1, len(given))


def wait_released(root, timeout=60):
    """Waits until gracectl's registry holds only its own pool."""
    path = os.path.join(root, "databases/port_registry/port_registry.json")
    end = time.time() + timeout
    while time.time() < end:
        with open(path) as f:
            allocs = json.load(f)["allocations"].values()
        if not [x for x in allocs if x["service_name"] != "gracectl_portserver"]:
            break
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--per-client", type=int, default=12)
    ap.add_argument("--range", default="21000-22999", help="gracectl's range")
    ap.add_argument("--pool", default="23000-24999", help="portserver.py's ports")
    a = ap.parse_args()
    lo, hi = (int(x) for x in a.range.split("-"))
    size = str(hi - lo + 1)
    if not shutil.which("portserver"):
        print("portserver (python3-portpicker) is not installed: skipped")
        return
    bench.header("The portserver against portserver.py", os.path.abspath(a.bin))
    print("`python3 docs/benchmarks/portserver.py %s --requests %d --clients %d --per-client %d --range %s --pool %s`" % (
        a.bin, a.requests, a.clients, a.per_client, a.range, a.pool))
    print()
    root = tempfile.mkdtemp(prefix="gracectl-portserver-")
    tag = "%d" % os.getpid()
    gaddr, paddr = "@gracectl-bench-" + tag, "@portserver-bench-" + tag
    env = dict(os.environ, GRACECTL_ROOT=root)
    glog = open(os.path.join(root, "watch.log"), "w+")
    g = subprocess.Popen([os.path.abspath(a.bin), "watch", "--range", a.range, "--portserver", gaddr,
                          "--portserver-max-user-ports", size, "--portserver-max-client-ports", size],
                         env=env, stdout=subprocess.DEVNULL, stderr=glog)
    p = subprocess.Popen(["portserver", "--portserver_address=" + paddr, "--portserver_static_pool=" + a.pool],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(gaddr)
    wait_for(paddr)
    # A helper process owns the sequential requests' ports; it lives until
    # the end, so nothing is released meanwhile.
    holder = subprocess.Popen(["sleep", "3600"])
    tg, tp = [], []
    cg0, cp0 = cpu(g.pid), cpu(p.pid)
    for _ in range(a.requests):
        t0 = time.perf_counter()
        ask(gaddr, holder.pid)
        tg.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ask(paddr, holder.pid)
        tp.append(time.perf_counter() - t0)
    time.sleep(0.2)  # gracectl records its last hand-outs within 50 ms
    seq_cpu = ((cpu(g.pid) - cg0) / a.requests, (cpu(p.pid) - cp0) / a.requests)
    holder.kill()
    holder.wait()
    wait_released(root)
    bursts = {"g": [], "p": []}
    for order in (("g", "p"), ("p", "g")):
        for k in order:
            addr, pid = (gaddr, g.pid) if k == "g" else (paddr, p.pid)
            bursts[k].append(contention(addr, a.clients, a.per_client, pid))
            if k == "g":
                wait_released(root)
            else:
                time.sleep(1)
    for proc in (g, p):
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    glog.seek(0)
    # What the portserver refused or could not do, as its log says.
    trouble = [l.split("] ", 1)[-1].strip() for l in glog if "Portserver:" in l and "listening on" not in l]
    shutil.rmtree(root, ignore_errors=True)
    print("| portserver | %d sequential requests, median per request | CPU per request | %d clients x %d ports: wall (2 runs) | CPU per port | handed out twice | no port |" %
          (a.requests, a.clients, a.per_client))
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, t, sc, b in (("gracectl watch --portserver", tg, seq_cpu[0], bursts["g"]),
                           ("portpicker's portserver.py", tp, seq_cpu[1], bursts["p"])):
        print("| %s | %.3f ms (min %.3f, max %.3f) | %.3f ms | %s | %s | %d | %d |" %
              (name, statistics.median(t) * 1e3, min(t) * 1e3, max(t) * 1e3, sc * 1e3,
               ", ".join("%.2f s" % x[0] for x in b), ", ".join("%.3f ms" % (x[3] * 1e3) for x in b),
               sum(x[1] for x in b), sum(x[2] for x in b)))
    print()
    print("ratio gracectl / portserver.py (medians): %.2f; CPU per request: %.2f" %
          (statistics.median(tg) / statistics.median(tp), seq_cpu[0] / seq_cpu[1]))
    print()
    if trouble:
        print("gracectl's log of its portserver (%d lines):" % len(trouble))
        print()
        for line in trouble[:10]:
            print("    " + line)
        print()
    print("At the end: " + bench.load())


if __name__ == "__main__":
    main()
