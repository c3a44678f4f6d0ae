package cmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// viaProxy GETs http://HOST/PATH through the proxy listening on
// 127.0.0.1:listen, whatever HOST resolves to, and returns the status and
// body (0 when the proxy does not answer).
func viaProxy(listen int, host, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(listen))
		},
	}}
	resp, err := c.Get("http://" + host + ":" + strconv.Itoa(listen) + path)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// flakyService is a service whose /health answers 500 while the file
// it is given exists.
const flakyService = `
import http.server, os, sys
FAIL = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 500 if os.path.exists(FAIL) else 200
        self.send_response(code)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n" if code == 200 else b"no\n")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// routesFixture is what both proxies' tests share: a registry, two
// services run by gracectl (serve.py as "web", the flaky one), and a
// watchdog keeping the proxy's routes.
type routesFixture struct {
	t        *testing.T
	root     string
	listen   int
	failFile string
	watch    *started
}

func (f *routesFixture) startServices() {
	t := f.t
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	f.failFile = filepath.Join(t.TempDir(), "fail")
	script := filepath.Join(t.TempDir(), "flaky.py")
	if err := os.WriteFile(script, []byte(flakyService), 0o644); err != nil {
		t.Fatal(err)
	}
	startGracectlEnv(t, f.root, []string{"SERVE_QUIET=1"}, "run", "--service", "web", "--health-path", "/health", "--", "python3", serveScript(t))
	startGracectl(t, f.root, "run", "--service", "flaky", "--health-path", "/health", "--", "python3", script, f.failFile)
	waitFor(t, "both services to be active", 60*time.Second, func() bool {
		r := readRegistry(t, f.root)
		return len(r.OfService("web", "")) == 1 && r.OfService("web", "")[0].HealthStatus == registry.StatusActive &&
			len(r.OfService("flaky", "")) == 1 && r.OfService("flaky", "")[0].HealthStatus == registry.StatusActive
	})
}

// answers waits until host's /health answers want through the proxy,
// with a body that holds text (a proxy's empty 200 is no answer).
func (f *routesFixture) answers(host string, want int, text, what string) string {
	f.t.Helper()
	var body string
	waitFor(f.t, what, 60*time.Second, func() bool {
		var code int
		code, body = viaProxy(f.listen, host, "/health")
		return code == want && strings.Contains(body, text)
	})
	return body
}

// cycles counts the watchdog's cycles so far.
func (f *routesFixture) cycles() int { return strings.Count(f.watch.out.String(), "Health check:") }

// checkCommon is what both proxies must do: names route, unknown names are
// 404, a kill -9 stops the name within a second, a failing health check
// withdraws it within two cycles (503 meanwhile) and its recovery brings it
// back, `routes` and `env` show the names.
func (f *routesFixture) checkCommon() {
	t := f.t
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watch's output:\n%s", f.watch.out)
		}
	})
	f.answers("web.localhost", 200, `"status": "ok"`, "web.localhost to answer through the proxy with serve.py's health")
	f.answers("flaky.localhost", 200, "ok", "flaky.localhost to answer")
	if code, body := viaProxy(f.listen, "nobody.localhost", "/"); code != 404 || !strings.Contains(body, "gracectl") {
		t.Errorf("an unknown name answered %d %q, want gracectl's 404", code, body)
	}

	// routes and env name them.
	out, err := gracectlCmd(t, f.root, "routes").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "web.localhost") || !strings.Contains(string(out), "routed") {
		t.Errorf("gracectl routes: %v\n%s", err, out)
	}
	out, err = gracectlCmd(t, f.root, "status").Output()
	if err != nil || !strings.Contains(string(out), "\nRoutes: ") {
		t.Errorf("gracectl status does not say where the routes are: %v\n%s", err, out)
	}
	out, err = gracectlCmd(t, f.root, "routes", "--json").Output()
	var tab struct {
		Routes []struct {
			Host, URL, State string
			Port             int
		}
	}
	if err != nil || json.Unmarshal(out, &tab) != nil || len(tab.Routes) != 2 {
		t.Errorf("gracectl routes --json: %v\n%s", err, out)
	}
	wantURL := "http://web.localhost:" + strconv.Itoa(f.listen)
	out, err = gracectlCmd(t, f.root, "env").Output()
	if err != nil || !strings.Contains(string(out), "WEB_URL="+wantURL+"\n") {
		t.Errorf("gracectl env: %v\n%s", err, out)
	}

	// A failing health check: withdrawn within two cycles, 503 meanwhile.
	before := f.cycles()
	if err := os.WriteFile(f.failFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.answers("flaky.localhost", 503, "gracectl", "flaky.localhost to answer gracectl's 503 once its health fails")
	if n := f.cycles() - before; n > 2 {
		t.Errorf("the route was withdrawn after %d cycles, want 2 at most", n)
	}
	os.Remove(f.failFile)
	waitFor(t, "flaky.localhost to be routed again", 60*time.Second, func() bool {
		return strings.Count(f.watch.out.String(), "Routes: flaky.localhost -> ") == 2
	})
	f.answers("flaky.localhost", 200, "ok", "flaky.localhost to come back once healthy")

	// kill -9 of the service: no 200 within a second.
	r := readRegistry(t, f.root)
	pid := int(r.OfService("web", "")[0].PID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for {
		code, _ := viaProxy(f.listen, "web.localhost", "/health")
		if code != 200 {
			if code == 502 || code == 0 {
				t.Errorf("the dead service's name answered %d, want 503 or 404", code)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(killed)
	t.Logf("kill -9 of the service to a name that no longer answers 200: %s", took)
	if took > testenv.Scale(time.Second) {
		t.Errorf("the name answered 200 for %s after its service was killed, want less than 1s", took)
	}
}

// TestRoutesCaddy runs Debian's caddy with its admin API on a test port
// and a server of its own on the routes' address holding a route added by
// hand and a catch-all (a Caddyfile site without a host), and a watchdog
// with --routes caddy://.
// startCaddy runs caddy with the configuration file, its autosave and data
// in the file's folder, and waits for its admin API at admin.
func startCaddy(t *testing.T, caddy, file, admin string) *started {
	t.Helper()
	dir := filepath.Dir(file)
	c := testenv.Command(t, caddy, "run", "--config", file)
	c.Env = append(c.Env, "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	proc := startCmd(t, c)
	waitFor(t, "caddy's admin API", 60*time.Second, func() bool {
		resp, err := http.Get("http://" + admin + "/config/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return proc
}

func TestRoutesCaddy(t *testing.T) {
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy is not installed (apt-get install caddy): the Caddy routes test is skipped")
	}
	b := testenv.Ports(t, 3)
	admin, listen, apiAddr := b.Addr(0), b.Port(1), b.Addr(2)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"admin": {"listen": %q},
 "apps": {"http": {"servers": {"mine": {"listen": [":%d"], "automatic_https": {"disable": true},
  "routes": [{"match": [{"host": ["hand.test"]}], "handle": [{"handler": "static_response", "body": "by hand"}]},
   {"handle": [{"handler": "static_response", "body": "the site"}]}]}}}}}`, admin, listen)
	file := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := startCaddy(t, caddy, file, admin)
	handRoute := func() {
		t.Helper()
		if code, body := viaProxy(listen, "hand.test", "/"); code != 200 || body != "by hand" {
			t.Errorf("the route added by hand answered %d %q", code, body)
		}
	}
	handRoute()

	f := &routesFixture{t: t, root: t.TempDir(), listen: listen}
	f.startServices()
	f.watch = startGracectl(t, f.root, "watch", "--interval", "1s", "--routes", "caddy://"+admin, "--routes-listen", strconv.Itoa(listen),
		"--api", apiAddr)
	f.checkCommon()
	handRoute()

	// The API serves the table, and the dashboard links the names with it.
	body := httpGet(t, "http://"+apiAddr+"/api/routes")
	if !strings.Contains(body, `"host": "flaky.localhost"`) || !strings.Contains(body, `"url": "http://flaky.localhost:`+strconv.Itoa(listen)+`"`) {
		t.Errorf("GET /api/routes:\n%s", body)
	}
	flaky := readRegistry(t, f.root).OfService("flaky", "")[0].Port
	t.Run("dashboard", func(t *testing.T) {
		ctx := openBrowser(t, 1200, 800)
		load(t, ctx, &dash{api: apiAddr})
		until(t, ctx, "flaky's name to link its URL", fmt.Sprintf(
			`(document.querySelector("#port-%d td[data-label=Service] a") || {}).href === "http://flaky.localhost:%d/"`, flaky, listen))
	})

	// Caddy restarted from its file (without gracectl's routes): back
	// within a cycle.
	proc.cmd.Process.Signal(syscall.SIGTERM)
	proc.wait(t, 60*time.Second)
	proc = startCaddy(t, caddy, file, admin)
	before := f.cycles()
	f.answers("flaky.localhost", 200, "ok", "the routes to be back after caddy restarted")
	if n := f.cycles() - before; n > 1 {
		t.Errorf("the routes came back after %d cycles, want 1 at most", n)
	}
	handRoute()

	// The watchdog stops: gracectl's route goes, the hand-made one stays.
	f.watch.cmd.Process.Signal(syscall.SIGTERM)
	f.watch.wait(t, 60*time.Second)
	if code, body := viaProxy(listen, "flaky.localhost", "/health"); body == "ok\n" {
		t.Errorf("flaky.localhost still reaches the service (%d) after the watchdog stopped", code)
	}
	handRoute()
	resp, err := http.Get("http://" + admin + "/id/gracectl_routes")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET /id/gracectl_routes after the watchdog stopped: %d, want 404", resp.StatusCode)
		}
	}
}

