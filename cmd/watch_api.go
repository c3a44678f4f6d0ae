package cmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/probe/api"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
)

// apiListener parses --api and listens: host:port (default host
// 127.0.0.1), :port, or unix:/path. It returns the Host header values to
// accept (nil: any) and a cleanup.
func apiListener(ctx context.Context, spec string, allowRemote bool, store *registry.Store, rg registry.Range, logf func(string)) (net.Listener, []string, func(), error) {
	if path, ok := strings.CutPrefix(spec, "unix:"); ok {
		if path == "" {
			return nil, nil, nil, usageErrorf("--api unix: needs a path")
		}
		if info, err := os.Lstat(path); err == nil && info.Mode()&os.ModeSocket != 0 {
			os.Remove(path) // a stale socket of an earlier run; the watchdog lock says none runs
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("cannot serve the API on %s: %w", spec, err)
		}
		return l, nil, func() {}, nil
	}
	host, portStr, err := net.SplitHostPort(spec)
	if err != nil {
		return nil, nil, nil, usageErrorf("--api %q: want HOST:PORT, :PORT or unix:/path", spec)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	port, err := registry.ParsePort(portStr)
	if err != nil {
		return nil, nil, nil, usageErrorf("--api %q: %v", spec, err)
	}
	ip := net.ParseIP(host)
	loopback := host == "localhost" || (ip != nil && ip.IsLoopback())
	if !loopback && !allowRemote {
		return nil, nil, nil, usageErrorf("--api %s listens beyond loopback; add --api-allow-remote if that is meant", spec)
	}
	if !loopback {
		logf(fmt.Sprintf("[PORT-WATCHDOG] WARNING: the API on %s is reachable from other hosts and has no authentication", spec))
	}
	cleanup := func() {}
	// A port inside the managed range is allocated to the watchdog itself,
	// so nothing else is handed that port.
	if rg.Contains(port) {
		a, err := store.Allocate(ctx, registry.Request{
			Service: "gracectl_watchdog", Purpose: "gracectl watch HTTP API", StartedBy: "gracectl watch",
			Owner: probe.Self(), Preferred: port, Range: registry.Range{Start: port, End: port},
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("cannot serve the API on %s: %w", spec, err)
		}
		cleanup = func() {
			_, _ = store.Release(context.Background(), registry.ReleaseRequest{Port: a.Port, Force: true, By: "watchdog", Reason: "watchdog stopped",
				Only: func(cur *registry.Allocation) bool { return cur.ID == a.ID }})
		}
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		cleanup()
		return nil, nil, nil, fmt.Errorf("cannot serve the API on %s: %w", spec, err)
	}
	var hosts []string
	if !allowRemote {
		hosts = api.AllowedHostsFor(l.Addr())
		if host == "localhost" {
			hosts = append(hosts, "localhost:"+strconv.Itoa(port))
		}
	}
	return l, hosts, cleanup, nil
}

// serveAPI starts the API for w and returns a function that shuts it down
// gracefully.
func serveAPI(l net.Listener, hosts []string, w *watchdog.Watcher, store *registry.Store, rg registry.Range, logf func(string)) func() {
	srv := api.NewHTTPServer((&api.Server{Store: store, Watcher: w, Range: rg, AllowedHosts: hosts}).Handler())
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("[PORT-WATCHDOG] API stopped: " + err.Error())
		}
	}()
	logf("[PORT-WATCHDOG] API listening on " + l.Addr().Network() + ":" + l.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
