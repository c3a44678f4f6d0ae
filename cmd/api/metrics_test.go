package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// observedServer is an API server over a store of n allocations owned by
// this process, whose services have reported counts, after one (dry-run)
// cycle has been observed.
func observedServer(tb testing.TB, n int) *Server {
	tb.Helper()
	ports := testenv.Ports(tb, n)
	store := registry.Open(tb.TempDir(), 10*time.Second)
	self := probe.Self()
	if err := store.Update(context.Background(), func(r *registry.Registry, tx *registry.Tx) error {
		for i := range n {
			a := &registry.Allocation{ID: "a" + ports.P(i), Port: ports.Port(i), ServiceName: "svc" + ports.P(i), StartedBy: "serve.py",
				Purpose: "bench", AllocatedAt: tx.Now(), HealthStatus: registry.StatusActive, CountsAt: tx.Now(), RequestCount: 1247, ErrorCount: 3}
			a.SetOwner(self)
			r.Put(a)
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	rg := registry.Range{Start: ports.Start, End: ports.End}
	s := New(store, &watchdog.Watcher{Store: store}, rg, nil, Build{Version: "bench"})
	rep, err := watchdog.Cycle(context.Background(), store, watchdog.Options{Range: rg, DryRun: true})
	if err != nil {
		tb.Fatal(err)
	}
	s.ObserveCycle(rep)
	return s
}

func scrape(tb testing.TB, h http.Handler, gzip bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", "/metrics", nil)
	if gzip {
		req.Header.Set("Accept-Encoding", "gzip") // as Prometheus asks
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		tb.Fatalf("scrape: %d %s", w.Code, w.Body)
	}
	return w
}

// A scrape answers from the last observation: the registry may vanish
// and the port series stay as the cycle saw them, until the next
// observation changes them.
func TestMetricsFromLastObservation(t *testing.T) {
	s := observedServer(t, 3)
	h := s.Handler()
	if err := os.RemoveAll(s.Store.Root); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, h, false).Body.String()
	for _, want := range []string{"gracectl_ports_allocated 3", "gracectl_registry_up 1", `gracectl_port_requests_total{port="`, "gracectl_build_info{"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	// An owner's exit checked between cycles: its released port goes.
	rep := &watchdog.Report{Results: []*watchdog.Result{{Port: s.Range.Start, Action: "released"}}, Released: []int{s.Range.Start}}
	s.ObserveExitCheck(rep)
	s.ObserveCycleError(os.ErrNotExist)
	body = scrape(t, h, false).Body.String()
	for _, want := range []string{"gracectl_ports_allocated 2", "gracectl_registry_up 0", "gracectl_watchdog_cleanups_total 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
}

// The Go runtime's and the process's own series come from the client's
// default registry, and only those: a library's series registered there
// (go-conntrack's, in its init) are not gracectl's.
func TestMetricsRuntimeSeriesOnly(t *testing.T) {
	foreign := prometheus.NewCounter(prometheus.CounterOpts{Name: "foreign_library_total", Help: "t"})
	prometheus.MustRegister(foreign)
	t.Cleanup(func() { prometheus.Unregister(foreign) })
	body := scrape(t, observedServer(t, 1).Handler(), false).Body.String()
	for _, want := range []string{"go_goroutines ", "go_gc_duration_seconds", "process_cpu_seconds_total "} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in\n%s", want, body)
		}
	}
	if strings.Contains(body, "foreign_library_total") {
		t.Errorf("a library's series from the default registry is served:\n%s", body)
	}
}

// Before the first cycle there is nothing observed to show.
func TestMetricsBeforeFirstCycle(t *testing.T) {
	store := registry.Open(t.TempDir(), time.Second)
	s := New(store, &watchdog.Watcher{Store: store}, registry.Range{Start: 20000, End: 20009}, nil, Build{})
	body := scrape(t, s.Handler(), false).Body.String()
	if strings.Contains(body, "gracectl_ports_free") || !strings.Contains(body, "gracectl_registry_up 0") {
		t.Errorf("before the first cycle:\n%s", body)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchScrape reports the process's CPU time per scrape of /metrics with
// 100 allocations observed (docs/benchmarks), plain and gzipped.
func benchScrape(b *testing.B, gzip bool) {
	h := observedServer(b, 100).Handler()
	var size int
	cpu0 := cpuTime()
	for b.Loop() {
		size = scrape(b, h, gzip).Body.Len()
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/scrape")
	b.ReportMetric(float64(size), "bytes/scrape")
}

func BenchmarkMetricsScrape100(b *testing.B)     { benchScrape(b, false) }
func BenchmarkMetricsScrape100Gzip(b *testing.B) { benchScrape(b, true) }
