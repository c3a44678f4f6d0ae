package api

import (
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the series of /metrics. What the watchdog saw of the ports
// (the range's gauges and the per-port series) is what its last
// observation saw — a cycle, or the check of the ports of an owner that
// exited between cycles — turned into metric families once per
// observation, together with the Go runtime's and the process's own
// series (process_*, go_*: procfs reads /proc/self/stat, /proc/stat,
// /proc/self/net/netstat and more for them, which cost a scrape half a
// millisecond). A scrape reads neither the registry nor /proc: it encodes
// those families with the counters this process keeps in memory.
type metrics struct {
	reg *prometheus.Registry // the in-memory series, gathered per scrape
	// runtime gathers the Go and process collectors per observation: those
	// of the client's default registry, which its package registers at
	// start-up (in every gracectl command, as Go runs every linked
	// package's init), so none is made a second time.
	runtime  prometheus.Gatherer
	cycles   prometheus.Counter
	issues   prometheus.Counter
	cleanups prometheus.Counter
	duration prometheus.Histogram
	// up is 1 once a cycle has read and written the registry, 0 after one
	// that could not.
	up prometheus.Gauge
	// authFailures counts requests turned away for want of valid
	// credentials (401).
	authFailures prometheus.Counter
	refused      *prometheus.CounterVec // event streams refused, by reason
	dropped      prometheus.Counter     // event streams whose client stopped reading

	rg    registry.Range
	descs portDescs

	mu        sync.Mutex
	ports     map[int]portSeries // as last observed
	unmanaged int
	observed  []*dto.MetricFamily // built from ports; read-only once built; none before the first cycle
}

// portSeries is what was last observed of one allocation.
type portSeries struct {
	service, status  string
	counts           bool // the service reports its counts
	requests, errors int64
}

type portDescs struct {
	inRange, allocated, free, unmanaged, health, requests, errors *prometheus.Desc
}

func newPortDescs() portDescs {
	return portDescs{
		inRange:   prometheus.NewDesc("gracectl_ports_in_range", "Ports in the managed range.", nil, nil),
		allocated: prometheus.NewDesc("gracectl_ports_allocated", "Ports of the managed range that are allocated.", nil, nil),
		free:      prometheus.NewDesc("gracectl_ports_free", "Ports of the managed range that are neither allocated nor listened on.", nil, nil),
		unmanaged: prometheus.NewDesc("gracectl_ports_unmanaged", "Ports of the managed range listened on without an allocation.", nil, nil),
		health:    prometheus.NewDesc("gracectl_port_health_status", "The allocation's health_status: one series per status, 1 for the current one.", []string{"port", "service", "status"}, nil),
		requests:  prometheus.NewDesc("gracectl_port_requests_total", "Requests the service reports on its health endpoint (absent when it reports none).", []string{"port", "service"}, nil),
		errors:    prometheus.NewDesc("gracectl_port_errors_total", "Errors the service reports on its health endpoint (absent when it reports none).", []string{"port", "service"}, nil),
	}
}

// newMetrics makes the series of an API over rg; streams tells how many
// event streams are open.
func newMetrics(rg registry.Range, build Build, streams func() float64) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(), runtime: runtimeFamilies,
		rg: rg, descs: newPortDescs(), ports: map[int]portSeries{},
		cycles: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gracectl_watchdog_cycles_total", Help: "Watchdog cycles run by this process."}),
		issues: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gracectl_watchdog_issues_total", Help: "Issues found: each counted once, when it starts."}),
		cleanups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gracectl_watchdog_cleanups_total", Help: "Ports of dead services and stale reservations released by the watchdog."}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gracectl_api_auth_failures_total", Help: "API requests refused for want of valid credentials (401)."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gracectl_api_event_streams_refused_total", Help: "Event streams refused: reason=client (the client holds its share), reason=total (all slots taken)."}, []string{"reason"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gracectl_api_event_streams_dropped_total", Help: "Event streams ended because their client read nothing for a heartbeat."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "gracectl_watchdog_cycle_duration_seconds", Help: "Duration of watchdog cycles.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gracectl_registry_up", Help: "1 if the last watchdog cycle read and wrote the registry (0 until the first)."}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "gracectl_build_info", Help: "gracectl's version, Go version and VCS revision; always 1.",
		ConstLabels: prometheus.Labels{"version": build.Version, "goversion": runtime.Version(), "revision": build.Revision}})
	info.Set(1)
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "gracectl_api_event_streams", Help: "Event streams open now."}, streams)
	m.reg.MustRegister(m.cycles, m.issues, m.cleanups, m.duration, m.authFailures, m.refused, m.dropped, open, m.up, info)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(prometheus.GathererFunc(m.gather),
		promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, EnableOpenMetrics: true})
}