// startNginx starts Debian's nginx in a prefix of its own, with an http block that includes gracectl's file. Its
// server_names_hash_bucket_size is small, so a long name makes nginx
// refuse the file (as nginx -t does on a real machine).
func startNginx(t *testing.T) (include, test, reload string) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed (apt-get install nginx): the nginx routes test is skipped")
	}
	dir := t.TempDir()
	include = filepath.Join(dir, "gracectl-routes.conf")
	conf := filepath.Join(dir, "nginx.conf")
	pid := filepath.Join(dir, "nginx.pid")
	var temps strings.Builder
	for _, k := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s;\n", k, filepath.Join(dir, k))
	}
	c := fmt.Sprintf(`error_log %s;
events {}
http {
    access_log off;
    server_names_hash_bucket_size 32;
%s    include %s;
}
`, filepath.Join(dir, "error.log"), temps.String(), include)
	if err := os.WriteFile(conf, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(include, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("%s -p %s -c %s -g 'pid %s;'", nginx, dir, conf, pid)
	cmd := testenv.Command(t, nginx, "-p", dir, "-c", conf, "-g", "daemon off; pid "+pid+";")
	startCmd(t, cmd)
	waitFor(t, "nginx to write its pid file", 60*time.Second, func() bool {
		_, err := os.Stat(pid)
		return err == nil
	})
	return include, base + " -t -q", base + " -s reload"
}

// TestRoutesNginx: the same through nginx and an include file, and a file
// nginx refuses left out, with one line.
func TestRoutesNginx(t *testing.T) {
	b := testenv.Ports(t, 1)
	listen := b.Port(0)
	include, test, reload := startNginx(t)
	f := &routesFixture{t: t, root: t.TempDir(), listen: listen}
	f.startServices()
	f.watch = startGracectl(t, f.root, "watch", "--interval", "1s", "--routes", "nginx:"+include,
		"--routes-listen", strconv.Itoa(listen), "--routes-test", test, "--routes-reload", reload)
	f.checkCommon()

	// A name nginx refuses (longer than its server_names_hash_bucket_size):
	// the file before it stays, and one line says so.
	long := strings.Repeat("x", 60)
	if out, err := gracectlCmd(t, f.root, "allocate", "--service", long, "--pid", strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		t.Fatalf("allocate: %v\n%s", err, out)
	}
	waitFor(t, "the refusal to be logged", 60*time.Second, func() bool {
		return strings.Contains(f.watch.out.String(), "nginx refused the routes")
	})
	before := f.cycles()
	waitFor(t, "two more cycles", 60*time.Second, func() bool { return f.cycles() >= before+2 })
	if n := strings.Count(f.watch.out.String(), "nginx refused the routes"); n != 1 {
		t.Errorf("the refusal was logged %d times, want once", n)
	}
	now, _ := os.ReadFile(include)
	if strings.Contains(string(now), long) || !strings.Contains(string(now), "flaky.localhost") {
		t.Errorf("the file nginx refused was left in place, or the names it took before are gone:\n%s", now)
	}
	// A withdrawal still reaches nginx while that name is left out.
	if err := os.WriteFile(f.failFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.answers("flaky.localhost", 503, "gracectl", "flaky.localhost to be withdrawn while a refused name is left out")
	os.Remove(f.failFile)
	f.answers("flaky.localhost", 200, "ok", "flaky.localhost to be back while a refused name is left out")
	t.Logf("watch's output:\n%s", f.watch.out)
}

// TestRoutesCaddyDownAndOwnServer: with no server of Caddy's on the
// address, gracectl makes its own (and removes it when it stops); a Caddy
// that goes away is one log line however long it stays away, and the
// routes are back when it returns.
func TestRoutesCaddyDownAndOwnServer(t *testing.T) {
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy is not installed (apt-get install caddy): the Caddy routes test is skipped")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	b := testenv.Ports(t, 2)
	admin, listen := b.Addr(0), b.Port(1)
	dir := t.TempDir()
	file := filepath.Join(dir, "caddy.json")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`{"admin": {"listen": %q}}`, admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	proc := startCaddy(t, caddy, file, admin)
	getConfig := func(path string) (int, string) {
		resp, err := http.Get("http://" + admin + path)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	f := &routesFixture{t: t, root: t.TempDir(), listen: listen}
	startGracectlEnv(t, f.root, []string{"SERVE_QUIET=1"}, "run", "--service", "solo", "--health-path", "/health", "--", "python3", serveScript(t))
	f.watch = startGracectl(t, f.root, "watch", "--interval", "1s", "--routes", "caddy://"+admin, "--routes-listen", strconv.Itoa(listen))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("watch's output:\n%s", f.watch.out)
		}
	})
	f.answers("solo.localhost", 200, `"status": "ok"`, "solo.localhost to answer")
	// A service whose name has no DNS label: skipped, with one line.
	if out, err := gracectlCmd(t, f.root, "allocate", "--service", "☃☃", "--pid", strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
		t.Fatalf("allocate: %v\n%s", err, out)
	}
	waitFor(t, "the line about the service without a name", 60*time.Second, func() bool {
		return strings.Contains(f.watch.out.String(), "(☃☃) has no route: the service name has no DNS label")
	})
	if code, body := getConfig("/id/" + "gracectl_server"); code != 200 || !strings.Contains(body, `"disable":true`) {
		t.Errorf("gracectl's server: %d %s", code, body)
	}

	// Caddy goes away for three cycles: one line.
	proc.cmd.Process.Signal(syscall.SIGTERM)
	proc.wait(t, 60*time.Second)
	before := f.cycles()
	waitFor(t, "three cycles without caddy", 60*time.Second, func() bool { return f.cycles() >= before+3 })
	if n := strings.Count(f.watch.out.String(), "does not answer"); n != 1 {
		t.Errorf("caddy being away was logged %d times, want once", n)
	}
	if n := strings.Count(f.watch.out.String(), "has no route"); n != 1 {
		t.Errorf("the service without a name was logged %d times, want once", n)
	}
	out, _ := gracectlCmd(t, f.root, "routes").CombinedOutput()
	if !strings.Contains(string(out), "gracectl: note: port") || !strings.Contains(string(out), "has no name") {
		t.Errorf("gracectl routes does not name the service without a name:\n%s", out)
	}
	startCaddy(t, caddy, file, admin)
	f.answers("solo.localhost", 200, `"status": "ok"`, "solo.localhost to answer once caddy is back")
	waitFor(t, "the line saying caddy follows again", 60*time.Second, func() bool {
		return strings.Contains(f.watch.out.String(), "follows the registry again: 1 routed")
	})

	// Stopped: gracectl's server is gone.
	f.watch.cmd.Process.Signal(syscall.SIGTERM)
	f.watch.wait(t, 60*time.Second)
	if code, body := getConfig("/config/apps/http/servers"); code != 200 || strings.Contains(body, "gracectl") {
		t.Errorf("after the watchdog stopped, Caddy's servers are: %d %s", code, body)
	}
}
