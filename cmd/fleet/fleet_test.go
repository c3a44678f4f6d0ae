package fleet

import (
	"errors"
	"strings"
	"testing"

	"github.com/gracectl/gracectl/cmd/fleet/etcd"
)

func TestValidateHostID(t *testing.T) {
	for _, tc := range []struct {
		id, err string
	}{
		{"h1", ""},
		{"4f2a9c1e0b7d4e3f9a8b7c6d5e4f3a2b", ""}, // a machine-id
		{"web-01.example.com", ""},
		{"a_b", ""},
		{strings.Repeat("x", 64), ""},
		{"", "cannot be empty"},
		{strings.Repeat("x", 65), "longer than 64"},
		{"evil/ports/1", `has "/"`},
		{"a b", `has " "`},
		{"tab\there", `has "\t"`},
		{"esc\x1b[31m", `has "\x1b"`},
		{"café", `has "é"`},
		{".hidden", "must begin with a letter or a digit"},
		{"-x", "must begin with a letter or a digit"},
		{"a:1", `has ":"`},
	} {
		err := ValidateHostID(tc.id)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ValidateHostID(%q) = %v, want %q", tc.id, err, tc.err)
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		id   string
		port int
		ok   bool
	}{
		{"/gracectl/v1/hosts/h1", "h1", 0, true},
		{"/gracectl/v1/hosts/h1/ports/8000", "h1", 8000, true},
		{"/gracectl/v1/hosts/h1/ports/65535", "h1", 65535, true},
		{"/gracectl/v1/hosts/h1/ports/08000", "", 0, false},
		{"/gracectl/v1/hosts/h1/ports/+8000", "", 0, false},
		{"/gracectl/v1/hosts/h1/ports/0", "", 0, false},
		{"/gracectl/v1/hosts/h1/ports/65536", "", 0, false},
		{"/gracectl/v1/hosts/h1/ports/", "", 0, false},
		{"/gracectl/v1/hosts/h1/ports/80/ports/81", "", 0, false},
		{"/gracectl/v1/hosts/h1/", "", 0, false},
		{"/gracectl/v1/hosts/h1/x/ports/80", "", 0, false},
		{"/gracectl/v1/hosts/", "", 0, false},
		{"/gracectl/v1/hosts//ports/80", "", 0, false},
		{"/gracectl/v1/claims/h1", "", 0, false},
	} {
		id, port, err := ParseKey(tc.key)
		if (err == nil) != tc.ok || id != tc.id || port != tc.port {
			t.Errorf("ParseKey(%q) = %q, %d, %v", tc.key, id, port, err)
		}
	}
}

// FuzzParseKey: whatever a key holds, what parses is a valid host id and
// port, and writing them back gives the key.
func FuzzParseKey(f *testing.F) {
	for _, k := range []string{"/gracectl/v1/hosts/h1", "/gracectl/v1/hosts/h1/ports/8000", "/gracectl/v1/hosts/a/ports/01", "/gracectl/v1/hosts/é"} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, key string) {
		id, port, err := ParseKey(key)
		if err != nil {
			return
		}
		if ValidateHostID(id) != nil {
			t.Fatalf("%q parsed to an invalid host id %q", key, id)
		}
		back := HostKey(id)
		if port != 0 {
			back = PortKey(id, port)
		}
		if back != key {
			t.Fatalf("%q parsed to %q %d, which is the key %q", key, id, port, back)
		}
	})
}

func kv(key, value string) etcd.KeyValue {
	return etcd.KeyValue{Key: []byte(key), Value: []byte(value)}
}

func record(id, hostname string) string {
	return `{"host_id":"` + id + `","hostname":"` + hostname + `","port_range":{"start":8000,"end":8009},"watchdog_pid":1,"version":"v","published":"2026-01-01T00:00:00Z"}`
}

func allocation(port, service string) string {
	return `{"port":` + port + `,"service_name":"` + service + `","started_by":"x","purpose":"","pid":null,"allocated_at":"2026-01-01T00:00:00Z","last_health_check":null,"health_status":"active","request_count":0,"error_count":0}`
}

// Three hosts named "vm" (hosts that share a host name), a service on two
// of them, and keys that do not parse.
func testView() *View {
	return ViewOf([]etcd.KeyValue{
		kv(HostKey("a"), record("a", "vm")), kv(HostKey("b"), record("b", "vm")), kv(HostKey("c"), record("c", "vm")),
		kv(HostKey("d"), record("d", "db-host")),
		kv(PortKey("a", 8000), allocation("8000", "web")), kv(PortKey("b", 8001), allocation("8001", "web")),
		kv(PortKey("b", 8002), allocation("8002", "api")), kv(PortKey("d", 8003), allocation("8003", "db")),
		kv(PortKey("e", 8004), allocation("8004", "orphan")), // no host record
		kv(PortKey("c", 8005), allocation("8006", "liar")),   // the allocation of another port
		kv(HostKey("f"), record("a", "vm")),                  // another host's record
	})
}

