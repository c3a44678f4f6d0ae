// sdchild is a Go HTTP server that takes its socket from systemd's
// socket-activation protocol through go-systemd's activation package; the
// run tests start it under `gracectl run --listen-fd`.
package main

import (
	"fmt"
	"net/http"
	"os"

	"github.com/coreos/go-systemd/v22/activation"
)

func main() {
	ls, err := activation.Listeners()
	if err != nil || len(ls) != 1 {
		fmt.Fprintf(os.Stderr, "sdchild: want one activated listener, got %d (%v)\n", len(ls), err)
		os.Exit(3)
	}
	fmt.Fprintf(os.Stderr, "sdchild: serving on %s\n", ls[0].Addr())
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"ok","pid":%d,"request_count":7,"error_count":1}`, os.Getpid())
	})
	_ = http.Serve(ls[0], nil)
}
