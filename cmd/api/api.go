// Package api is the watchdog's HTTP API for monitoring, served by
// `gracectl watch --api ADDR`. Every answer is JSON of the same Go types the
// CLI prints with --json (docs/json.md); /metrics is Prometheus text.
//
//	GET  /api/ports/status             watchdog.Status (= gracectl status --json)
//	GET  /api/ports/allocations        []registry.Allocation
//	GET  /api/ports/allocations/{port} registry.Allocation, 404 if not allocated
//	GET  /api/ports/services/{name}    []registry.Allocation of the service, 404 if none
//	POST /api/ports/health-check       watchdog.Report (= gracectl check --json)
//	GET  /api/ports/watchdog/status    watchdog.State
//	GET  /api/ports/events             Server-Sent Events (events.go, stream.go)
//	GET  /api/ports/map                watchdog.PortMap: the range port by port
//	GET  /api/ports/history            watchdog.HistoryDoc: the pool over the last hour
//	GET  /api/fleet/status             fleet.View: every host of the fleet (etcd); 404 without --fleet, 503 when etcd does not answer in time
//	GET  /api/fleet/services/{name}    where the service runs in the fleet (fleet.View.Services), 404 if nowhere
//	GET  /api/routes                   routes.Table (= gracectl routes --json), 404 without watch --routes
//	GET  /                             the dashboard page (dashboard.go)
//	GET  /metrics                      Prometheus text format
//
// Errors are {"error": "..."} with the right status code; a wrong method gets
// 405 with an Allow header. Requests whose Host is not the listening address
// or localhost get 403 (DNS rebinding), and the POST needs
// Content-Type: application/json, which a browser cannot send cross-site
// without a preflight.
//
// The API only reads: it never allocates, releases or signals, except that
// the health-check POST runs a watchdog cycle (the same cycle the watchdog
// runs) and an API listening inside the managed range holds its own port
// (listen.go).
package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet"
	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/cmd/routes"
	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
)

// Server serves the API of one watcher. Build it with New; the caller
// wires the watcher's cycles to ObserveCycle and ObserveCycleError, and its
// checks of exited owners to ObserveExitCheck (the metrics).
type Server struct {
	Store   *registry.Store
	Watcher *watchdog.Watcher
	Range   registry.Range
	// AllowedHosts are the Host header values accepted (host or host:port,
	// lower case). Empty means any host (Unix sockets, --api-allow-remote).
	AllowedHosts []string
	Build        Build
	// Fleet, if set, is the etcd client of a watchdog with --fleet: it
	// serves /api/fleet/…, each read of etcd bounded by FleetTimeout
	// (fleet.ReadTimeout when 0).
	Fleet        *etcd.Client
	FleetTimeout time.Duration
	// Routes, if set, is the proxy of a watchdog with --routes: it serves
	// /api/routes (and the dashboard links the services' names).
	Routes *routes.Config

	// Heartbeat is the time between the event stream's heartbeats, and
	// how long a client may leave what it was sent unread (EventHeartbeat
	// when zero).
	Heartbeat time.Duration

	metrics   *metrics
	cache     cache
	broker    *broker
	slots     slots
	follow    follower
	history   *watchdog.History
	host      string
	squatters map[int]watchdog.Unmanaged // as of the last cycle, for events
}

// cache holds the last registry snapshot and the encoded answers built from
// it, so that a busy monitoring client costs a stat, not a parse. It is
// rebuilt when version changes, and at least once a second (the
// watchdog's "running" depends on the clock).
type cache struct {
	mu  sync.Mutex
	cur *entry
}

// entry is never changed once built (but for the map, built once on first
// use), so handlers read it without the lock.
type entry struct {
	version  string
	built    time.Time
	reg      *registry.Registry
	st       *watchdog.Status
	status   []byte
	allocs   []byte
	watchdog []byte

	mapOnce sync.Once // the map, built on first use
	portMap []byte
	mapErr  error
}

const cacheMaxAge = time.Second

// version identifies the current contents of the registry and watchdog
// files without reading them.
func version(store *registry.Store) string {
	return registry.FileStamp(store.Path()) + ";" + registry.FileStamp(watchdog.StatePath(store))
}

// snapshot returns the current cache entry, rebuilding it if needed.
func (s *Server) snapshot(ctx context.Context) (*entry, error) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	v := version(s.Store)
	if c := s.cache.cur; c != nil && v == c.version && time.Since(c.built) < cacheMaxAge {
		return c, nil
	}
	c := &entry{}
	reg, err := s.Store.Read(ctx)
	if err != nil {
		return nil, err
	}
	wd, err := watchdog.LoadState(s.Store)
	if err != nil {
		return nil, err
	}
	held, herr := s.Store.HeldElsewhere(ctx, s.Range)
	st := watchdog.BuildStatus(s.Store.Path(), s.Range, reg, wd, watchdog.FindUnmanaged(ctx, probe.TakeSnapshot(), s.Range, reg, s.engines().Lookup()), held)
	if herr != nil {
		st.Warnings = append(st.Warnings, watchdog.ElsewhereWarning(herr))
	}
	if c.status, err = encode(st); err != nil {
		return nil, err
	}
	if c.allocs, err = encode(st.Allocations); err != nil {
		return nil, err
	}
	if c.watchdog, err = encode(wd); err != nil {
		return nil, err
	}
	c.reg, c.st, c.version, c.built = reg, st, v, time.Now()
	s.cache.cur = c
	return c, nil
}

