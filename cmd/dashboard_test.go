package cmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gracectl/gracectl/registry"
	"github.com/gracectl/gracectl/registry/testenv"
)

// The dashboard in a real browser: headless Chromium (Debian's chromium)
// through the DevTools protocol. `make test` skips these when Chromium is
// absent; `make test-browser` installs it first. Each test runs a watchdog
// over a range of its own, with the API on a port outside it.

// browserTZ is the browser's time zone: one whose offset is not whole
// hours, so that a time shown in UTC instead of local time shows.
const browserTZ = "Asia/Kathmandu" // UTC+5:45, no daylight saving

// openBrowser starts headless Chromium at the given window size, or skips.
func openBrowser(t *testing.T, width, height int) context.Context {
	t.Helper()
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		t.Skip("no Chromium here (apt-get install chromium, or make test-browser)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(width, height), chromedp.Env("TZ="+browserTZ, "LANG=en_US.UTF-8"))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	// The first run starts the browser, without a deadline of its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, testenv.Scale(3*time.Minute))
	t.Cleanup(cancel)
	return ctx
}

// dash is a watchdog with its API, over a range of its own.
type dash struct {
	root string
	rg   testenv.Block
	api  string // host:port
	w    *started
}

// startDash runs `gracectl watch --api` over rg, with the API on a port of
// its own outside the range.
func startDash(t *testing.T, rg testenv.Block) *dash {
	t.Helper()
	d := &dash{root: t.TempDir(), rg: rg, api: testenv.Ports(t, 1).Addr(0)}
	d.start(t)
	return d
}

func (d *dash) start(t *testing.T) {
	t.Helper()
	d.w = startWatchAPI(t, d.root, d.rg.String(), d.api)
}

// stop stops the watchdog and waits for it to exit.
func (d *dash) stop(t *testing.T) {
	t.Helper()
	d.w.cmd.Process.Signal(syscall.SIGTERM)
	d.w.wait(t, 60*time.Second)
}

func (d *dash) url() string { return "http://" + d.api + "/" }

// gracectl runs a gracectl command over the dashboard's registry and range
// and returns its output.
func (d *dash) gracectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := gracectlCmd(t, d.root, append(args, "--range", d.rg.String())...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("gracectl %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// check runs a watchdog cycle now.
func (d *dash) check(t *testing.T) {
	t.Helper()
	resp, err := http.Post("http://"+d.api+"/api/ports/health-check", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// cycleUntil runs cycles until the allocation of port has the status.
func (d *dash) cycleUntil(t *testing.T, port int, status string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("port %d to be %s", port, status), 120*time.Second, func() bool {
		d.check(t)
		a := readRegistry(t, d.root).Get(port)
		return a != nil && a.HealthStatus == status
	})
}

// background starts a process the test ends; it is not gracectl's.
func background(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	c := testenv.Command(t, name, args...)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { testenv.KillGroup(c.Process.Pid); c.Wait() })
	return c
}

// httpServer serves nothing in particular on port, as an unrelated process.
func httpServer(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	c := background(t, "python3", "-m", "http.server", strconv.Itoa(port), "--bind", "127.0.0.1")
	waitFor(t, fmt.Sprintf("a listener on %d", port), 60*time.Second, func() bool { return probeListening(port) })
	return c
}

// orphan makes an allocation of service on port whose owner is gone while
// another process listens on it, and returns the two pids.
func (d *dash) orphan(t *testing.T, service string, port int) (owner, listener int) {
	t.Helper()
	d.gracectl(t, "allocate", "--service", service, "--preferred", strconv.Itoa(port), "--purpose", "background jobs")
	sleeper := background(t, "sleep", "600")
	d.gracectl(t, "register", strconv.Itoa(port), "--pid", strconv.Itoa(sleeper.Process.Pid), "--service", service)
	l := httpServer(t, port)
	syscall.Kill(-sleeper.Process.Pid, syscall.SIGKILL)
	sleeper.Wait()
	d.cycleUntil(t, port, registry.StatusOrphaned)
	return sleeper.Process.Pid, l.Process.Pid
}

// run starts `gracectl run` for a service on port and waits until it is
// active (or, with a failing health path, unhealthy).
func (d *dash) run(t *testing.T, service string, port int, healthPath string, command ...string) {
	t.Helper()
	args := []string{"run", "--quiet", "--service", service, "--preferred", strconv.Itoa(port), "--range", d.rg.String()}
	if healthPath != "" {
		args = append(args, "--health-path", healthPath)
	}
	startGracectl(t, d.root, append(append(args, "--"), command...)...)
	waitFor(t, service+" listening", 60*time.Second, func() bool { return probeListening(port) })
}

// load opens the page and waits for the stream to be live and the map
// drawn.
func load(t *testing.T, ctx context.Context, d *dash) {
	t.Helper()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(d.url()),
		chromedp.Poll[chromedp.Void](`document.getElementById("conn").textContent === "live" && document.querySelectorAll("#map .cell").length > 0`),
	); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
}

// js evaluates expression on the page.
func js[T any](t *testing.T, ctx context.Context, expression string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression))
	if err != nil {
		t.Fatalf("%s: %v", expression, err)
	}
	return v
}

