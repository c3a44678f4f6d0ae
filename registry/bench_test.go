package registry

import (
	"context"
	"testing"
	"time"
)

// BenchmarkAllocateRelease100 allocates and releases one port in a range
// where 100 ports are already held: the in-process cost of the locked
// read–bind-test–write–fsync–log path (see docs/benchmarks for whole-process
// figures).
func BenchmarkAllocateRelease100(b *testing.B) {
	s := Open(b.TempDir(), 10*time.Second)
	ctx := context.Background()
	rg := Range{Start: 21500, End: 21700}
	for i := 0; i < 100; i++ {
		if _, err := s.Allocate(ctx, Request{Service: "held", Range: rg}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a, err := s.Allocate(ctx, Request{Service: "bench", Range: rg})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Release(ctx, ReleaseRequest{Port: a.Port, Force: true, By: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStatus101 reads a registry of 101 allocations.
func BenchmarkStatus101(b *testing.B) {
	s := Open(b.TempDir(), 10*time.Second)
	ctx := context.Background()
	rg := Range{Start: 21500, End: 21600}
	for i := 0; i < 101; i++ {
		if _, err := s.Allocate(ctx, Request{Service: "held", Range: rg}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Status(ctx, rg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse101(b *testing.B) {
	s := Open(b.TempDir(), 10*time.Second)
	ctx := context.Background()
	rg := Range{Start: 21500, End: 21600}
	for i := 0; i < 101; i++ {
		s.Allocate(ctx, Request{Service: "held", Range: rg, Command: []string{"python3", "serve.py"}})
	}
	data, _ := readFile(s.Path())
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
