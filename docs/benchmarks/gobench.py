#!/usr/bin/env python3
"""The Go benchmarks (in process), as one markdown table.

    python3 docs/benchmarks/gobench.py [--count 5] [--bench REGEXP]

Runs `go test -run '^$' -bench REGEXP -benchmem -count COUNT ./...` from
the repository (in a network namespace of its own, as the other scripts)
and prints, per benchmark, the median of each reported unit with its
min-max. Asserts nothing.
"""
import argparse
import collections
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--bench", default=".")
    a = ap.parse_args()
    bench.header("Go benchmarks", None)
    cmd = ["go", "test", "-run", "^$", "-bench", a.bench, "-benchmem", "-count", str(a.count), "./..."]
    out = subprocess.run(cmd, cwd=bench.REPO, capture_output=True, text=True, env=dict(os.environ, GORACE="atexit_sleep_ms=0"))
    results = collections.OrderedDict()
    pkg = ""
    for line in out.stdout.splitlines():
        if line.startswith("pkg: "):
            pkg = line[5:].replace("github.com/gracectl/gracectl/", "").replace("github.com/gracectl/gracectl", ".")
        m = re.match(r"^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$", line)
        if not m:
            continue
        units = results.setdefault((pkg, m.group(1)), collections.OrderedDict())
        for value, unit in re.findall(r"([\d.]+) (\S+)", m.group(3)):
            units.setdefault(unit, []).append(float(value))
    if out.returncode != 0:
        print("`go test` failed:\n\n```\n%s\n```" % (out.stdout[-2000:] + out.stderr[-2000:]))
    print("`%s` (from `python3 docs/benchmarks/gobench.py --count %d%s`): medians of %d runs, min-max." % (
        " ".join(cmd), a.count, "" if a.bench == "." else " --bench '%s'" % a.bench, a.count))
    print()
    print("| package | benchmark | time/op | other |")
    print("| --- | --- | --- | --- |")
    for (pkg, name), units in results.items():
        ns = units.pop("ns/op", [0])
        other = []
        for unit, xs in units.items():
            med = statistics.median(xs)
            if unit == "B/op":
                other.append("%.0f KB" % (med / 1024))
            elif unit == "allocs/op":
                other.append("%.0f allocs" % med)
            else:
                other.append("%s %s (%s-%s)" % (fmt(med), unit, fmt(min(xs)), fmt(max(xs))))
        print("| %s | `%s` | %s | %s |" % (pkg, name, bench.spread([x / 1e9 for x in ns]), ", ".join(other)))
    print()
    print("At the end: " + bench.load())


def fmt(x):
    return "%.3g" % x if x < 100 else "%.0f" % x


if __name__ == "__main__":
    main()
