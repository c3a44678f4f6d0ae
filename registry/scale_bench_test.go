package registry

import (
	"context"
	"os"
	"testing"
	"time"
)

// BenchmarkAllocateRelease5000 is the scale case: a 10,000-port range with
// 5,000 allocations.
func BenchmarkAllocateRelease5000(b *testing.B) {
	s := Open(b.TempDir(), 10*time.Second)
	ctx := context.Background()
	if err := s.Update(ctx, func(r *Registry, tx *Tx) error {
		for i := 0; i < 5000; i++ {
			r.Put(&Allocation{ID: newID(), Port: 10000 + 2*i, ServiceName: "svc", StartedBy: "serve.py",
				Purpose: "scale", AllocatedAt: tx.Now(), HealthStatus: StatusReserved})
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	rg := Range{Start: 10000, End: 19999}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, err := s.Allocate(ctx, Request{Service: "bench", Range: rg, Preferred: 10001})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Release(ctx, ReleaseRequest{Port: a.Port, Force: true, By: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	_ = os.Getpid
}
