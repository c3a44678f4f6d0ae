#!/usr/bin/env python3
"""gracectl's portserver against portpicker's own portserver.py, in one run.

    python3 docs/benchmarks/portserver.py BIN [--requests 500] [--clients 100] [--per-client 12]

Starts `gracectl watch --portserver @…` (range 21000-22999, a fresh root)
and Debian's `portserver` (python3-portpicker) side by side. One client
makes REQUESTS sequential requests, taking turns between the two servers
request by request, and reports the median time per request of each. Then
CLIENTS processes ask each server for PER-CLIENT ports at once, and the
ports handed out twice are counted. Prints a markdown table.
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


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


def contention(addr, clients, per):
    procs = [subprocess.Popen([sys.executable, "-c", CLIENT, addr, str(per)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(clients)]
    t0 = time.perf_counter()
    ports = [p.stdout.readline().split() for p in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.stdin.close()
        p.wait()
    flat = [x for ps in ports for x in ps]
    none = sum(1 for x in flat if x in ("", "0"))
    given = [x for x in flat if x not in ("", "0")]
    return wall, len(given) - len(set(given)), none


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--per-client", type=int, default=12)
    a = ap.parse_args()
    if not shutil.which("portserver"):
        print("portserver (python3-portpicker) is not installed: skipped")
        return
    root = tempfile.mkdtemp(prefix="gracectl-portserver-")
    tag = "%d" % os.getpid()
    gaddr, paddr = "@gracectl-bench-" + tag, "@portserver-bench-" + tag
    env = dict(os.environ, GRACECTL_ROOT=root)
    g = subprocess.Popen([os.path.abspath(a.bin), "watch", "--range", "21000-22999", "--portserver", gaddr],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = subprocess.Popen(["portserver", "--portserver_address=" + paddr, "--portserver_static_pool=23000-24999"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(gaddr)
    wait_for(paddr)
    # A helper process owns the sequential requests' ports; it lives until
    # the end, so nothing is released meanwhile.
    holder = subprocess.Popen(["sleep", "3600"])
    tg, tp = [], []
    for _ in range(a.requests):
        t0 = time.perf_counter()
        ask(gaddr, holder.pid)
        tg.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ask(paddr, holder.pid)
        tp.append(time.perf_counter() - t0)
    holder.kill()
    holder.wait()
    cg = contention(gaddr, a.clients, a.per_client)
    cp = contention(paddr, a.clients, a.per_client)
    for proc in (g, p):
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    shutil.rmtree(root, ignore_errors=True)
    print("| portserver | %d sequential requests, median per request | %d clients x %d ports: wall | handed out twice | no port |" %
          (a.requests, a.clients, a.per_client))
    print("| --- | --- | --- | --- | --- |")
    for name, t, c in (("gracectl watch --portserver", tg, cg), ("portpicker's portserver.py", tp, cp)):
        print("| %s | %.3f ms (min %.3f, max %.3f) | %.2f s | %d | %d |" %
              (name, statistics.median(t) * 1e3, min(t) * 1e3, max(t) * 1e3, c[0], c[1], c[2]))
    print()
    print("ratio gracectl / portserver.py (medians): %.2f" % (statistics.median(tg) / statistics.median(tp)))


if __name__ == "__main__":
    main()
