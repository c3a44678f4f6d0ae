package routes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"syscall"

	"github.com/gracectl/gracectl/registry"
)

// Caddy's objects that are gracectl's carry these "@id"s: one route (a
// subroute holding every host name under the domain) and, when no server
// of Caddy's listens on the address, the server gracectl made for it.
// Nothing else in Caddy's configuration is ever read back for a change,
// replaced or removed.
const (
	CaddyRouteID  = "gracectl_routes"
	CaddyServerID = "gracectl_server"
	// caddyServerName is the name of the server gracectl makes.
	caddyServerName = "gracectl"
)

// Caddy keeps the routes in a Caddy server through its admin API
// (https://caddyserver.com/docs/api). It never POSTs /load, which replaces
// the whole configuration: it edits its own objects by their @id
// (/id/gracectl_routes) and adds them under /config/ paths.
type Caddy struct {
	Admin  string // HOST:PORT of the admin API
	Config Config
	Client *http.Client
}

// Name says which Caddy this is.
func (c *Caddy) Name() string { return "Caddy's admin API at " + c.Admin }

func (c *Caddy) client() *http.Client {
	if c.Client != nil {
		return c.Client
	}
	return http.DefaultClient
}

// do sends one request to the admin API; body, if not nil, is sent as
// JSON and out, if not nil, receives the answer's JSON.
func (c *Caddy) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := registry.MarshalLine(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.Admin+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client().Do(req)
	if err != nil {
		return fmt.Errorf("%s does not answer (%s)", c.Name(), netReason(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s broke off its answer to %s %s", c.Name(), method, path)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(b))
		if registry.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &caddyError{status: resp.StatusCode, msg: fmt.Sprintf("%s refused %s %s (%d): %s", c.Name(), method, path, resp.StatusCode, oneLine(msg))}
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := registry.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s answered %s %s with something that is not JSON", c.Name(), method, path)
		}
	}
	return nil
}

type caddyError struct {
	status int
	msg    string
}

func (e *caddyError) Error() string { return e.msg }

// netReason says in a few words why a connection failed.
func netReason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there"
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(err.Error(), "Timeout"):
		return "no answer in time"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to it"
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return "it closed the connection"
	}
	return "cannot connect"
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + "…"
	}
	return s
}

// Check reads Caddy's configuration: the admin API answers.
func (c *Caddy) Check(ctx context.Context) error {
	var cfg any
	return c.do(ctx, http.MethodGet, "/config/", nil, &cfg)
}

// found is where gracectl's objects and the address's server are in
// Caddy's configuration.
type found struct {
	route      any    // gracectl's route as Caddy holds it; nil: none
	routeIn    string // the server that holds it
	server     string // the server that listens on the address; "" if none
	serverOurs bool   // that server is gracectl's
}

// find looks through apps.http.servers of cfg.
func (c *Caddy) find(cfg any) found {
	var f found
	servers := dig(cfg, "apps", "http", "servers")
	m, _ := servers.(map[string]any)
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		srv, _ := m[name].(map[string]any)
		if srv == nil || name == "" || strings.ContainsAny(name, "/?#") {
			continue // a server gracectl could not name in an admin API path
		}
		routes, _ := srv["routes"].([]any)
		for _, r := range routes {
			if o, ok := r.(map[string]any); ok && o["@id"] == CaddyRouteID && f.route == nil {
				f.route, f.routeIn = r, name
			}
		}
		listen, _ := srv["listen"].([]any)
		for _, l := range listen {
			if s, ok := l.(string); ok && f.server == "" && sameListen(s, c.Config.Listen) {
				f.server, f.serverOurs = name, srv["@id"] == CaddyServerID
			}
		}
	}
	return f
}