// until waits for a JavaScript condition on the page.
func until(t *testing.T, ctx context.Context, what, condition string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](condition)); err != nil {
		t.Fatalf("waiting for %s: %v\nevents: %s", what, err, js[string](t, ctx, `document.getElementById("events").innerText`))
	}
}

// A page opened on a registry with no history says "none yet"; one opened
// later shows the last 50 events at once, oldest first, in local time,
// events made before the page included; the title names the host and the
// issues.
func TestDashboardBacklogOnLoad(t *testing.T) {
	ctx := openBrowser(t, 1280, 900)
	d := startDash(t, testPorts(t))
	load(t, ctx, d)
	if got := js[string](t, ctx, `document.getElementById("events").innerText.trim()`); got != "none yet" {
		t.Fatalf("a new registry's events: %q", got)
	}
	host, _ := os.Hostname()
	if title := js[string](t, ctx, `document.title`); !strings.Contains(title, host) || !strings.Contains(title, "no issues") {
		t.Fatalf("title %q", title)
	}
	if h := js[string](t, ctx, `document.getElementById("host").textContent`); h != host {
		t.Fatalf("header names %q, not the host %q", h, host)
	}
	// 30 allocations and releases (60 events), made while no page is open.
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("job%02d", i)
		d.gracectl(t, "allocate", "--service", name)
		d.gracectl(t, "release", "--service", name)
	}
	d.gracectl(t, "allocate", "--service", "last")
	load(t, ctx, d)
	until(t, ctx, "the backlog", `document.querySelectorAll("#events li[data-action]").length === 50`)
	texts := js[[]string](t, ctx, `[...document.querySelectorAll("#events li[data-action]")].map(li => li.innerText)`)
	// The last 50 of 61: from job05's release on, the newest last.
	if !strings.Contains(texts[0], "released port") || !strings.Contains(texts[0], "job05") || !strings.Contains(texts[49], "to last") {
		t.Fatalf("the backlog, first and last: %q ... %q", texts[0], texts[49])
	}
	// The time shown is the browser's local time.
	var ev struct {
		Timestamp registry.Time `json:"timestamp"`
	}
	for _, line := range auditLog(t, d.root) {
		if line.Action == "allocate" && strings.Contains(line.Line, `"last"`) {
			json.Unmarshal([]byte(line.Line), &ev)
		}
	}
	local := ev.Timestamp.In(time.FixedZone(browserTZ, 5*3600+45*60)).Format("03:04:05")
	if !strings.Contains(texts[49], local) {
		t.Fatalf("the event at %s shows %q, not local time %s (%s)", ev.Timestamp, texts[49], local, browserTZ)
	}
}

