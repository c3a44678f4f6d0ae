package cmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startWatchAPI runs `gracectl watch --api spec` and waits for the API.
func startWatchAPI(t *testing.T, root, rg, spec string) *started {
	t.Helper()
	w := startGracectl(t, root, "watch", "--interval", "1h", "--range", rg, "--api", spec)
	waitFor(t, "the API", 60*time.Second, func() bool {
		return strings.Contains(w.out.String(), "API listening on") && strings.Contains(w.out.String(), "Health check:")
	})
	t.Cleanup(func() { w.cmd.Process.Signal(syscall.SIGTERM); w.wait(t, 60*time.Second) })
	return w
}

type answer struct {
	code  int
	ctype string
	allow string
	body  []byte
}

func request(t *testing.T, c *http.Client, method, url, host, ctype string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
	if host != "" {
		req.Host = host
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Allow"), b}
}

func TestAPIEndpoints(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	rg := b.String()
	startWatchAPI(t, root, rg, b.Addr(0))
	base := "http://" + b.Addr(0)
	c := &http.Client{Timeout: 60 * time.Second}

	// The status endpoint is `gracectl status --json`, byte for byte.
	st := request(t, c, "GET", base+"/api/ports/status", "", "")
	cli, err := gracectlCmd(t, root, "status", "--json", "--range", rg).Output()
	if err != nil {
		t.Fatal(err)
	}
	if st.code != 200 || st.ctype != "application/json" || !bytes.Equal(st.body, cli) {
		t.Fatalf("status endpoint (%d %s):\n%s\nCLI:\n%s", st.code, st.ctype, st.body, cli)
	}
	var doc map[string]any
	if err := json.Unmarshal(st.body, &doc); err != nil || doc["total_ports"] != 10.0 {
		t.Fatalf("status document: %v %v", doc, err)
	}

	// The API port lies in the managed range, so the watchdog holds it.
	one := request(t, c, "GET", base+"/api/ports/allocations/"+b.P(0), "", "")
	if one.code != 200 || !strings.Contains(string(one.body), `"service_name": "gracectl_watchdog"`) {
		t.Fatalf("allocation %d: %d %s", b.Port(0), one.code, one.body)
	}
	svc := request(t, c, "GET", base+"/api/ports/services/gracectl_watchdog", "", "")
	if svc.code != 200 || !strings.Contains(string(svc.body), `"port": `+b.P(0)) || !strings.HasPrefix(string(svc.body), "[") {
		t.Fatalf("services/gracectl_watchdog: %d %s", svc.code, svc.body)
	}
	all := request(t, c, "GET", base+"/api/ports/allocations", "", "")
	var list []map[string]any
	if err := json.Unmarshal(all.body, &list); err != nil || all.code != 200 || len(list) != 1 {
		t.Fatalf("allocations: %d %s", all.code, all.body)
	}

	for _, tc := range []struct {
		method, path, host, ctype string
		code                      int
		allow                     string
	}{
		{"GET", "/api/ports/allocations/" + b.P(5), "", "", 404, ""},
		{"GET", "/api/ports/services/nobody", "", "", 404, ""},
		{"GET", "/api/ports/allocations/abc", "", "", 400, ""},
		{"GET", "/api/ports/allocations/70000", "", "", 400, ""},
		{"GET", "/api/nothing", "", "", 404, ""},
		{"POST", "/api/ports/status", "", "application/json", 405, "GET, HEAD"},
		{"DELETE", "/api/ports/allocations/" + b.P(0), "", "", 405, "GET, HEAD"},
		{"GET", "/api/ports/health-check", "", "", 405, "POST"},
		{"GET", "/api/ports/status", "evil.example:" + b.P(0), "", 403, ""},
		{"POST", "/api/ports/health-check", "", "text/plain", 415, ""},
		{"POST", "/api/ports/health-check", "", "application/x-www-form-urlencoded", 415, ""},
	} {
		a := request(t, c, tc.method, base+tc.path, tc.host, tc.ctype)
		var eb struct {
			Error string `json:"error"`
		}
		if a.code != tc.code || a.allow != tc.allow || a.ctype != "application/json" || json.Unmarshal(a.body, &eb) != nil || eb.Error == "" {
			t.Errorf("%s %s (host %q): %d allow=%q %s %s", tc.method, tc.path, tc.host, a.code, a.allow, a.ctype, a.body)
		}
	}
	if a := request(t, c, "GET", base+"/api/ports/status", "localhost:"+b.P(0), ""); a.code != 200 {
		t.Errorf("localhost Host refused: %d", a.code)
	}

	hc := request(t, c, "POST", base+"/api/ports/health-check", "", "application/json")
	var rep struct {
		Results []map[string]any `json:"results"`
		Active  int              `json:"active"`
	}
	if err := json.Unmarshal(hc.body, &rep); err != nil || hc.code != 200 || len(rep.Results) != 1 || rep.Active != 1 {
		t.Fatalf("health-check: %d %s", hc.code, hc.body)
	}
	wd := request(t, c, "GET", base+"/api/ports/watchdog/status", "", "")
	if wd.code != 200 || !strings.Contains(string(wd.body), `"running": true`) || !strings.Contains(string(wd.body), `"checks_performed": 2`) {
		t.Fatalf("watchdog status: %d %s", wd.code, wd.body)
	}

	// A service whose health endpoint reports counts, beside the API's own
	// allocation, which reports none.
	startGracectl(t, root, "run", "--quiet", "--range", rg, "--health-path", "/health", "--", "python3", serveScript(t))
	waitFor(t, "the service's counts", 60*time.Second, func() bool {
		request(t, c, "POST", base+"/api/ports/health-check", "", "application/json")
		a := readRegistry(t, root).Get(b.Port(1))
		return a != nil && !a.CountsAt.IsZero()
	})

	m := request(t, c, "GET", base+"/metrics", "", "")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(m.body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, m.body)
	}
	for name, want := range map[string]float64{
		"gracectl_ports_in_range": 10, "gracectl_ports_allocated": 2, "gracectl_ports_free": 8, "gracectl_build_info": 1,
	} {
		f := fams[name]
		if f == nil || len(f.Metric) != 1 {
			t.Fatalf("metric %s missing:\n%s", name, m.body)
		}
		v := f.Metric[0].GetGauge().GetValue() + f.Metric[0].GetCounter().GetValue()
		if v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if f := fams["gracectl_watchdog_cycles_total"]; f == nil || f.GetType() != dto.MetricType_COUNTER {
		t.Errorf("cycles: %v", f)
	}
	if h := fams["gracectl_watchdog_cycle_duration_seconds"]; h == nil || h.Metric[0].GetHistogram().GetSampleCount() < 2 {
		t.Errorf("cycle histogram: %v", h)
	}
	// The whole state set: every status for every port, 1 for the current.
	if f := fams["gracectl_port_health_status"]; f == nil || len(f.Metric) != 2*len(registry.Statuses) {
		t.Errorf("per-port health state set: %v", f)
	} else {
		ones := 0
		for _, mt := range f.Metric {
			ones += int(mt.GetGauge().GetValue())
		}
		if ones != 2 {
			t.Errorf("%d series are 1, want one per port", ones)
		}
	}
	// Counters, and only for the service that reports counts.
	for _, name := range []string{"gracectl_port_requests_total", "gracectl_port_errors_total"} {
		f := fams[name]
		if f == nil || f.GetType() != dto.MetricType_COUNTER || len(f.Metric) != 1 || f.Metric[0].GetLabel()[0].GetValue() != b.P(1) {
			t.Errorf("%s: %v", name, f)
		}
	}
	if f := fams["gracectl_build_info"]; f != nil && !strings.Contains(f.String(), runtime.Version()) {
		t.Errorf("build info without the Go version: %v", f)
	}
	// OpenMetrics when the scraper asks for it.
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") || !strings.HasSuffix(string(body), "# EOF\n") {
		t.Errorf("OpenMetrics: %s\n%s", resp.Header.Get("Content-Type"), body)
	}
}

func TestAPIUnixSocket(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	sock := filepath.Join(root, "api.sock")
	startWatchAPI(t, root, b.String(), "unix:"+sock)
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	a := request(t, c, "GET", "http://gracectl/api/ports/status", "", "")
	if a.code != 200 || !strings.Contains(string(a.body), `"port_range"`) {
		t.Fatalf("over the Unix socket: %d %s", a.code, a.body)
	}
}

// An API that cannot be bound is fatal: watch exits non-zero saying why.
func TestAPIBindFailureIsFatal(t *testing.T) {
	b := testenv.Ports(t, 20)
	l, err := net.Listen("tcp", b.Addr(0))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	root := t.TempDir()
	out, err := gracectlCmd(t, root, "watch", "--range", b.Sub(10, 19), "--api", b.Addr(0)).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 || !strings.Contains(string(out), "cannot serve the API on 127.0.0.1:"+b.P(0)) {
		t.Fatalf("watch with an unbindable API: %v\n%s", err, out)
	}
	out, err = gracectlCmd(t, root, "watch", "--api", "0.0.0.0:"+b.P(1)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--api-allow-remote") {
		t.Fatalf("remote API without the flag: %v\n%s", err, out)
	}
}