// sameListen compares a Caddy listen address ("tcp/:80", ":80",
// "0.0.0.0:80") with --routes-listen.
func sameListen(caddy, ours string) bool {
	caddy = strings.TrimPrefix(caddy, "tcp/")
	if caddy == ours {
		return true
	}
	return strings.HasPrefix(ours, ":") && caddy == "0.0.0.0"+ours
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// Apply reads Caddy's configuration and changes gracectl's route only
// where it differs from t: PATCH /id/gracectl_routes in place, or, when
// Caddy has none (a first start, a restart without its configuration), a
// PUT inserting it first among the routes of the server listening on the
// address, or a PUT of a server of gracectl's own when none does.
func (c *Caddy) Apply(ctx context.Context, t *Table) (bool, error) {
	var cfg any
	if err := c.do(ctx, http.MethodGet, "/config/", nil, &cfg); err != nil {
		return false, err
	}
	want, err := normalize(caddyRoute(t))
	if err != nil {
		return false, err
	}
	f := c.find(cfg)
	if f.route != nil && f.routeIn == f.server {
		if reflect.DeepEqual(f.route, want) {
			return false, nil
		}
		return true, c.do(ctx, http.MethodPatch, "/id/"+CaddyRouteID, want, nil)
	}
	if f.route != nil { // in another server: --routes-listen changed
		if err := c.do(ctx, http.MethodDelete, "/id/"+CaddyRouteID, nil, nil); err != nil {
			return false, err
		}
	}
	if f.server != "" {
		// First, so that a catch-all route of the server's (a Caddyfile
		// site without a host) does not hide the names; gracectl's matches
		// nothing but names under the domain.
		if n, _ := dig(cfg, "apps", "http", "servers", f.server, "routes").([]any); len(n) > 0 {
			return true, c.do(ctx, http.MethodPut, "/config/apps/http/servers/"+f.server+"/routes/0", want, nil)
		}
		return true, c.do(ctx, http.MethodPost, "/config/apps/http/servers/"+f.server+"/routes", []any{want}, nil)
	}
	srv := map[string]any{
		"@id":    CaddyServerID,
		"listen": []any{c.Config.Listen},
		"routes": []any{want},
		// The names are plain HTTP: no certificates, no redirect to 443.
		"automatic_https": map[string]any{"disable": true},
	}
	return true, c.do(ctx, http.MethodPut, "/config/apps/http/servers/"+caddyServerName, srv, nil)
}

// Withdraw deletes gracectl's route, and the server gracectl made when
// nothing else was added to it.
func (c *Caddy) Withdraw(ctx context.Context) error {
	var cfg any
	if err := c.do(ctx, http.MethodGet, "/config/", nil, &cfg); err != nil {
		return err
	}
	f := c.find(cfg)
	if f.route != nil {
		if err := c.do(ctx, http.MethodDelete, "/id/"+CaddyRouteID, nil, nil); err != nil {
			return err
		}
	}
	var routes []any
	err := c.do(ctx, http.MethodGet, "/id/"+CaddyServerID+"/routes", nil, &routes)
	var ce *caddyError
	if errors.As(err, &ce) {
		return nil // no server of gracectl's
	}
	if err != nil || len(routes) > 0 {
		return err
	}
	return c.do(ctx, http.MethodDelete, "/id/"+CaddyServerID, nil, nil)
}

// normalize is v as Caddy gives it back: JSON decoded into maps, slices,
// strings, float64s and bools.
func normalize(v any) (any, error) {
	b, err := registry.MarshalLine(v)
	if err != nil {
		return nil, err
	}
	var out any
	err = registry.Unmarshal(b, &out)
	return out, err
}

// caddyRoute is gracectl's route: every name under the domain goes into a
// subroute that sends a routed name to its port, answers 503 for a name
// that is down, and 404 for any other; an error on the way to a port (the
// service died a moment ago) is a 503 too, never a 502.
func caddyRoute(t *Table) map[string]any {
	text := func(code int, body string) map[string]any {
		return map[string]any{"handler": "static_response", "status_code": code, "body": body,
			"headers": map[string]any{"Content-Type": []any{"text/plain; charset=utf-8"}, "Cache-Control": []any{"no-store"}}}
	}
	var sub []any
	for _, r := range t.Routes {
		var h map[string]any
		if r.State == StateRouted {
			h = map[string]any{"handler": "reverse_proxy", "upstreams": []any{map[string]any{"dial": fmt.Sprintf("127.0.0.1:%d", r.Port)}}}
		} else {
			h = text(503, fmt.Sprintf("gracectl: %s is down (%s)\n", r.Host, r.Reason))
		}
		sub = append(sub, map[string]any{"match": []any{map[string]any{"host": []any{r.Host}}}, "handle": []any{h}, "terminal": true})
	}
	sub = append(sub, map[string]any{"handle": []any{text(404, "gracectl: no service is called {http.request.host}\n")}})
	d := t.Domain
	return map[string]any{
		"@id":   CaddyRouteID,
		"match": []any{map[string]any{"host": []any{"*." + d, "*.*." + d}}},
		"handle": []any{map[string]any{
			"handler": "subroute",
			"routes":  sub,
			"errors":  map[string]any{"routes": []any{map[string]any{"handle": []any{text(503, "gracectl: {http.request.host} is not answering\n")}}}},
		}},
		"terminal": true,
	}
}