func TestViewOf(t *testing.T) {
	v := testView()
	var ids []string
	for _, h := range v.Hosts {
		ids = append(ids, h.Host.ID)
	}
	if strings.Join(ids, " ") != "a b c d" || v.Allocated != 4 || len(v.Warnings) != 3 {
		t.Errorf("hosts %v, allocated %d, warnings %q", ids, v.Allocated, v.Warnings)
	}
}

func TestFindHost(t *testing.T) {
	v := testView()
	for name, want := range map[string]string{"b": "b", "db-host": "d", "vm": `3 hosts of the fleet are named "vm": a, b, c; name one by its host id`, "x": `no host "x" in the fleet`} {
		h, err := v.FindHost(name)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = h.Host.ID
		}
		if got != want {
			t.Errorf("FindHost(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestEnv(t *testing.T) {
	v := testView()
	vars, err := v.Env([]string{"api", "db"}, "")
	if err != nil || len(vars) != 6 || vars["API_HOST"] != "vm" || vars["API_HOST_ID"] != "b" || vars["API_PORT"] != 8002 || vars["DB_HOST"] != "db-host" {
		t.Errorf("env api db: %v %v", vars, err)
	}
	var several *SeveralHostsError
	if _, err := v.Env(nil, ""); !errors.As(err, &several) || err.Error() != `services run on several hosts of the fleet: "web" on a, b; pick one with --host` {
		t.Errorf("env of every service: %v", err)
	}
	if vars, err := v.Env([]string{"web"}, "b"); err != nil || vars["WEB_HOST_ID"] != "b" || vars["WEB_PORT"] != 8001 {
		t.Errorf("env web --host b: %v %v", vars, err)
	}
	if _, err := v.Env([]string{"db"}, "a"); err == nil || err.Error() != `service "db" holds no port on a` {
		t.Errorf("env db --host a: %v", err)
	}
	if _, err := v.Env([]string{"web"}, "vm"); err == nil || !strings.Contains(err.Error(), "name one by its host id") {
		t.Errorf("env web --host vm: %v", err)
	}
}

// FuzzViewOf: whatever etcd holds under hosts/, the view has only hosts of
// valid ids, each allocation under the host and port its key names, and a
// warning for every key it did not take.
func FuzzViewOf(f *testing.F) {
	f.Add(HostKey("a"), record("a", "vm"), PortKey("a", 8000), allocation("8000", "web"))
	f.Add(HostKey("a/ports/1"), record("a", "vm"), PortKey("a", 8001), allocation("8000", "web"))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		v := ViewOf([]etcd.KeyValue{kv(k1, v1), kv(k2, v2)})
		taken := 0
		for _, h := range v.Hosts {
			if ValidateHostID(h.Host.ID) != nil {
				t.Fatalf("host %q in the view", h.Host.ID)
			}
			taken++
			for _, a := range h.Allocations {
				if key := PortKey(h.Host.ID, a.Port); key != k1 && key != k2 {
					t.Fatalf("port %d of %s came from no key of its own", a.Port, h.Host.ID)
				}
				taken++
			}
		}
		if taken+len(v.Warnings) != 2 {
			t.Fatalf("%d taken, %d warnings, of 2 keys", taken, len(v.Warnings))
		}
	})
}

// ParseEndpoints: etcd://HOST:PORT[,HOST:PORT...], the scheme optional and
// allowed on each, IPv6 in brackets, blanks skipped; a bad endpoint or
// none at all is an error that says what to give.
func TestParseEndpoints(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want []string
		err  string
	}{
		{spec: "etcd://127.0.0.1:2379", want: []string{"127.0.0.1:2379"}},
		{spec: "127.0.0.1:2379", want: []string{"127.0.0.1:2379"}},
		{spec: " etcd://a:1, etcd://b:2 ,c:3,", want: []string{"a:1", "b:2", "c:3"}},
		{spec: "etcd://[::1]:2379", want: []string{"[::1]:2379"}},
		{spec: "", err: "no etcd endpoint given"},
		{spec: "etcd://", err: "no etcd endpoint given"},
		{spec: " , ", err: "no etcd endpoint given"},
		{spec: "etcd://host", err: `fleet endpoint "host": want HOST:PORT`},
		{spec: "a:1,:2379", err: `fleet endpoint ":2379"`},
		{spec: "a:0", err: `fleet endpoint "a:0"`},
		{spec: "a:70000", err: `fleet endpoint "a:70000"`},
		{spec: "::1:2379", err: `fleet endpoint "::1:2379"`},
		{spec: "http://a:2379", err: `fleet endpoint "http://a:2379"`},
	} {
		got, err := ParseEndpoints(tc.spec)
		switch {
		case tc.err == "" && (err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ")):
			t.Errorf("ParseEndpoints(%q) = %q, %v; want %q", tc.spec, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseEndpoints(%q) = %q, %v; want an error with %q", tc.spec, got, err, tc.err)
		}
	}
}
