package probe

import (
	"reflect"
	"testing"
)

func TestParseProcLocks(t *testing.T) {
	in := []byte(`1: FLOCK  ADVISORY  WRITE 4242 fe:00:837289 0 EOF
2: -> FLOCK  ADVISORY  WRITE 4343 fe:00:837289 0 EOF
3: OFDLCK ADVISORY  READ -1 00:06:3 0 EOF
4: POSIX  ADVISORY  WRITE 77 08:1a:12 0 EOF
garbage
5: FLOCK  ADVISORY  WRITE x fe:00:1 0 EOF
`)
	want := []FileLock{
		{Kind: "FLOCK", Write: true, PID: 4242, Major: 0xfe, Minor: 0, Inode: 837289},
		{Kind: "FLOCK", Waiting: true, Write: true, PID: 4343, Major: 0xfe, Minor: 0, Inode: 837289},
		{Kind: "OFDLCK", PID: -1, Major: 0, Minor: 6, Inode: 3},
		{Kind: "POSIX", Write: true, PID: 77, Major: 8, Minor: 0x1a, Inode: 12},
	}
	if got := ParseProcLocks(in); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func FuzzParseProcLocks(f *testing.F) {
	f.Add([]byte("1: FLOCK  ADVISORY  WRITE 4242 fe:00:837289 0 EOF\n2: -> FLOCK  ADVISORY  WRITE 4343 fe:00:837289 0 EOF\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, l := range ParseProcLocks(data) {
			if l.Kind == "" {
				t.Fatalf("a lock without a kind from %q", data)
			}
		}
	})
}
