package api

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// parseTCPAddr: HOST:PORT, :PORT (loopback), IPv6 in brackets; anything
// else an AddrError that says what to give.
func TestParseTCPAddr(t *testing.T) {
	for _, tc := range []struct {
		spec, host string
		port       int
		err        string
	}{
		{spec: "127.0.0.1:9100", host: "127.0.0.1", port: 9100},
		{spec: ":9100", host: "127.0.0.1", port: 9100},
		{spec: "[::1]:9100", host: "::1", port: 9100},
		{spec: "0.0.0.0:1", host: "0.0.0.0", port: 1},
		{spec: "localhost:65535", host: "localhost", port: 65535},
		{spec: "9100", err: "want HOST:PORT, :PORT or unix:/path"},
		{spec: "::1:9100", err: "want HOST:PORT"},
		{spec: "127.0.0.1:", err: `--api "127.0.0.1:"`},
		{spec: "127.0.0.1:0", err: `--api "127.0.0.1:0"`},
		{spec: "127.0.0.1:65536", err: `--api "127.0.0.1:65536"`},
		{spec: "127.0.0.1:http", err: `--api "127.0.0.1:http"`},
	} {
		host, port, err := parseTCPAddr(tc.spec)
		var ae *AddrError
		switch {
		case tc.err == "" && (err != nil || host != tc.host || port != tc.port):
			t.Errorf("parseTCPAddr(%q) = %q, %d, %v; want %q, %d", tc.spec, host, port, err, tc.host, tc.port)
		case tc.err != "" && (!errors.As(err, &ae) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("parseTCPAddr(%q) = %v; want an AddrError with %q", tc.spec, err, tc.err)
		}
	}
}

// access: loopback needs nothing; beyond it, --api-allow-remote, and a
// warning in the log while TLS and authentication are not both on; a web
// config that cannot be read is an AddrError.
func TestAccess(t *testing.T) {
	for _, tc := range []struct {
		host        string
		allowRemote bool
		webConfig   string
		want        Access
		warned      bool
		err         string
	}{
		{host: "127.0.0.1", want: Access{}},
		{host: "::1", want: Access{}},
		{host: "localhost", want: Access{}},
		{host: "0.0.0.0", err: "listens beyond loopback; add --api-allow-remote"},
		{host: "192.0.2.7", err: "listens beyond loopback"},
		{host: "0.0.0.0", allowRemote: true, want: Access{Remote: true}, warned: true},
		{host: "::", allowRemote: true, want: Access{Remote: true}, warned: true},
		{host: "127.0.0.1", webConfig: filepath.Join(t.TempDir(), "missing.yml"), err: "web config"},
	} {
		var logged []string
		cfg := &ListenConfig{AllowRemote: tc.allowRemote, WebConfig: tc.webConfig, Log: func(s string) { logged = append(logged, s) }}
		got, err := cfg.access(tc.host+":9100", tc.host)
		var ae *AddrError
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("access(%q, remote %v) = %+v, %v; want %+v", tc.host, tc.allowRemote, got, err, tc.want)
		case tc.err != "" && (!errors.As(err, &ae) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("access(%q, remote %v) = %v; want an AddrError with %q", tc.host, tc.allowRemote, err, tc.err)
		}
		if warned := slices.ContainsFunc(logged, func(s string) bool { return strings.Contains(s, "WARNING: the API on") }); warned != tc.warned {
			t.Errorf("access(%q, remote %v): warned %v, want %v (%q)", tc.host, tc.allowRemote, warned, tc.warned, logged)
		}
	}
}

// remoteHosts: the listening host, the names given, and every address of
// this host, each with and without the port, in lower case.
func TestRemoteHosts(t *testing.T) {
	got := remoteHosts("0.0.0.0", 9100, []string{"Metrics.Example"})
	for _, want := range []string{"0.0.0.0", "0.0.0.0:9100", "metrics.example", "metrics.example:9100"} {
		if !slices.Contains(got, want) {
			t.Errorf("remoteHosts has no %q: %q", want, got)
		}
	}
	for _, a := range HostAddresses() {
		if !slices.Contains(got, strings.ToLower(a)) || !slices.Contains(got, strings.ToLower(a)+":9100") {
			t.Errorf("remoteHosts lacks this host's address %s: %q", a, got)
		}
	}
}
