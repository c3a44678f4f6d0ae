package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gracectl/gracectl/probe/portinfo"
	"github.com/gracectl/gracectl/registry"
	"github.com/spf13/cobra"
)

type waitOptions struct {
	g       *globals
	spec    portinfo.WaitSpec
	timeout time.Duration
	json    bool
}

func newWaitCmd(g *globals) *cobra.Command {
	o := &waitOptions{g: g}
	c := &cobra.Command{
		Use:   "wait SERVICE|PORT [--healthy] [--timeout D]",
		Short: "Wait until a service's ports (or a port) listen, or answer their health path",
		Long: `Wait until PORT, or every port of SERVICE, listens on loopback: a TCP listener
that a connection to 127.0.0.1 or to ::1 reaches (on a loopback or a wildcard
address, IPv4 or IPv6). With --healthy, also until its health path answers
with a 2xx: --path, else the path the allocation was given (--health-path).
A SERVICE not allocated yet is waited for too. Prints the ports, one per
line, once they are ready.

It does not poll faster than needed: it looks at the registry file every
250ms, as the watchdog does between cycles, and checks the listener at once
when the registry changes (a service allocated, registered, found active),
otherwise after 20ms, then less and less often, every second at most. The
socket table is read, nothing connects to the service until it listens.

On timeout it exits 1 and says what it last saw.` + exitHelp(readerExits, map[int]string{
			exitFailure: "the timeout passed first (the message says what was last seen), or the registry could not be read"}),
		Example: `  gracectl wait grace_backend --healthy --timeout 60s && ./run-tests
  gracectl wait 8000 && curl -s localhost:8000/
  docker compose up -d db && gracectl wait 5432 --timeout 2m`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageErrorf("wait takes one service or port, got %d arguments", len(args))
			}
			if p, err := registry.ParsePort(args[0]); err == nil {
				o.spec.Port = p
			} else if isDigits(args[0]) {
				return &usageError{msg: err.Error()}
			} else {
				o.spec.Service = args[0]
			}
			if o.timeout < 0 {
				return usageErrorf("--timeout must not be negative, got %s", o.timeout)
			}
			if o.spec.Path != "" && o.spec.Path[0] != '/' {
				return usageErrorf("--path must start with /, got %s", registry.Quote(o.spec.Path))
			}
			return runWait(cmd, o)
		},
	}
	f := c.Flags()
	f.BoolVar(&o.spec.Healthy, "healthy", false, "also wait for the health path to answer 2xx")
	f.StringVar(&o.spec.Path, "path", "", "the health `PATH` to ask (default: the allocation's health path)")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "give up after this long (0: never)")
	f.BoolVar(&o.json, "json", false, "print what was seen as JSON")
	return c
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func runWait(cmd *cobra.Command, o *waitOptions) error {
	if err := o.g.rootMissing(); err != nil {
		return err
	}
	o.spec.Store = o.g.store()
	ctx := cmd.Context()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	res, err := portinfo.Wait(ctx, o.spec)
	var nh *portinfo.NoHealthPathError
	if errors.As(err, &nh) {
		return &usageError{msg: err.Error(), hint: "see 'gracectl wait --help'"}
	}
	if err != nil {
		return err
	}
	if o.json {
		if err := printJSON(o.g.stdout, res); err != nil {
			return err
		}
	} else if res.Ready {
		for _, s := range res.Ports {
			fmt.Fprintln(o.g.stdout, s.Port)
		}
	}
	if res.Ready {
		return nil
	}
	what := fmt.Sprintf("port %d", o.spec.Port)
	if o.spec.Service != "" {
		what = "service " + registry.Quote(o.spec.Service)
	}
	ready := "listen"
	if o.spec.Healthy {
		ready = "become healthy"
	}
	within := fmt.Sprintf("within %s", o.timeout)
	if cmd.Context().Err() != nil {
		within = "before it was interrupted"
	}
	return &exitError{code: exitFailure, err: fmt.Errorf("%s did not %s %s; last seen: %s", what, ready, within, res.LastSeen)}
}
