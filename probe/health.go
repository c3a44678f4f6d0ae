package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// MaxHealthBody is how much of a health answer is read.
const MaxHealthBody = 64 << 10

// DefaultHealthTimeout bounds one health check.
const DefaultHealthTimeout = 2 * time.Second

// HealthResult is one health check's outcome.
type HealthResult struct {
	OK           bool
	StatusCode   int
	RequestCount *int64 // from a JSON body, when present
	ErrorCount   *int64
	Err          string // why it failed
	// Refused: nothing listened there (the connection was refused).
	Refused bool
}

// healthClient never follows a redirect off the port it asked and never
// uses a proxy: health checks go to loopback only.
var healthTransport = &http.Transport{
	Proxy:                  nil,
	DialContext:            (&net.Dialer{Timeout: time.Second}).DialContext,
	DisableKeepAlives:      true,
	MaxResponseHeaderBytes: 16 << 10,
	ResponseHeaderTimeout:  0, // the request context bounds it
}

func healthClient(origin string) *http.Client {
	return &http.Client{
		Transport: healthTransport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != origin || len(via) >= 3 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
}

// CheckHealth GETs http://127.0.0.1:PORT/PATH, or [::1] when nothing
// answers on 127.0.0.1, within timeout. A 2xx answer is healthy; a JSON body
// with numeric request_count and error_count gives the service's counts.
// At most MaxHealthBody bytes are read, and no redirect to another host or
// port is followed.
func CheckHealth(ctx context.Context, port int, path string, timeout time.Duration) HealthResult {
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := checkHealthAt(ctx, "127.0.0.1", port, path)
	if res.Refused && HasIPv6() {
		res = checkHealthAt(ctx, "::1", port, path)
	}
	return res
}

func checkHealthAt(ctx context.Context, host string, port int, path string) HealthResult {
	origin := net.JoinHostPort(host, strconv.Itoa(port))
	u := (&url.URL{Scheme: "http", Host: origin}).String() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return HealthResult{Err: fmt.Sprintf("bad health path: %v", err)}
	}
	req.Header.Set("User-Agent", "gracectl-watchdog")
	req.Header.Set("Accept", "application/json")
	resp, err := healthClient(origin).Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return HealthResult{Err: "connection refused", Refused: true}
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return HealthResult{Err: "timed out"}
		}
		return HealthResult{Err: shortErr(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxHealthBody))
	res := HealthResult{StatusCode: resp.StatusCode}
	if err != nil {
		if ctx.Err() != nil {
			res.Err = "timed out reading the body"
		} else {
			res.Err = "reading the body: " + shortErr(err)
		}
		return res
	}
	res.RequestCount, res.ErrorCount = ParseHealthCounts(body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		res.Err = "HTTP " + strconv.Itoa(resp.StatusCode)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			res.Err += " (redirect not followed)"
		}
		return res
	}
	res.OK = true
	return res
}

// ParseHealthCounts reads request_count and error_count from a health
// answer's JSON object; either is nil when absent, not a whole number, or
// negative. A service's answer is read as leniently as encoding/json did:
// duplicate names (the last wins) and invalid UTF-8 are accepted.
func ParseHealthCounts(body []byte) (requests, errs *int64) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, nil
	}
	var m map[string]jsontext.Value
	if err := json.Unmarshal(body, &m, jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true)); err != nil {
		return nil, nil
	}
	return countField(m["request_count"]), countField(m["error_count"])
}

func countField(raw jsontext.Value) *int64 {
	if raw.Kind() != '0' {
		return nil // absent, a string, null, …: numbers only
	}
	v, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(raw), 64)
		if ferr != nil || f != float64(int64(f)) || f > 9e18 {
			return nil
		}
		v = int64(f)
	}
	if v < 0 {
		return nil
	}
	return &v
}

func shortErr(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	s := err.Error()
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
