package cmd_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The dashboard in a real browser: headless Chromium (Debian's chromium)
// through the DevTools protocol. `make test` skips it when Chromium is
// absent; `make test-browser` installs it first. Ports 24690-24697.
func TestDashboardInBrowser(t *testing.T) {
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
	root := t.TempDir()
	const rg = "24690-24696"
	if err := gracectlCmd(t, root, "allocate", "--service", "alpha", "--purpose", "shown at load", "--range", rg).Run(); err != nil {
		t.Fatal(err)
	}
	startWatchAPI(t, root, rg, "127.0.0.1:24697")
	base := "http://127.0.0.1:24697"

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 800))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()

	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#port-24690`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("conn").textContent === "live"`),
	); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	allocs, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#allocs`)))
	if err != nil || !strings.Contains(allocs, "alpha") || !strings.Contains(allocs, "reserved") {
		t.Fatalf("the page does not show alpha (%v):\n%s", err, allocs)
	}
	// An allocate from the CLI appears without a reload.
	out, err := gracectlCmd(t, root, "allocate", "--service", "beta", "--range", rg).Output()
	if err != nil {
		t.Fatal(err)
	}
	port := strings.TrimSpace(string(out))
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatalf("allocate printed %q", out)
	}
	if err := chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(`#port-`+port)),
		chromedp.Poll[chromedp.Void](`document.getElementById("events").textContent.includes("allocated port `+port+` to beta")`),
	); err != nil {
		t.Fatalf("the CLI's allocate did not appear on the page: %v", err)
	}
	// The health check button runs a cycle: its summary comes as an event.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`#check`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("events").textContent.includes("Health check:")`),
	); err != nil {
		t.Fatalf("the health check button: %v", err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	// On a phone's width the table turns into cards: nothing overflows.
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(390, 844),
		chromedp.Poll[chromedp.Void](`document.documentElement.scrollWidth <= 392`),
	); err != nil {
		t.Fatalf("at 390 px the page overflows: %v", err)
	}
	dest := os.Getenv("GRACECTL_DASHBOARD_SCREENSHOT") // make screenshot: docs/dashboard.png
	if dest == "" {
		dest = filepath.Join(t.TempDir(), "dashboard.png")
	}
	if err := os.WriteFile(dest, shot, 0o644); err != nil {
		t.Fatal(err)
	}
}
