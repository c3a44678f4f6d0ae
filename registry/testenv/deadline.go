package testenv

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// ScaleEnv names the one knob for every test deadline: a factor (default 1)
// that Scale applies. Set it above 1 on a machine busier than the deadlines
// already allow for, e.g. GRACECTL_TEST_TIMEOUT_SCALE=3.
const ScaleEnv = "GRACECTL_TEST_TIMEOUT_SCALE"

// Scale is d times the factor in GRACECTL_TEST_TIMEOUT_SCALE. A value that
// is not a positive number counts as 1.
func Scale(d time.Duration) time.Duration {
	f, err := strconv.ParseFloat(os.Getenv(ScaleEnv), 64)
	if err != nil || f <= 0 {
		return d
	}
	return time.Duration(float64(d) * f)
}

// WaitFor polls cond every 20 ms until it holds, and fails t if it does not
// within Scale(timeout). It never passes because time went by: only cond
// decides.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	timeout = Scale(timeout)
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