// encode is the one JSON form of every answer: indented, newline-ended,
// the same bytes `--json` prints.
func encode(v any) ([]byte, error) { return registry.MarshalIndented(v) }

func writeBytes(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// ErrorBody is every error answer.
type ErrorBody struct {
	Error string `json:"error"`
}

// Build identifies the running gracectl, for gracectl_build_info.
type Build struct{ Version, Revision string }

// New returns the API of w over store; hosts are the Host values accepted
// (nil: any). Its event stream starts where the audit log ends now, with
// w's epoch; its pool history is seeded from the log.
func New(store *registry.Store, w *watchdog.Watcher, rg registry.Range, hosts []string, build Build) *Server {
	s := &Server{Store: store, Watcher: w, Range: rg, AllowedHosts: hosts, Build: build, history: watchdog.NewHistory()}
	s.host, _ = os.Hostname()
	seq := s.startFollowing(time.Now())
	s.broker = newBroker(w.Epoch(), seq)
	s.metrics = newMetrics(rg, build, func() float64 { return float64(s.slots.open()) })
	return s
}

// engines are the container engines the watcher asks (nil: none).
func (s *Server) engines() *container.Engines {
	if s.Watcher == nil {
		return nil
	}
	return s.Watcher.Options.Engines
}

// ObserveCycle records a finished watchdog cycle in the metrics and the
// event stream.
func (s *Server) ObserveCycle(rep *watchdog.Report) {
	s.metrics.observeCycle(rep)
	s.observeEvents(rep)
}

// ObserveCycleError records a cycle that failed (gracectl_registry_up 0).
func (s *Server) ObserveCycleError(error) { s.metrics.up.Set(0) }

// ObserveExitCheck records the check of the ports of an owner that exited
// between cycles.
func (s *Server) ObserveExitCheck(rep *watchdog.Report) { s.metrics.observePorts(rep) }

// Close ends the event streams (on shutdown).
func (s *Server) Close() { s.broker.close() }

// Handler builds the HTTP handler. Each route answers its method (GET
// also HEAD) and any other with 405 and Allow.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(method, path string, h http.HandlerFunc) {
		mux.HandleFunc(method+" "+path, h)
		mux.Handle(path, wrongMethod(method))
	}
	route("GET", "/api/ports/status", s.cached(func(e *entry) []byte { return e.status }))
	route("GET", "/api/ports/allocations", s.cached(func(e *entry) []byte { return e.allocs }))
	route("GET", "/api/ports/allocations/{port}", s.allocation)
	route("GET", "/api/ports/services/{name}", s.service)
	route("POST", "/api/ports/health-check", s.healthCheck)
	route("GET", "/api/ports/events", s.events)
	route("GET", "/api/ports/map", s.portMap)
	route("GET", "/api/ports/history", s.portHistory)
	route("GET", "/api/routes", s.routes)
	route("GET", "/api/fleet/status", s.fleetStatus)
	route("GET", "/api/fleet/services/{name}", s.fleetService)
	route("GET", "/api/ports/watchdog/status", s.cached(func(e *entry) []byte { return e.watchdog }))
	route("GET", "/metrics", s.metrics.handler().ServeHTTP)
	route("GET", "/{$}", dashboard)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.URL.Path)
	})
	return s.checkHost(mux)
}

// NewHTTPServer wraps h with timeouts and limits.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      60 * time.Second, // a health-check POST runs a cycle
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ConnContext:       withConn, // the event stream looks at its client's socket
	}
}

// wrongMethod answers a request whose method the route does not serve.
func wrongMethod(method string) http.Handler {
	allow := method
	if method == http.MethodGet {
		allow = "GET, HEAD"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed; use %s", r.Method, method))
	})
}

func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.AllowedHosts) > 0 && !s.hostAllowed(r.Host) {
			writeError(w, http.StatusForbidden, "host not allowed: "+r.Host)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) hostAllowed(host string) bool {
	host = strings.ToLower(host)
	for _, h := range s.AllowedHosts {
		if host == h {
			return true
		}
	}
	return false
}