// The map of a 10-port range: a cell per port, free ones included, each
// with its state; hover names the service and a click shows the
// allocation. The orphaned row names the gone owner and the listener.
func TestDashboardMapAndOrphanedRow(t *testing.T) {
	ctx := openBrowser(t, 1280, 900)
	b := testPorts(t)
	d := startDash(t, b)
	d.gracectl(t, "allocate", "--service", "spare", "--preferred", b.P(0))
	d.run(t, "web", b.Port(1), "", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1")
	booting := background(t, "sleep", "600")
	d.gracectl(t, "allocate", "--service", "booting", "--preferred", b.P(2), "--pid", strconv.Itoa(booting.Process.Pid))
	d.run(t, "flaky", b.Port(3), "/nope", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1")
	d.cycleUntil(t, b.Port(3), registry.StatusUnhealthy)
	owner, listener := d.orphan(t, "worker", b.Port(4))
	httpServer(t, b.Port(5)) // unmanaged
	d.check(t)
	load(t, ctx, d)
	want := []string{"reserved", "active", "starting", "unhealthy", "orphaned", "unmanaged", "free", "free", "free", "free"}
	until(t, ctx, "the map's states", fmt.Sprintf(`[...document.querySelectorAll("#map .cell")].map(c => c.dataset.state).join() === %q`, strings.Join(want, ",")))
	cells := js[[]map[string]string](t, ctx, `[...document.querySelectorAll("#map .cell")].map(c => ({port: c.dataset.port, label: c.getAttribute("aria-label"), text: c.textContent}))`)
	for i, c := range cells {
		if c["port"] != b.P(i) || !strings.HasPrefix(c["label"], b.P(i)+" "+map[string]string{"unmanaged": "unmanaged listener"}[want[i]]) && !strings.HasPrefix(c["label"], b.P(i)+" "+want[i]) || c["text"] != b.P(i) {
			t.Errorf("cell %d: %v", i, c)
		}
	}
	if !strings.Contains(cells[1]["label"], "web") || !strings.Contains(cells[4]["label"], "worker") {
		t.Errorf("cells do not name their services: %v %v", cells[1], cells[4])
	}
	legend := strings.Join(strings.Fields(js[string](t, ctx, `document.getElementById("legend").innerText`)), " ")
	if want := "free 4 reserved 1 starting 1 active 1 unhealthy 1 orphaned 1 unmanaged listener 1"; legend != want {
		t.Errorf("legend %q, want %q", legend, want)
	}
	// Hover shows the service; a click shows the allocation.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#cell-`+b.P(4)))); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the details", `!document.getElementById("detail").hidden`)
	detail := js[string](t, ctx, `document.getElementById("detail").innerText`)
	if !strings.Contains(detail, "worker") || !strings.Contains(detail, "background jobs") || !strings.Contains(detail, "pid "+strconv.Itoa(listener)) {
		t.Fatalf("details of the orphaned port:\n%s", detail)
	}
	tip := js[string](t, ctx, `(() => { document.getElementById("cell-`+b.P(1)+`").dispatchEvent(new MouseEvent("mouseover", {bubbles: true})); return document.getElementById("tip").innerText })()`)
	if !strings.Contains(tip, "web") || !strings.Contains(tip, "active") {
		t.Fatalf("hover: %q", tip)
	}
	// The orphaned row: the owner, marked gone, and the listener's command.
	row := js[string](t, ctx, `document.getElementById("port-`+b.P(4)+`").innerText`)
	if !strings.Contains(row, fmt.Sprintf("pid %d gone", owner)) ||
		!regexp.MustCompile(fmt.Sprintf(`pid %d \S*python3 -m http.server %d`, listener, b.Port(4))).MatchString(row) {
		t.Fatalf("the orphaned row does not name both processes (owner %d gone, listener %d):\n%s", owner, listener, row)
	}
	if title := js[string](t, ctx, `document.title`); !strings.Contains(title, "3 issues") {
		t.Fatalf("title %q (unhealthy, orphaned, unmanaged)", title)
	}
	// The button runs a cycle.
	checks := func() int {
		var st struct {
			Checks int `json:"checks_performed"`
		}
		json.Unmarshal([]byte(httpGet(t, "http://"+d.api+"/api/ports/watchdog/status")), &st)
		return st.Checks
	}
	before := checks()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#check`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a cycle from the button", 60*time.Second, func() bool { return checks() > before })
}

// An open page follows the watchdog across restarts: it reconnects, gets
// what happened while the watchdog was down, and goes on live.
func TestDashboardResumesAfterRestart(t *testing.T) {
	ctx := openBrowser(t, 1280, 900)
	d := startDash(t, testPorts(t))
	d.gracectl(t, "allocate", "--service", "before")
	load(t, ctx, d)
	until(t, ctx, "the first event", `document.getElementById("events").innerText.includes("to before")`)
	for round := 1; round <= 2; round++ {
		d.stop(t)
		until(t, ctx, "the page to notice", `document.getElementById("conn").textContent !== "live"`)
		down := fmt.Sprintf("while-down-%d", round)
		d.gracectl(t, "allocate", "--service", down)
		d.start(t)
		until(t, ctx, "the event missed while the watchdog was down", `document.getElementById("events").innerText.includes("to `+down+`")`)
		until(t, ctx, "live again", `document.getElementById("conn").textContent === "live"`)
		after := fmt.Sprintf("after-%d", round)
		port := d.gracectl(t, "allocate", "--service", after)
		until(t, ctx, "a live event after the restart", `document.getElementById("events").innerText.includes("to `+after+`")`)
		until(t, ctx, "the new allocation's row", `!!document.getElementById("port-`+port+`")`)
	}
	// Each event once.
	text := js[string](t, ctx, `document.getElementById("events").innerText`)
	for _, s := range []string{"to before", "to while-down-1", "to after-1", "to while-down-2", "to after-2"} {
		if n := strings.Count(text, s+"\n") + strings.Count(text, s+" ") + boolInt(strings.HasSuffix(text, s)); n != 1 {
			t.Errorf("%q shown %d times:\n%s", s, n, text)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The screenshots in docs/: a 101-port range with services in every state,
// at desktop and phone width; at a phone's width nothing overflows.
// GRACECTL_DASHBOARD_SCREENSHOTS=DIR writes them there (make screenshot).
func TestDashboardScreenshots(t *testing.T) {
	ctx := openBrowser(t, 1360, 1000)
	b := testenv.Ports(t, 101)
	d := startDash(t, b)
	serve := serveScript(t)
	for i, name := range []string{"grace_backend", "grace_learning", "grace_frontend", "metrics_exporter"} {
		d.run(t, name, b.Port(i), "/health", "python3", serve)
		for j := 0; j < 3+7*i; j++ {
			httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/", b.Port(i)))
		}
	}
	d.run(t, "search_indexer", b.Port(7), "/nope", "python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1")
	d.cycleUntil(t, b.Port(7), registry.StatusUnhealthy)
	d.orphan(t, "report_worker", b.Port(12))
	booting := background(t, "sleep", "600")
	d.gracectl(t, "allocate", "--service", "batch_import", "--preferred", b.P(13), "--pid", strconv.Itoa(booting.Process.Pid))
	for _, p := range []int{20, 21, 22} {
		d.gracectl(t, "allocate", "--service", fmt.Sprintf("preview_pr_%d", 70+p), "--preferred", b.P(p))
	}
	httpServer(t, b.Port(40)) // unmanaged
	d.check(t)
	load(t, ctx, d)
	until(t, ctx, "the map", `document.querySelectorAll("#map .cell").length === 101 && document.querySelectorAll('#map .cell[data-state="unmanaged"]').length === 1`)
	until(t, ctx, "the chart", `document.querySelectorAll('#chart path[data-series="allocated"]').length === 1`)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#cell-`+b.P(12)))); err != nil {
		t.Fatal(err)
	}
	js[bool](t, ctx, `(() => { document.activeElement.blur(); return true })()`) // no tooltip over the legend
	desktop, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	until(t, ctx, "the chart at phone width", `document.getElementById("chart").getBoundingClientRect().width < 390`)
	phone, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("GRACECTL_DASHBOARD_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	for name, shot := range map[string][]byte{"dashboard.png": desktop, "dashboard-phone.png": phone} {
		if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if w := js[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		wide := js[[]string](t, ctx, `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391).slice(0, 8).map(e => e.tagName + "#" + e.id + "." + e.className + " " + Math.round(e.getBoundingClientRect().right))`)
		t.Fatalf("at 390 px the page is %d px wide: %v", w, wide)
	}
}
