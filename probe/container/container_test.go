package container

import (
	"bytes"
	"io"
	"os"
	"slices"
	"testing"
)

func TestParseRun(t *testing.T) {
	rows := []struct {
		argv          []string
		ok            bool
		engine        string
		at            int
		cidfile, name string
	}{
		{argv: []string{"docker", "run", "--rm", "-p", "8000:80", "nginx"}, ok: true, engine: "docker", at: 2},
		{argv: []string{"/usr/bin/docker", "container", "run", "nginx"}, ok: true, engine: "docker", at: 3},
		{argv: []string{"podman", "run", "--name", "web", "nginx"}, ok: true, engine: "podman", at: 2, name: "web"},
		{argv: []string{"docker", "--context", "prod", "-D", "run", "--name=web", "nginx"}, ok: true, engine: "docker", at: 5, name: "web"},
		{argv: []string{"podman", "--root", "/x", "--log-level", "debug", "run", "--cidfile", "/tmp/c", "img"}, ok: true, engine: "podman", at: 6, cidfile: "/tmp/c"},
		{argv: []string{"docker", "run", "--cidfile=/tmp/c", "img"}, ok: true, engine: "docker", at: 2, cidfile: "/tmp/c"},
		{argv: []string{"docker", "run", "img", "--", "--name", "inner"}, ok: true, engine: "docker", at: 2},
		{argv: []string{"docker", "ps"}},
		{argv: []string{"docker", "container", "ls"}},
		{argv: []string{"docker", "--host", "run"}}, // "run" is --host's value
		{argv: []string{"docker"}},
		{argv: []string{"python3", "run", "x"}},
		{argv: []string{"dockerd", "run"}},
	}
	for _, r := range rows {
		rc, ok := ParseRun(r.argv)
		if ok != r.ok || rc.Engine != r.engine || rc.At != r.at || rc.CIDFile != r.cidfile || rc.Name != r.name {
			t.Errorf("ParseRun(%q) = %+v, %v; want engine %q at %d cidfile %q name %q, %v", r.argv, rc, ok, r.engine, r.at, r.cidfile, r.name, r.ok)
		}
	}
}

func TestIsProxy(t *testing.T) {
	for _, n := range []string{"docker-proxy", "dockerd", "rootlesskit", "conmon", "rootlessport"} {
		if !IsProxy(n) {
			t.Errorf("%s is an engine's proxy", n)
		}
	}
	for _, n := range []string{"python3", "docker", "podman", "", "busybox"} {
		if IsProxy(n) {
			t.Errorf("%s is not an engine's proxy", n)
		}
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The engines' own answers, as Docker 20.10 and Podman 4.3 gave them.
func TestParseEngineAnswers(t *testing.T) {
	ports, err := parseList(readTestdata(t, "docker-list.json"))
	if err != nil {
		t.Fatal(err)
	}
	if in, ok := ports[28610]; !ok || in.Name != "cap1" || in.Image != "gracectl-busybox:test" || len(in.ID) != 64 {
		t.Errorf("docker list: %+v", ports)
	}
	if _, ok := ports[28611]; ok {
		t.Error("a UDP port was taken for a TCP one")
	}
	ports, err = parseList(readTestdata(t, "podman-list.json"))
	if err != nil {
		t.Fatal(err)
	}
	if in, ok := ports[28612]; !ok || in.Name != "pcap" || in.Image != "localhost/gracectl-busybox:test" {
		t.Errorf("podman list: %+v", ports)
	}
	for _, f := range []string{"docker-inspect.json", "podman-inspect.json"} {
		st, err := parseInspect(readTestdata(t, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !st.Exists || !st.Running || st.PID <= 0 || len(st.ID) != 64 || st.Name == "" || st.Image == "" || len(st.Ports) != 1 {
			t.Errorf("%s: %+v", f, st)
		}
	}
	if _, err := parseInspect([]byte(`{"Id":"../../x"}`)); err == nil {
		t.Error("an ID that is no ID was taken")
	}
	st, err := parseInspect([]byte(`{"Id":"abc","Name":"/w\u001b[31m","State":{"Running":true,"Restarting":true,"Pid":5}}`))
	if err != nil || st.Running || !st.Restarting || st.PID != 0 || st.Name != "w[31m" {
		t.Errorf("a restarting container: %+v, %v", st, err)
	}
}

func TestDecodeEvents(t *testing.T) {
	for _, f := range []string{"docker-events.jsonl", "podman-events.jsonl"} {
		var got []Event
		err := decodeEvents(bytes.NewReader(readTestdata(t, f)), func(ev Event) { got = append(got, ev) })
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%s: end of stream: %v", f, err)
		}
		if len(got) == 0 || !slices.ContainsFunc(got, func(e Event) bool { return e.Action == "start" && len(e.ID) == 64 }) {
			t.Errorf("%s: %+v", f, got)
		}
	}
	var got []Event
	_ = decodeEvents(bytes.NewReader([]byte(`{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"abc"}}{"Type":"network","Action":"connect","Actor":{"ID":"n"}}`)),
		func(ev Event) { got = append(got, ev) })
	if len(got) != 1 || got[0] != (Event{ID: "abc", Action: "health_status"}) {
		t.Errorf("got %+v", got)
	}
}

func TestDescribe(t *testing.T) {
	in := Info{ID: "0123456789abcdef0123", Image: "nginx"}
	if in.Label() != "0123456789ab" || in.Describe() != "container 0123456789ab (nginx)" {
		t.Errorf("%q %q", in.Label(), in.Describe())
	}
	in.Name = "web"
	if in.Describe() != "container web (nginx)" {
		t.Error(in.Describe())
	}
}

func FuzzParseList(f *testing.F) {
	f.Add(readTestdataF(f, "docker-list.json"))
	f.Add(readTestdataF(f, "podman-list.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ports, err := parseList(b)
		for p, in := range ports {
			if p <= 0 || p > 65535 || !validID(in.ID) {
				t.Fatalf("port %d: %+v", p, in)
			}
		}
		_ = err
	})
}

func FuzzParseInspect(f *testing.F) {
	f.Add(readTestdataF(f, "docker-inspect.json"))
	f.Add(readTestdataF(f, "podman-inspect.json"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseInspect(b)
		if err != nil {
			return
		}
		if !validID(st.ID) || st.PID < 0 || (st.PID > 0 && !st.Running) {
			t.Fatalf("%+v", st)
		}
		for _, p := range st.Ports {
			if p <= 0 || p > 65535 {
				t.Fatalf("port %d", p)
			}
		}
	})
}

func FuzzDecodeEvents(f *testing.F) {
	f.Add(readTestdataF(f, "docker-events.jsonl"))
	f.Add(readTestdataF(f, "podman-events.jsonl"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeEvents(bytes.NewReader(b), func(ev Event) {
			if !validID(ev.ID) {
				t.Fatalf("%+v", ev)
			}
		})
	})
}

func FuzzParseRun(f *testing.F) {
	f.Add("docker\x00run\x00--name\x00web\x00nginx")
	f.Add("podman\x00--root\x00/x\x00container\x00run\x00--cidfile=/c\x00img")
	f.Fuzz(func(t *testing.T, s string) {
		argv := bytes.Split([]byte(s), []byte{0})
		args := make([]string, len(argv))
		for i, a := range argv {
			args[i] = string(a)
		}
		rc, ok := ParseRun(args)
		if ok && (rc.At < 2 || rc.At > len(args) || args[rc.At-1] != "run") {
			t.Fatalf("%q: %+v", args, rc)
		}
	})
}

func readTestdataF(f *testing.F, name string) []byte {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