// AllowedHostsFor lists the Host values a loopback listener on addr
// accepts: its own address and the usual loopback names, with its port.
func AllowedHostsFor(addr net.Addr) []string {
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return nil
	}
	host, _, _ := net.SplitHostPort(addr.String())
	hosts := []string{"localhost", "127.0.0.1", "[::1]", strings.ToLower(host)}
	if strings.Contains(host, ":") {
		hosts = append(hosts, "["+strings.ToLower(host)+"]")
	}
	var out []string
	for _, h := range hosts {
		out = append(out, h+":"+port)
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := encode(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeBytes(w, b)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := registry.MarshalLine(ErrorBody{Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func storeError(w http.ResponseWriter, err error) {
	msg := registry.PlainText(err)
	var le *registry.LockError
	if errors.As(err, &le) {
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	writeError(w, http.StatusInternalServerError, msg)
}

// cached serves one of the answers kept in the cache.
func (s *Server) cached(pick func(*entry) []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.snapshot(r.Context())
		if err != nil {
			storeError(w, err)
			return
		}
		writeBytes(w, pick(c))
	}
}

func (s *Server) allocation(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("port")
	port, err := registry.ParsePort(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a port number (1-65535)", raw))
		return
	}
	c, err := s.snapshot(r.Context())
	if err != nil {
		storeError(w, err)
		return
	}
	a := c.reg.Get(port)
	if a == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("port %d is not allocated", port))
		return
	}
	writeJSON(w, a)
}

// service answers GET /api/ports/services/{name}: the service's
// allocations, by port; 404 if it holds none.
func (s *Server) service(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	c, err := s.snapshot(r.Context())
	if err != nil {
		storeError(w, err)
		return
	}
	held := c.reg.OfService(name, "")
	if len(held) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("service %q holds no port", name))
		return
	}
	writeJSON(w, held)
}

// fleetView reads the fleet for a /api/fleet/… answer; false (with the
// error answered) when there is none to read.
func (s *Server) fleetView(w http.ResponseWriter, r *http.Request) (*fleet.View, bool) {
	if s.Fleet == nil {
		writeError(w, http.StatusNotFound, "this watchdog has no --fleet")
		return nil, false
	}
	v, err := fleet.ReadWithin(r.Context(), s.Fleet, cmp.Or(s.FleetTimeout, fleet.ReadTimeout))
	if err != nil {
		// etcd is another service this one depends on, and it is not
		// there: 503, within the deadline, whatever etcd does.
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return nil, false
	}
	return v, true
}

// fleetStatus answers GET /api/fleet/status: the fleet, from etcd.
func (s *Server) fleetStatus(w http.ResponseWriter, r *http.Request) {
	if v, ok := s.fleetView(w, r); ok {
		writeJSON(w, v)
	}
}

// fleetService answers GET /api/fleet/services/{name}: where the service
// runs across the fleet.
func (s *Server) fleetService(w http.ResponseWriter, r *http.Request) {
	v, ok := s.fleetView(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	found := v.Services(name, "")
	if len(found) == 0 {
		writeError(w, http.StatusNotFound, fmt.Sprintf("service %q holds no port in the fleet", name))
		return
	}
	writeJSON(w, found)
}

// portMap answers GET /api/ports/map: the range port by port, with the
// processes behind the ports in use as they are now.
func (s *Server) portMap(w http.ResponseWriter, r *http.Request) {
	c, err := s.snapshot(r.Context())
	if err != nil {
		storeError(w, err)
		return
	}
	c.mapOnce.Do(func() {
		listeners := map[int][]int{}
		if ports := watchdog.ListenerPorts(c.st); len(ports) > 0 {
			listeners = probe.TakeSnapshot().OwnersOf(ports)
		}
		c.portMap, c.mapErr = encode(watchdog.BuildMap(s.host, c.st, listeners))
	})
	if c.mapErr != nil {
		writeError(w, http.StatusInternalServerError, c.mapErr.Error())
		return
	}
	writeBytes(w, c.portMap)
}

// routes answers GET /api/routes: the names of the services and where
// they lead, as `gracectl routes --json` prints them.
func (s *Server) routes(w http.ResponseWriter, r *http.Request) {
	if s.Routes == nil {
		writeError(w, http.StatusNotFound, "this watchdog has no --routes")
		return
	}
	c, err := s.snapshot(r.Context())
	if err != nil {
		storeError(w, err)
		return
	}
	writeJSON(w, routes.Plan(c.reg, *s.Routes))
}

// portHistory answers GET /api/ports/history: the pool over the last hour.
func (s *Server) portHistory(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.history.Doc(time.Now()))
}

func (s *Server) healthCheck(w http.ResponseWriter, r *http.Request) {
	ct := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	if ct != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "POST needs Content-Type: application/json")
		return
	}
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20))
	rep, err := s.Watcher.Trigger(r.Context())
	if err != nil {
		storeError(w, err)
		return
	}
	writeJSON(w, rep)
}
