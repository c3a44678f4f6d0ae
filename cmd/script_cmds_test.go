package cmd_test

import (
	"net"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	// waitlisten PORT: wait (10 s at most) until something accepts
	// connections on 127.0.0.1:PORT.
	"waitlisten": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) != 1 || neg {
			ts.Fatalf("usage: waitlisten PORT")
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+args[0], time.Second)
			if err == nil {
				c.Close()
				return
			}
			if time.Now().After(deadline) {
				ts.Fatalf("nothing listens on port %s after 10s: %v", args[0], err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	},
}
