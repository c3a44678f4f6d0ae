package api

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// TLS and authentication are the Prometheus exporters' web configuration
// (node_exporter's --web.config.file), served by exporter-toolkit: the same
// YAML (tls_server_config, basic_auth_users with bcrypt hashes,
// http_server_config headers), read again on every request and TLS
// handshake, so certificates and users change without a restart.

// Access describes how the API can be reached, for the log and status.
type Access struct {
	Remote bool // listening beyond loopback
	TLS    bool
	Auth   bool // basic_auth_users, or client certificates required
}

func (a Access) String() string {
	switch {
	case !a.Remote:
		return "loopback"
	case a.TLS && a.Auth:
		return "remote, TLS and authentication"
	case a.TLS:
		return "remote, TLS, unauthenticated"
	case a.Auth:
		return "remote, authenticated, no TLS"
	}
	return "remote, unauthenticated"
}

// Safe reports whether the access is one that needs no warning.
func (a Access) Safe() bool { return !a.Remote || a.TLS && a.Auth }

// ReadWebConfig validates a web configuration file (as exporter-toolkit
// will read it) and tells what it turns on.
func ReadWebConfig(path string) (tls, auth bool, err error) {
	if err := web.Validate(path); err != nil {
		return false, false, fmt.Errorf("web config %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return false, false, err
	}
	var c web.Config
	if err := yaml.Unmarshal(b, &c); err != nil {
		return false, false, fmt.Errorf("web config %s: %w", path, err)
	}
	mtls := c.TLSConfig.ClientAuth == "RequireAndVerifyClientCert" || c.TLSConfig.ClientAuth == "RequireAnyClientCert"
	return c.TLSConfig.IsEnabled(), len(c.Users) > 0 || mtls, nil
}

// serveWeb serves srv on l through exporter-toolkit with the web config at
// path ("" for plain HTTP). Requests the toolkit turns away for want of
// valid credentials (401) are counted in failures.
func serveWeb(l net.Listener, srv *http.Server, path string, failures func()) error {
	// The toolkit wraps srv.Handler with its authentication when it
	// starts serving; the first Accept is past that point, and before any
	// request: there the wrapper is wrapped once more, to count the 401s.
	counted := &countingListener{Listener: l, once: func() {
		inner := srv.Handler
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cw := &statusWriter{ResponseWriter: w}
			inner.ServeHTTP(cw, r)
			if cw.status == http.StatusUnauthorized {
				failures()
			}
		})
	}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	return web.Serve(counted, srv, &web.FlagConfig{WebConfigFile: &path}, logger)
}

type countingListener struct {
	net.Listener
	once func()
	done sync.Once
}

func (l *countingListener) Accept() (net.Conn, error) {
	l.done.Do(l.once)
	return l.Listener.Accept()
}

// statusWriter remembers the status code; it passes Flush on, for the
// event stream.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
