package api

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry"
)

// AddrError is a --api address that cannot be used as written (a usage
// error for the command line).
type AddrError struct{ Msg string }

func (e *AddrError) Error() string { return e.Msg }

// Listener is where the API listens, with the Host header values it
// accepts.
type Listener struct {
	net.Listener
	// Hosts are the Host values accepted; nil means any (a Unix socket,
	// or remote access allowed).
	Hosts []string
	// Access says how the API can be reached (loopback, remote with or
	// without TLS and authentication).
	Access Access
	// WebConfig is the exporter-toolkit web configuration file, if any.
	WebConfig string
	// release gives back a port of the managed range taken for the API.
	release func()
}

// Close stops listening and gives back the API's port if it was allocated.
func (l *Listener) Close() error {
	err := l.Listener.Close()
	if l.release != nil {
		l.release()
	}
	return err
}

// ListenConfig is the API's address policy.
type ListenConfig struct {
	// Addr is host:port (default host 127.0.0.1), :port, or unix:/path.
	Addr string
	// AllowRemote permits an address beyond loopback.
	AllowRemote bool
	// Store and Range: a port inside the managed range is allocated to the
	// watchdog itself, so nothing else is handed that port.
	Store *registry.Store
	Range registry.Range
	// Log receives warnings.
	Log func(string)
	// WebConfig is an exporter-toolkit web configuration file: TLS, client
	// certificates, basic auth users, headers ("" for plain HTTP).
	WebConfig string
	// Hosts are more Host header values a remote API accepts (a DNS name
	// it is reached by); the listening address, this host's name and the
	// loopback names are always accepted.
	Hosts []string
}

// apiPortTaken says whose the API's port is when the registry could not
// give it to the watchdog (the port is in the managed range).
func apiPortTaken(port int, err error) error {
	var xe *registry.ExhaustedError
	switch {
	case !errors.As(err, &xe):
		return err
	case xe.Managed > 0:
		return fmt.Errorf("port %d is allocated to another service (gracectl who %d); choose another address", port, port)
	case xe.Elsewhere > 0:
		return fmt.Errorf("port %d is held by the host registry; choose another address", port)
	}
	return fmt.Errorf("port %d is in use by another program (gracectl who %d); choose another address", port, port)
}

// Check finds, without listening or logging, the mistakes in cfg's address
// and web config that Listen refuses with an AddrError: a caller finds
// usage errors before it takes locks or starts anything.
func Check(cfg ListenConfig) error {
	cfg.Log = nil
	spec := cfg.Addr
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		return checkUnixPath(path)
	}
	host, _, err := parseTCPAddr(spec)
	if err != nil {
		return err
	}
	_, err = cfg.access(spec, host)
	return err
}

func checkUnixPath(path string) error {
	if path == "" {
		return &AddrError{"--api unix: needs a path"}
	}
	return nil
}

// Listen parses the address and listens there.
func Listen(ctx context.Context, cfg ListenConfig) (*Listener, error) {
	spec := cfg.Addr
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		return listenUnix(spec, path)
	}
	host, port, err := parseTCPAddr(spec)
	if err != nil {
		return nil, err
	}
	access, err := cfg.access(spec, host)
	if err != nil {
		return nil, err
	}
	out := &Listener{Access: access, WebConfig: cfg.WebConfig}
	if cfg.Range.Contains(port) {
		if out.release, err = cfg.reservePort(ctx, port); err != nil {
			return nil, fmt.Errorf("cannot serve the API on %s: %w", spec, apiPortTaken(port, err))
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		if out.release != nil {
			out.release()
		}
		return nil, fmt.Errorf("cannot serve the API on %s: %w", spec, err)
	}
	out.Listener = l
	out.Hosts = AllowedHostsFor(l.Addr())
	if host == "localhost" {
		out.Hosts = append(out.Hosts, "localhost:"+strconv.Itoa(port))
	}
	if access.Remote {
		out.Hosts = append(out.Hosts, remoteHosts(host, port, cfg.Hosts)...)
	}
	return out, nil
}

// listenUnix listens on the Unix socket path, replacing a stale socket of
// an earlier run (the watchdog lock says none runs).
func listenUnix(spec, path string) (*Listener, error) {
	if err := checkUnixPath(path); err != nil {
		return nil, err
	}
	if info, err := os.Lstat(path); err == nil && info.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cannot serve the API on %s: %w", spec, err)
	}
	return &Listener{Listener: l}, nil
}

