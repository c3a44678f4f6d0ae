package registry

import (
	"context"
	"io"
	"os"
	"testing"

	"time"

	"github.com/gracectl/gracectl/registry/testenv"
)

// benchStore is a store holding n allocations, written in one change.
func benchStore(b *testing.B, n, first, step int) *Store {
	b.Helper()
	s := Open(b.TempDir(), 10*time.Second)
	if err := s.Update(context.Background(), func(r *Registry, tx *Tx) error {
		for i := 0; i < n; i++ {
			r.Put(&Allocation{ID: newID(), Port: first + step*i, ServiceName: "held", StartedBy: "serve.py",
				Purpose: "bench", AllocatedAt: tx.Now(), HealthStatus: StatusReserved, Command: []string{"python3", "serve.py"}})
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	return s
}

func benchAllocateRelease(b *testing.B, s *Store, rg Range, preferred int) {
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, err := s.Allocate(ctx, Request{Service: "bench", Range: rg, Preferred: preferred})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Release(ctx, ReleaseRequest{Port: a.Port, Force: true, By: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAllocateRelease100 allocates and releases one port in a range
// where 100 ports are already held: the in-process cost of the locked
// read–bind-test–write–fsync–log path (docs/benchmarks has whole-process
// figures).
func BenchmarkAllocateRelease100(b *testing.B) {
	ports := testenv.Ports(b, 201)
	benchAllocateRelease(b, benchStore(b, 100, ports.Start, 1), Range(ports), 0)
}

// BenchmarkAllocateRelease5000 is the scale case: a 10,000-port range with
// 5,000 allocations. The range is fixed (10000-19999, below testenv's pool,
// which has fewer ports): run it on a quiet machine (make bench).
func BenchmarkAllocateRelease5000(b *testing.B) {
	benchAllocateRelease(b, benchStore(b, 5000, 10000, 2), Range{Start: 10000, End: 19999}, 10001)
}

// BenchmarkRead101 reads a registry of 101 allocations, as status does.
func BenchmarkRead101(b *testing.B) {
	s := benchStore(b, 101, 21500, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Read(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// benchParse decodes a registry of n allocations.
func benchParse(b *testing.B, n, first, step int) {
	s := benchStore(b, n, first, step)
	data, err := os.ReadFile(s.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse101(b *testing.B) { benchParse(b, 101, 21500, 1) }

// BenchmarkParse5000 decodes the scale case's 5,000-allocation registry.
func BenchmarkParse5000(b *testing.B) { benchParse(b, 5000, 10000, 2) }

// BenchmarkEncode5000 encodes the scale case's registry (to io.Discard).
func BenchmarkEncode5000(b *testing.B) {
	s := benchStore(b, 5000, 10000, 2)
	r := parseFile(b, s.Path())
	info, err := os.Stat(s.Path())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(info.Size())
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Encode(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
