package probe

import (
	"testing"
	"time"

	"github.com/gracectl/gracectl/registry/testenv"
)

func TestExitWatch(t *testing.T) {
	ew, err := NewExitWatch()
	if err != nil {
		t.Skipf("no pidfds here: %v", err)
	}
	defer ew.Close()
	c := testenv.Command(t, "sleep", "600")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	id, err := Identify(c.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if alive, err := ew.Watch(id); !alive || err != nil {
		t.Fatalf("Watch of a live process: %v %v", alive, err)
	}
	if !ew.Watching(id) {
		t.Fatal("not watching")
	}
	c.Process.Kill()
	c.Wait()
	select {
	case got := <-ew.Exited():
		if got != id {
			t.Fatalf("exited %+v, want %+v", got, id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit reported within 10 s")
	}
	if ew.Watching(id) {
		t.Error("still watching an ended process")
	}
	// A process already gone, or a PID reused by another process, is not
	// watched and is said to be dead.
	if alive, err := ew.Watch(id); alive || err != nil {
		t.Errorf("Watch of an ended process: %v %v", alive, err)
	}
	reused := Self()
	reused.Start++
	if alive, _ := ew.Watch(reused); alive {
		t.Error("Watch took another process with the same PID for the owner")
	}
}