// parseTCPAddr reads HOST:PORT or :PORT (host 127.0.0.1).
func parseTCPAddr(spec string) (host string, port int, err error) {
	host, portStr, err := net.SplitHostPort(spec)
	if err != nil {
		return "", 0, &AddrError{fmt.Sprintf("--api %q: want HOST:PORT, :PORT or unix:/path", spec)}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port, err = registry.ParsePort(portStr); err != nil {
		return "", 0, &AddrError{fmt.Sprintf("--api %q: %v", spec, err)}
	}
	return host, port, nil
}

// access is how an API on host can be reached: beyond loopback only with
// AllowRemote, with TLS and authentication from the web config; an API
// that others reach without both is warned about in the log.
func (cfg *ListenConfig) access(spec, host string) (Access, error) {
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	if !loopback && !cfg.AllowRemote {
		return Access{}, &AddrError{fmt.Sprintf("--api %s listens beyond loopback; add --api-allow-remote if that is meant", spec)}
	}
	access := Access{Remote: !loopback}
	if cfg.WebConfig != "" {
		var err error
		if access.TLS, access.Auth, err = ReadWebConfig(cfg.WebConfig); err != nil {
			return Access{}, &AddrError{err.Error()}
		}
	}
	if !access.Safe() && cfg.Log != nil {
		cfg.Log(fmt.Sprintf("[PORT-WATCHDOG] WARNING: the API on %s is reachable from other hosts (%s): anyone who reaches it reads every service, command and pid and can run health checks; give --api-web-config with TLS and authentication (docs/security.md)", spec, access))
	}
	return access, nil
}

// reservePort allocates port, inside the managed range, to the watchdog
// itself, so that nothing else is handed it; release gives it back.
func (cfg *ListenConfig) reservePort(ctx context.Context, port int) (release func(), err error) {
	a, err := cfg.Store.Allocate(ctx, registry.Request{
		Service: "gracectl_watchdog", Purpose: "gracectl watch HTTP API", StartedBy: "gracectl watch",
		Owner: probe.Self(), Preferred: port, Range: registry.Range{Start: port, End: port},
	})
	if err != nil {
		return nil, err
	}
	return func() {
		_, _ = cfg.Store.Release(context.Background(), registry.ReleaseRequest{Port: a.Port, Force: true, By: "watchdog", Reason: "watchdog stopped", ID: a.ID})
	}, nil
}

// remoteHosts are the Host values a remote API accepts beyond its
// address: the host it listens on, the names given with --api-host, this
// host's name and the addresses of all its interfaces, each with and
// without the port. Any other Host is DNS
// rebinding.
func remoteHosts(host string, port int, given []string) []string {
	names := append([]string{host}, given...)
	if hn, err := os.Hostname(); err == nil {
		names = append(names, hn)
	}
	names = append(names, HostAddresses()...)
	var out []string
	for _, n := range names {
		n = strings.ToLower(n)
		out = append(out, n, n+":"+strconv.Itoa(port))
	}
	return out
}

// HostAddresses are the addresses of this host's interfaces as a Host
// header carries them: 192.0.2.2, [fd00::2] (IPv6 in brackets). A remote
// API accepts each, with and without its port: a Prometheus target or a
// browser that names this host by address. Link-local IPv6 addresses,
// which a URL can only give with a zone, are left out.
func HostAddresses() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip := ipn.IP
		switch {
		case ip.To4() != nil:
			out = append(out, ip.To4().String())
		case !ip.IsLinkLocalUnicast():
			out = append(out, "["+ip.String()+"]")
		}
	}
	return out
}

// Serve serves s on l in the background, with TLS and authentication when
// l has a web config, and returns a function that shuts it down
// gracefully, ending the event streams.
func Serve(l *Listener, s *Server, logf func(string)) (shutdown func()) {
	srv := NewHTTPServer(s.Handler())
	// net/http's own complaints (TLS handshake errors, accept errors) go
	// to the watchdog's log as its other lines do, not to stderr in the
	// log package's time format.
	srv.ErrorLog = log.New(logLines(func(line string) { logf("[PORT-WATCHDOG] API: " + line) }), "", 0)
	srv.RegisterOnShutdown(s.Close)
	go func() {
		if err := serveWeb(l.Listener, srv, l.WebConfig, s.metrics.authFailures.Inc); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("[PORT-WATCHDOG] API stopped: " + err.Error())
		}
	}()
	logf("[PORT-WATCHDOG] API listening on " + l.Addr().Network() + ":" + l.Addr().String() + " (" + l.Access.String() + ")")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// logLines is an io.Writer that hands each line written to it to a log
// function.
type logLines func(line string)

func (f logLines) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		f(line)
	}
	return len(p), nil
}
