package cmd_test

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The event stream (ports 24680-24699; the API on 24699).

type sse struct {
	id   uint64
	data string
}

// stream opens /api/ports/events (with Last-Event-ID when lastID > 0) and
// delivers its events on a channel until ctx ends.
func stream(t *testing.T, ctx context.Context, base string, lastID uint64) (<-chan sse, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/ports/events", nil)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastID, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan sse, 100)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev sse
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id, _ = strconv.ParseUint(line[4:], 10, 64)
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			case line == "" && ev.data != "":
				out <- ev
				ev = sse{}
			}
		}
	}()
	return out, resp
}

// next waits for the first event whose data holds want.
func next(t *testing.T, events <-chan sse, want string) sse {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before %s", want)
			}
			if strings.Contains(ev.data, want) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event with %s within 10s", want)
		}
	}
}

// An allocate made by another process (the CLI) arrives on the stream as
// the audit log's line; a client that reconnects with Last-Event-ID gets
// what it missed, and nothing twice.
func TestEventStream(t *testing.T) {
	root := t.TempDir()
	const rg = "24680-24699"
	startWatchAPI(t, root, rg, "127.0.0.1:24699")
	base := "http://127.0.0.1:24699"
	ctx, cancel := context.WithCancel(context.Background())
	events, resp := stream(t, ctx, base, 0)
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	if err := gracectlCmd(t, root, "allocate", "--service", "first", "--range", rg).Run(); err != nil {
		t.Fatal(err)
	}
	ev := next(t, events, `"action":"allocate"`)
	if !strings.Contains(ev.data, `"service_name":"first"`) || !strings.Contains(ev.data, `"seq":`) {
		t.Fatalf("allocate event: %s", ev.data)
	}
	cancel() // the client goes away
	if err := gracectlCmd(t, root, "allocate", "--service", "second", "--range", rg).Run(); err != nil {
		t.Fatal(err)
	}
	// ... and a health check runs meanwhile: a cycle event.
	http.Post(base+"/api/ports/health-check", "application/json", strings.NewReader("{}"))
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	resumed, _ := stream(t, ctx2, base, ev.id)
	// Both missed events come, in whichever order they happened; the one
	// seen before does not come again.
	var sawSecond, sawCycle bool
	deadline := time.After(10 * time.Second)
	for !sawSecond || !sawCycle {
		select {
		case got := <-resumed:
			if got.id <= ev.id || strings.Contains(got.data, `"service_name":"first"`) && strings.Contains(got.data, `"action":"allocate"`) {
				t.Fatalf("after reconnecting with Last-Event-ID %d: %d %s", ev.id, got.id, got.data)
			}
			sawSecond = sawSecond || strings.Contains(got.data, `"action":"allocate"`) && strings.Contains(got.data, `"service_name":"second"`)
			sawCycle = sawCycle || strings.Contains(got.data, `"action":"cycle"`)
		case <-deadline:
			t.Fatalf("after reconnecting: second allocate %v, cycle %v", sawSecond, sawCycle)
		}
	}
}

// At most 64 streams at once; the 65th is refused with 503.
func TestEventStreamLimit(t *testing.T) {
	root := t.TempDir()
	startWatchAPI(t, root, "24680-24689", "127.0.0.1:24698")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 64; i++ {
		if _, resp := stream(t, ctx, "http://127.0.0.1:24698", 0); resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
	}
	resp, err := http.Get("http://127.0.0.1:24698/api/ports/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the 65th stream: %d, want 503", resp.StatusCode)
	}
}
