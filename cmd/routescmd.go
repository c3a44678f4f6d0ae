package cmd

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gracectl/gracectl/cmd/routes"
	"github.com/gracectl/gracectl/probe/watchdog"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// routesFlags are watch's --routes flags.
type routesFlags struct {
	spec   string
	listen string
	domain string
	reload string
	test   string
}

func addRoutesFlags(f *pflag.FlagSet, o *routesFlags) {
	f.StringVar(&o.spec, "routes", "", "keep a reverse proxy's routes: caddy://HOST:PORT (Caddy's admin API) or nginx:PATH (an include file); docs/routes.md")
	f.StringVar(&o.listen, "routes-listen", routes.DefaultListen, "where the proxy serves the names: PORT, :PORT or HOST:PORT")
	f.StringVar(&o.domain, "routes-domain", routes.DefaultDomain, "the `DOMAIN` the names are under (SERVICE.DOMAIN)")
	f.StringVar(&o.reload, "routes-reload", routes.DefaultNginxReload, "with nginx: the shell `COMMAND` that reloads it")
	f.StringVar(&o.test, "routes-test", routes.DefaultNginxTest, "with nginx: the shell `COMMAND` that tests its configuration (which includes the file)")
}

// check validates the flags (usage errors).
func (o *routesFlags) check(cmd *cobra.Command) error {
	changed := false
	for _, n := range []string{"routes-listen", "routes-domain", "routes-reload", "routes-test"} {
		changed = changed || cmd.Flags().Changed(n)
	}
	if o.spec == "" {
		if changed {
			return usageErrorf("--routes-listen, --routes-domain, --routes-reload and --routes-test go with --routes")
		}
		return nil
	}
	if _, _, err := o.parse(); err != nil {
		return err
	}
	l, ok := routes.ParseListen(o.listen)
	if !ok {
		return usageErrorf("--routes-listen takes PORT, :PORT or HOST:PORT, got %s", registry.Quote(o.listen))
	}
	o.listen = l
	if !registry.ValidDomain(o.domain) {
		return usageErrorf("--routes-domain %s is not a DNS name: lower-case labels of letters, digits and inner '-', separated by dots", registry.Quote(o.domain))
	}
	return nil
}

// parse reads --routes: the proxy's kind and its address or file.
func (o *routesFlags) parse() (kind, where string, err error) {
	switch {
	case strings.HasPrefix(o.spec, "caddy://"):
		hostport := strings.TrimSuffix(strings.TrimPrefix(o.spec, "caddy://"), "/")
		if _, _, err := net.SplitHostPort(hostport); err != nil || strings.ContainsAny(hostport, "/?#@") {
			return "", "", usageErrorf("--routes caddy://HOST:PORT names Caddy's admin API (caddy://127.0.0.1:2019), got %s", registry.Quote(o.spec))
		}
		return "caddy", hostport, nil
	case strings.HasPrefix(o.spec, "nginx:"):
		p := strings.TrimPrefix(o.spec, "nginx:")
		if !filepath.IsAbs(p) || strings.HasSuffix(p, "/") {
			return "", "", usageErrorf("--routes nginx:PATH takes the absolute path of the include file nginx reads (nginx:/etc/nginx/gracectl-routes.conf), got %s", registry.Quote(o.spec))
		}
		return "nginx", filepath.Clean(p), nil
	}
	return "", "", usageErrorf("--routes takes caddy://HOST:PORT or nginx:PATH, got %s", registry.Quote(o.spec))
}

// publisher makes the Publisher and checks that its proxy can be changed
// now.
func (o *routesFlags) publisher(ctx context.Context, store *registry.Store, logf func(string)) (*routes.Publisher, error) {
	kind, where, _ := o.parse()
	cfg := routes.Config{Proxy: o.spec, Domain: o.domain, Listen: o.listen}
	var proxy routes.Proxy
	if kind == "caddy" {
		proxy = &routes.Caddy{Admin: where, Config: cfg, Client: &http.Client{Timeout: routes.ApplyTimeout}}
	} else {
		proxy = &routes.Nginx{Path: where, Test: o.test, Reload: o.reload, Config: cfg}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := proxy.Check(cctx); err != nil {
		return nil, fmt.Errorf("cannot keep routes: %w", err)
	}
	return &routes.Publisher{Proxy: proxy, Store: store, Config: cfg, Log: logf}, nil
}

type routesOptions struct {
	g    *globals
	json bool
}

func newRoutesCmd(g *globals) *cobra.Command {
	o := &routesOptions{g: g}
	c := &cobra.Command{
		Use:   "routes",
		Short: "List the services' names in the reverse proxy (watch --routes)",
		Long: `List the names the running watchdog keeps in its reverse proxy ('gracectl
watch --routes'), one line per name: the host name, its URL, the port behind
it and its state: routed (the proxy sends requests on), or down with why
(the proxy answers 503). Allocations without a name (a service name without
letters or digits, or one taken by a lower port) are named on stderr.

A name is the service name as one DNS label: letters and digits kept, other
letters lower-cased without their accents, every run of anything else one
'-' (grace_backend is grace-backend.localhost); a named port is
PORTNAME.SERVICE.DOMAIN. See docs/routes.md.` + exitHelp(readerExits, map[int]string{exitFailure: "no watchdog keeps routes for this registry (or the registry could not be read)"}),
		Example: `  gracectl routes
  gracectl routes --json | jq -r '.routes[] | select(.state == "routed") | .url'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runRoutes(cmd, o) },
	}
	c.Flags().BoolVar(&o.json, "json", false, "print the routes as JSON")
	return c
}

// routesTable is the table of the running watchdog's routes, nil when no
// watchdog keeps any.
func routesTable(g *globals, r *registry.Registry) (*routes.Table, error) {
	st, err := watchdog.LoadState(g.store())
	if err != nil {
		return nil, err
	}
	if !st.Running || st.Routes == nil {
		return nil, nil
	}
	return routes.Plan(r, *st.Routes), nil
}

func runRoutes(cmd *cobra.Command, o *routesOptions) error {
	r, err := o.g.store().Read(cmd.Context())
	if err != nil {
		return err
	}
	t, err := routesTable(o.g, r)
	if err != nil {
		return err
	}
	if t == nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("no watchdog keeps routes for this registry"),
			hint: "start one with 'gracectl watch --routes caddy://127.0.0.1:2019' or '--routes nginx:PATH' (docs/routes.md)"}
	}
	if o.json {
		return printJSON(o.g.stdout, t)
	}
	for _, s := range t.Skipped {
		label := s.Service
		if s.PortName != "" {
			label += " (" + s.PortName + ")"
		}
		fmt.Fprintf(o.g.stderr, "gracectl: note: port %d (%s) has no name: %s\n", s.Port, escape(label), escape(s.Reason))
	}
	tw := tabwriter.NewWriter(o.g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tPORT\tSTATE")
	for _, rt := range t.Routes {
		state := rt.State
		if rt.Reason != "" {
			state += " (" + rt.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", rt.Host, rt.URL, rt.Port, state)
	}
	return tw.Flush()
}
