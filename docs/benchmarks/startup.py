#!/usr/bin/env python3
"""Start-up: gracectl against the least a Go program and a Python peer take.

    python3 docs/benchmarks/startup.py BIN [--runs 100]

Five programs take turns, round by round (the order rotates each round), so
that each ratio compares runs made at the same moment of a busy machine:

- hello: docs/benchmarks/hello, a static Go program that prints a line;
- gracectl --version;
- the floor: docs/benchmarks/minimal, a static Go program that does only
  what a durable allocation needs (flock, read the registry, bind-test a
  port, write a temp file, fsync, rename, fsync the folder, append a log
  line, fsync it), with 100 ports held;
- gracectl allocate, 100 ports held (the port is released after each run,
  untimed);
- portpicker: /usr/bin/python3 -c 'import portpicker;
  print(portpicker.pick_unused_port())' (Debian's python3-portpicker).

Wall time is from spawn to wait; CPU is the child's user + system time.
Each ratio is the median of the round-by-round ratios. Then the `init` of
gracectl's packages, from GODEBUG=inittrace=1 (medians over 30 runs of
`gracectl --version`). Prints markdown. Asserts nothing.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PORTPICKER = ["/usr/bin/python3", "-c", "import portpicker; print(portpicker.pick_unused_port())"]


def setup(binary):
    """A gracectl root and a floor folder, each with 100 ports held."""
    root = tempfile.mkdtemp(prefix="gracectl-startup-")
    env = dict(os.environ, GRACECTL_ROOT=root, GRACECTL_RANGE="20000-20199", GRACECTL_WATCHDOG="off")
    for i in range(100):
        subprocess.run([binary, "allocate", "--service", "held%d" % i], env=env, capture_output=True, check=True)
    floor_dir = tempfile.mkdtemp(prefix="gracectl-floor-")
    return root, env, floor_dir


def rounds(binary, runs):
    hello = bench.build_go("./docs/benchmarks/hello", "hello")
    floor = bench.build_minimal()
    root, env, floor_dir = setup(binary)
    for _ in range(100):
        subprocess.run([floor, floor_dir, "20200", "20399"], capture_output=True, check=True)
    reg_path = os.path.join(floor_dir, "registry.json")

    def floor_run():
        r = bench.run_timed([floor, floor_dir, "20200", "20399"])
        with open(reg_path) as f:
            reg = json.load(f)
        del reg[r[2].strip()]
        with open(reg_path, "w") as f:
            json.dump(reg, f)
        return r

    def allocate_run():
        r = bench.run_timed([binary, "allocate", "--service", "bench"], env)
        subprocess.run([binary, "release", r[2].strip(), "--force"], env=env, capture_output=True, check=True)
        return r

    progs = [
        ("hello", lambda: bench.run_timed([hello])),
        ("gracectl --version", lambda: bench.run_timed([binary, "--version"])),
        ("floor", floor_run),
        ("gracectl allocate", allocate_run),
        ("portpicker", lambda: bench.run_timed(PORTPICKER)),
    ]
    wall = {n: [] for n, _ in progs}
    cpu = {n: [] for n, _ in progs}
    for i in range(runs + 3):
        k = i % len(progs)
        for name, fn in progs[k:] + progs[:k]:
            w, c, out, code = fn()
            if code != 0:
                raise RuntimeError("%s exited %d" % (name, code))
            if i >= 3:  # three rounds of warm-up
                wall[name].append(w)
                cpu[name].append(c)
    sizes = {"hello": os.path.getsize(hello), "gracectl": os.path.getsize(binary)}
    for d in (root, floor_dir, os.path.dirname(hello), os.path.dirname(floor)):
        shutil.rmtree(d, ignore_errors=True)
    return wall, cpu, sizes


def ratio(xs, ys):
    return statistics.median(x / y for x, y in zip(xs, ys))


# Package groups for the init table, by import path prefix (first match).
GROUPS = [
    ("the Prometheus client (client_golang, client_model, common, procfs, protobuf, expvar, runtime/metrics)",
     ("github.com/prometheus/client_golang", "github.com/prometheus/client_model", "github.com/prometheus/common/model",
      "github.com/prometheus/common/expfmt", "github.com/prometheus/procfs", "google.golang.org/protobuf", "expvar",
      "runtime/metrics", "github.com/beorn7", "github.com/cespare", "github.com/munnerz")),
    ("exporter-toolkit's web config and what it brings (yaml, common/config, conntrack, x/net/trace, html/template, oauth2, jwt, x/crypto)",
     ("github.com/prometheus/exporter-toolkit", "github.com/prometheus/common", "go.yaml.in", "github.com/mwitkow",
      "golang.org/x/net/trace", "html/template", "golang.org/x/oauth2", "github.com/golang-jwt", "github.com/google/uuid",
      "golang.org/x/crypto", "github.com/jpillora", "github.com/mdlayher", "golang.org/x/text", "golang.org/x/sync")),
    ("cobra and pflag", ("github.com/spf13",)),
    ("gracectl's own packages", ("github.com/gracectl",)),
    ("other modules", ("github.com/", "golang.org/", "go.", "google.golang.org/")),
    ("the Go standard library", ("",)),
]


def group_of(pkg):
    for name, prefixes in GROUPS:
        if any(pkg.startswith(p) for p in prefixes):
            return name
    return GROUPS[-1][0]


def inittrace(binary, runs=30):
    """Per package: the median of its init time over runs; and the median
    of the runs' totals."""
    per, totals = {}, []
    for _ in range(runs):
        err = subprocess.run([binary, "--version"], env=dict(os.environ, GODEBUG="inittrace=1"),
                             capture_output=True, text=True).stderr
        total = 0.0
        for m in re.finditer(r"^init (\S+) @\S+ ms, ([\d.]+) ms clock, (\d+) bytes", err, re.M):
            t = float(m.group(2))
            per.setdefault(m.group(1), []).append((t, int(m.group(3))))
            total += t
        totals.append(total)
    rows = sorted(((statistics.median(t for t, _ in v), v[0][1], k) for k, v in per.items()), reverse=True)
    return len(per), totals, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--runs", type=int, default=100)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    bench.header("Start-up: gracectl against hello-world, the floor and portpicker", binary)
    wall, cpu, sizes = rounds(binary, a.runs)
    base = {"gracectl --version": "hello", "gracectl allocate": "floor"}
    print("`python3 docs/benchmarks/startup.py %s --runs %d`: %d rounds, the five taking turns." % (a.bin, a.runs, a.runs))
    print()
    print("| program | wall, median (min-max) | CPU, median | wall ratio | CPU ratio |")
    print("| --- | --- | --- | --- | --- |")
    for name in wall:
        wr = cr = ""
        if name in base:
            b = base[name]
            wr = "%.2f× %s" % (ratio(wall[name], wall[b]), b)
            cr = "%.2f× %s" % (ratio(cpu[name], cpu[b]), b)
        elif name == "portpicker":
            wr = "%.2f× gracectl allocate" % ratio(wall[name], wall["gracectl allocate"])
            cr = "%.2f× gracectl allocate" % ratio(cpu[name], cpu["gracectl allocate"])
        print("| %s | %s | %.2f ms | %s | %s |" % (name, bench.spread(wall[name]), statistics.median(cpu[name]) * 1e3, wr, cr))
    print()
    v = ratio(wall["gracectl --version"], wall["hello"])
    al = ratio(wall["gracectl allocate"], wall["floor"])
    pp = ratio(wall["portpicker"], wall["gracectl allocate"])
    print("Targets (wall): `--version` ≤ 2.5× hello: %.2f× (%s); allocate ≤ 2.5× the floor: %.2f× (%s); "
          "portpicker ≥ 2.5× allocate: %.2f× (%s)." % (
              v, "met" if v <= 2.5 else "not met", al, "met" if al <= 2.5 else "not met",
              pp, "met" if pp >= 2.5 else "not met"))
    print()
    print("Binary sizes: gracectl %.1f MB, hello %.1f MB." % (sizes["gracectl"] / 1e6, sizes["hello"] / 1e6))
    print()
    n, totals, rows = inittrace(binary)
    print("`GODEBUG=inittrace=1 %s --version`, 30 runs: %d packages initialised, %s of `init` in all "
          "(median of the runs' sums, min-max). The ten largest, by median:" % (a.bin, n, bench.spread([t / 1e3 for t in totals])))
    print()
    print("| package | init, median | allocated |")
    print("| --- | --- | --- |")
    for t, b, k in rows[:10]:
        print("| %s | %.3f ms | %d B |" % (k, t, b))
    print()
    print("The same, by what brings the packages in (sums of the medians):")
    print()
    print("| packages | count | init | allocated |")
    print("| --- | --- | --- | --- |")
    agg = {}
    for t, b, k in rows:
        g = agg.setdefault(group_of(k), [0, 0.0, 0])
        g[0], g[1], g[2] = g[0] + 1, g[1] + t, g[2] + b
    for name, (count, t, b) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
        print("| %s | %d | %.2f ms | %d KB |" % (name, count, t, b // 1024))
    print()
    print("At the end: " + bench.load())


if __name__ == "__main__":
    main()
