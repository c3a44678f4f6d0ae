#!/usr/bin/env python3
"""gracectl against the tools users would pick instead, in one run.

    python3 docs/benchmarks/compare.py BIN [--runs N] [--callers N] [--rounds N]

Peers: Debian's python3-portpicker (run with /usr/bin/python3), its
portserver, and npm's get-port and portfinder (installed into a temp
folder). Missing peers are installed when possible (apt-get as root, npm),
otherwise reported as skipped. Prints one markdown table, a row per tool:
the single-call median with min-max and the ratio to gracectl (the median of
pairwise ratios, the tools taking turns run by run), and the contention
rounds (N callers started at once, each holding its port for 2 s: time until
every caller had a port, ports handed to more than one caller, and callers
that failed).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

DEB_PY = "/usr/bin/python3"


def ensure_portpicker():
    ok = lambda: subprocess.run([DEB_PY, "-c", "import portpicker"], capture_output=True).returncode == 0
    if not ok() and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && apt-get install -y -qq python3-portpicker", shell=True,
                       capture_output=True)
    return ok() and shutil.which("portserver")


def ensure_npm(dirpath):
    if not shutil.which("npm"):
        return False
    subprocess.run(["npm", "init", "-y"], cwd=dirpath, capture_output=True)
    r = subprocess.run(["npm", "install", "--silent", "get-port", "portfinder"], cwd=dirpath, capture_output=True)
    return r.returncode == 0


def tools(binary, npmdir, have_pp, have_npm, hold):
    """name -> (argv, env, cwd) of one caller that prints its port, then holds it."""
    sleep_py = "; import time; time.sleep(%s)" % hold
    sleep_js = "; setTimeout(() => {}, %d)" % int(hold * 1000)
    out = {}
    out["gracectl allocate"] = (None, None, None)  # filled per root
    if have_pp:
        out["portpicker"] = ([DEB_PY, "-c", "import portpicker; print(portpicker.pick_unused_port(), flush=True)" + sleep_py], None, None)
        out["portpicker+portserver"] = ([DEB_PY, "-c", "import portpicker; print(portpicker.pick_unused_port(), flush=True)" + sleep_py],
                                        dict(os.environ, PORTSERVER_ADDRESS="@gracectl-bench-portserver"), None)
    if have_npm:
        out["get-port"] = (["node", "-e", "import('get-port').then(async m => { console.log(await m.default()); })" + sleep_js], None, npmdir)
        out["portfinder"] = (["node", "-e", "require('portfinder').getPortPromise().then(p => console.log(p))" + sleep_js], None, npmdir)
    return out


def caller(name, spec, e, i):
    if name == "gracectl allocate":
        return [e.bin, "allocate", "--service", "c%d" % i, "--range", "20200-20399"], e.env, None
    return spec


def single(specs, binary, runs):
    """Whole-process time of one call of each tool, run by run in turn, so that
    each peer's ratio to gracectl is taken pair by pair (the same moment of
    a noisy machine) and reported as the median of those ratios."""
    e = bench.Env(binary)
    for i in range(100):  # gracectl with 100 ports already held
        e.run("allocate", "--service", "held%d" % i, "--range", "20200-20399")
    xs = {n: [] for n in specs}
    for i in range(runs):
        for name, spec in specs.items():
            argv, env, cwd = caller(name, spec, e, i)
            t0 = time.perf_counter()
            r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
            xs[name].append(time.perf_counter() - t0)
            if r.returncode != 0:
                raise RuntimeError("%s failed: %s" % (name, r.stderr[-300:]))
            if name == "gracectl allocate":
                e.run("release", r.stdout.strip(), "--force")
    e.close()
    return xs


def contention(name, spec, binary, callers):
    e = bench.Env(binary)
    procs = []
    t0 = time.perf_counter()
    for i in range(callers):
        argv, env, cwd = caller(name, spec, e, i)
        procs.append(subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    ports, got = [], []
    for p in procs:
        line = p.stdout.readline().strip()
        got.append(time.perf_counter() - t0)
        ports.append(line)
    for p in procs:
        p.wait()
    e.close()
    valid = [p for p in ports if p.isdigit()]
    return max(got), len(valid) - len(set(valid)), callers - len(valid)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--callers", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    # The peers are installed first, with the network; the run itself is in
    # a network namespace of its own (bench.header), which has none.
    npmdir = os.environ.get("GRACECTL_BENCH_PEERS")
    if npmdir is None:
        npmdir = tempfile.mkdtemp(prefix="gracectl-peers-")
        ensure_portpicker()
        ensure_npm(npmdir)
        os.environ["GRACECTL_BENCH_PEERS"] = npmdir
    bench.header("gracectl against its peers", binary)
    have_pp = ensure_portpicker()
    have_npm = os.path.isdir(os.path.join(npmdir, "node_modules", "get-port"))
    server = None
    if have_pp:
        server = subprocess.Popen(["portserver", "--portserver_address=@gracectl-bench-portserver"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    ts = tools(binary, npmdir, have_pp, have_npm, 2)
    print("`python3 docs/benchmarks/compare.py %s --runs %d --callers %d --rounds %d`" % (a.bin, a.runs, a.callers, a.rounds))
    print()
    if not have_pp:
        print("skipped: python3-portpicker (not installable here)")
    if not have_npm:
        print("skipped: get-port, portfinder (npm not available)")
    specs = {}
    for n, spec in ts.items():
        if n != "gracectl allocate":
            argv = list(spec[0])
            argv[-1] = argv[-1].split("; import time")[0].split("; setTimeout")[0]
            spec = (argv, spec[1], spec[2])
        specs[n] = spec
    singles = single(specs, binary, a.runs)
    rounds = {n: [contention(n, spec, binary, a.callers) for _ in range(a.rounds)] for n, spec in ts.items()}
    g = singles["gracectl allocate"]
    print()
    print("Single call: whole process, %d runs, the tools taking turns run by run; the ratio is the median of "
          "the pairwise ratios. gracectl holds 100 ports. Contention: %d callers started at once, each holding "
          "its port 2 s, %d rounds." % (a.runs, a.callers, a.rounds))
    print()
    print("| tool | single call, median (min-max) | ratio to gracectl | contention: time until every caller had "
          "a port | ports handed out twice | callers that failed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n, xs in singles.items():
        ratio = statistics.median(x / y for x, y in zip(xs, g))
        rs = rounds[n]
        print("| %s | %.1f ms (%.1f-%.1f) | %.1fx | %s | %s | %s |" % (
            n, statistics.median(xs) * 1e3, min(xs) * 1e3, max(xs) * 1e3, ratio,
            ", ".join("%.2f s" % r[0] for r in rs), ", ".join(str(r[1]) for r in rs), ", ".join(str(r[2]) for r in rs)))
    print()
    print("At the end: " + bench.load())
    if server:
        server.terminate()
        server.wait()
    shutil.rmtree(npmdir, ignore_errors=True)


if __name__ == "__main__":
    main()