// gather merges the observed families with the live ones, by name (the
// two sets never share one).
func (m *metrics) gather() ([]*dto.MetricFamily, error) {
	live, err := m.reg.Gather()
	m.mu.Lock()
	observed := m.observed
	m.mu.Unlock()
	out := make([]*dto.MetricFamily, 0, len(live)+len(observed))
	for len(live) > 0 || len(observed) > 0 {
		if len(observed) == 0 || (len(live) > 0 && live[0].GetName() < observed[0].GetName()) {
			out, live = append(out, live[0]), live[1:]
		} else {
			out, observed = append(out, observed[0]), observed[1:]
		}
	}
	return out, err
}

// observeCycle takes in a whole cycle: every allocation it saw, the
// unmanaged listeners, and the cycle counters.
func (m *metrics) observeCycle(rep *watchdog.Report) {
	m.cycles.Inc()
	m.issues.Add(float64(rep.NewIssues))
	m.cleanups.Add(float64(rep.Cleaned()))
	m.duration.Observe(rep.DurationMS / 1000)
	m.up.Set(1)
	ports := make(map[int]portSeries, len(rep.Results))
	for _, r := range rep.Results {
		if r.Action != "released" {
			ports[r.Port] = seriesOf(r)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ports, m.unmanaged = ports, len(rep.Unmanaged)
	m.rebuild()
}

// observePorts takes in a check of some ports between cycles.
func (m *metrics) observePorts(rep *watchdog.Report) {
	m.cleanups.Add(float64(rep.Cleaned()))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.observed == nil {
		return // before the first cycle: it will see these ports
	}
	for _, r := range rep.Results {
		if r.Action == "released" {
			delete(m.ports, r.Port)
		} else {
			m.ports[r.Port] = seriesOf(r)
		}
	}
	m.rebuild()
}

func seriesOf(r *watchdog.Result) portSeries {
	return portSeries{service: r.Service, status: r.Status, counts: r.CountsKnown(), requests: r.RequestCount, errors: r.ErrorCount}
}

// runtimeFamilies gathers the default registry's go_* and process_*
// families only: libraries may register their own series there too
// (go-conntrack, which exporter-toolkit links, registers its dialer and
// listener counters in its init), and /metrics serves gracectl's.
var runtimeFamilies = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
	fams, err := prometheus.DefaultGatherer.Gather()
	keep := fams[:0]
	for _, f := range fams {
		if name := f.GetName(); strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			keep = append(keep, f)
		}
	}
	return keep, err
})

// rebuild turns m.ports into metric families, through a registry of its
// own so that they are checked and sorted as a gathered registry's are,
// and gathers the runtime's; m.mu is held.
func (m *metrics) rebuild() {
	ports := prometheus.NewRegistry()
	ports.MustRegister(observedCollector{m})
	if fams, err := (prometheus.Gatherers{ports, m.runtime}).Gather(); err == nil {
		m.observed = fams
	}
}

// observedCollector emits m.ports as constant metrics.
type observedCollector struct{ m *metrics }

func (c observedCollector) Describe(ch chan<- *prometheus.Desc) {
	d := c.m.descs
	for _, x := range []*prometheus.Desc{d.inRange, d.allocated, d.free, d.unmanaged, d.health, d.requests, d.errors} {
		ch <- x
	}
}

func (c observedCollector) Collect(ch chan<- prometheus.Metric) {
	m, d := c.m, c.m.descs
	allocated := 0
	for port, p := range m.ports {
		if m.rg.Contains(port) {
			allocated++
		}
		label := strconv.Itoa(port)
		// The full state set, as node_exporter's systemd unit states.
		for _, status := range registry.Statuses {
			v := 0.0
			if p.status == status {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(d.health, prometheus.GaugeValue, v, label, p.service, status)
		}
		if p.counts {
			// The service's own running totals: a restart of the service
			// is a counter reset, which rate() handles.
			ch <- prometheus.MustNewConstMetric(d.requests, prometheus.CounterValue, float64(p.requests), label, p.service)
			ch <- prometheus.MustNewConstMetric(d.errors, prometheus.CounterValue, float64(p.errors), label, p.service)
		}
	}
	ch <- prometheus.MustNewConstMetric(d.inRange, prometheus.GaugeValue, float64(m.rg.Size()))
	ch <- prometheus.MustNewConstMetric(d.allocated, prometheus.GaugeValue, float64(allocated))
	ch <- prometheus.MustNewConstMetric(d.free, prometheus.GaugeValue, float64(m.rg.Size()-allocated-m.unmanaged))
	ch <- prometheus.MustNewConstMetric(d.unmanaged, prometheus.GaugeValue, float64(m.unmanaged))
}
