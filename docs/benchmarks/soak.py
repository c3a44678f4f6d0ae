#!/usr/bin/env python3
"""Soak: `gracectl watch --interval 1s` over 101 allocations for a while.

    python3 docs/benchmarks/soak.py BIN SECONDS

Prints RSS and goroutine count (from the API's /metrics) at the start and
the end, and the number of cycles run. `make soak` runs it for 10 minutes.
"""
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def scrape(addr):
    text = urllib.request.urlopen("http://%s/metrics" % addr, timeout=5).read().decode()
    get = lambda name: float(re.search(r"^%s ([\d.e+]+)$" % name, text, re.M).group(1))
    return get("go_goroutines"), get("process_resident_memory_bytes") / 2**20


def main():
    binary, seconds = os.path.abspath(sys.argv[1]), float(sys.argv[2])
    bench.header("Soak: the watchdog for %.0f s" % seconds, binary)
    e = bench.Env(binary)
    first, api = 20000, "127.0.0.1:20150"
    rg = "%d-%d" % (first, first + 100)
    for i in range(101):
        e.run("allocate", "--service", "s%d" % i, "--range", rg, "--preferred", str(first + i), "--health-path", "/health")
    helper = bench.start_helpers(first, 101, 0)
    for i in range(101):
        e.run("register", str(first + i), "--pid", str(helper.pid), "--service", "s%d" % i)
    w = subprocess.Popen([binary, "watch", "--interval", "1s", "--range", rg, "--api", api], env=e.env,
                         stderr=subprocess.DEVNULL)
    while e.watchdog().get("checks_performed", 0) < 5:
        time.sleep(0.1)
    g0, r0 = scrape(api)
    c0 = e.watchdog()["checks_performed"]
    time.sleep(seconds)
    g1, r1 = scrape(api)
    c1 = e.watchdog()["checks_performed"]
    print("`python3 docs/benchmarks/soak.py %s %.0f`: `watch --interval 1s --api` over 101 allocations, each "
          "with a health endpoint (one Python process serves them all); /metrics read after the fifth cycle and "
          "at the end." % (sys.argv[1], seconds))
    print()
    print("| cycles | goroutines, start → end | RSS, start → end |")
    print("| --- | --- | --- |")
    print("| %d in %.0f s | %d → %d | %.1f → %.1f MB |" % (c1 - c0, seconds, g0, g1, r0, r1))
    print()
    print("At the end: " + bench.load())
    w.send_signal(signal.SIGTERM)
    w.wait()
    helper.kill()
    e.close()


if __name__ == "__main__":
    main()
