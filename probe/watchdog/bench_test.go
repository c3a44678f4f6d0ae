package watchdog

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gracectl/gracectl/probe"
	"github.com/gracectl/gracectl/registry/testenv"
)

// BenchmarkCycle101 is one watchdog cycle over 101 allocations, each with a
// live owner and an answering /health endpoint.
func BenchmarkCycle101(b *testing.B) {
	ports := testenv.Ports(b, 101)
	s := newStore(b)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"status":"ok","request_count":1,"error_count":0}`)
	})
	for i := 0; i < 101; i++ {
		port := ports.Port(0) + i
		allocate(b, s, port, probe.Self(), "/health")
		serve(b, port, ok)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Cycle(context.Background(), s, Options{HealthTimeout: 2 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Active != 101 {
			b.Fatalf("active %d", rep.Active)
		}
	}
}
