# gracectl. `make test` is what CI runs (through .ci/run).
GO      ?= go
# Built where `go install` puts binaries, so nothing lands at the top of the
# repository.
BIN     ?= $(shell $(GO) env GOPATH)/bin/gracectl
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
# -s -w: no symbol table and no DWARF (6.5 MB of 21): panics, runtime/pprof
# profiles and `go version -m` still work (they use .gopclntab and the build
# info); a debugger or perf wants a build without them (`go build`).
LDFLAGS := -s -w -X github.com/gracectl/gracectl/cmd.version=$(VERSION)
# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can
# report its own deadline as a failure ("context deadline exceeded", no
# failing input) when a loaded machine slows a worker at the end
# (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 5000x
# Every process built with -race sleeps 1 s at exit unless told not to.
export GORACE = atexit_sleep_ms=0

.PHONY: build test test-browser test-fleet screenshot lint unit fuzz cross bench chaos soak clean

# CGO_ENABLED=0: a static binary, which needs no libc of the host.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) .

test: lint unit fuzz cross

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed on: $$out"; exit 1; fi
	$(GO) mod tidy -diff
	@if git grep -nE '^(<<<<<<<|>>>>>>>)( |$$)' 2>/dev/null; then echo "merge conflict markers left in the files above"; exit 1; fi

# go test's own deadline per package: 20 minutes, times the one knob that
# scales every test deadline (docs/testing.md).
TEST_TIMEOUT ?= $(shell awk 'BEGIN { s = ENVIRON["GRACECTL_TEST_TIMEOUT_SCALE"] + 0; if (s <= 0) s = 1; print int(20 * s + 0.5) "m" }')

unit:
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

# 5,000 inputs of coverage-guided fuzzing per target (1-13 s each), on top
# of the seed corpora that `unit` already runs.
fuzz:
	@set -e; for spec in $$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/{f[n++]=$$1} /^ok/{for(i=0;i<n;i++)print $$2"@"f[i]; n=0}'); do \
	  pkg=$${spec%@*}; fn=$${spec#*@}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  out=$$($(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) || { echo "$$out"; exit 1; }; \
	done

# The dashboard in headless Chromium (make test runs it too, when Chromium is
# there; this installs Debian's chromium first, as root).
test-browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	$(GO) test -count=1 -run 'TestDashboard' -v ./cmd

# The fleet view against a real etcd (make test runs it too, when etcd is
# there; this installs Debian's etcd-server first, as root).
test-fleet:
	@command -v etcd >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq etcd-server >/dev/null; }
	$(GO) test -count=1 -run 'TestFleet' -v ./cmd

# docs/dashboard.png and docs/dashboard-phone.png, from the browser test.
screenshot:
	GRACECTL_DASHBOARD_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -run 'TestDashboardScreenshots' ./cmd

cross:
	GOOS=darwin $(GO) build ./...
	GOOS=darwin $(GO) vet ./...

# Every script prints markdown tables with the load beside them
# (docs/benchmarks/README.md is made of their output); as root each runs in
# a network namespace of its own.
bench: build
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null 2>&1; } || echo "wrk not installed: API throughput is skipped"
	python3 docs/benchmarks/startup.py $(BIN)
	python3 docs/benchmarks/burst.py $(BIN)
	python3 docs/benchmarks/scale.py $(BIN)
	python3 docs/benchmarks/bench.py $(BIN)
	python3 docs/benchmarks/compare.py $(BIN)
	python3 docs/benchmarks/portserver.py $(BIN)
	python3 docs/benchmarks/fleet.py $(BIN)
	python3 docs/benchmarks/gobench.py

# The fault suite at full size: 1000 operations under random SIGKILLs, 80
# rounds of 10 writers with half SIGKILLed (the audit log must match the
# registry change for change), 1000 operations around owners in a PID
# namespace, daemonizing owners and slow binders (none may lose its port),
# plus
# disk-full, read-only root, permission denied and hostile input (as root,
# with tmpfs mounts), and wall-clock jumps during watch (it moves the host's
# clock and puts it back, so it is not part of `make test`).
chaos:
	GRACECTL_CHAOS_OPS=1000 GRACECTL_KILL_ROUNDS=80 GRACECTL_CHAOS_CLOCK=1 $(GO) test -race -count=1 -run 'Chaos|AuditSurvivesKill|NoFalseRelease|DiskFull|ReadOnly|Permission|Hostile|ClockJumps' -v ./cmd
	$(GO) test -run '^$$' -fuzz '^FuzzUpdateLeavesBadFileUntouched$$' -fuzztime 60s ./registry

# 10 minutes of `watch --interval 1s` over 101 allocations; prints RSS and
# goroutines at the start and the end. Not part of CI.
soak: build
	python3 docs/benchmarks/soak.py $(BIN) 600

clean:
	rm -f $(BIN)
