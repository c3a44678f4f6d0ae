package api

import (
	_ "embed"
	"net/http"
)

// The dashboard: one self-contained page (HTML, CSS and JavaScript, no
// framework, no build step, nothing fetched from elsewhere) embedded in the
// binary. It loads /api/ports/status, /api/ports/map and
// /api/ports/history, draws the map and the chart itself (inline SVG), and
// follows /api/ports/events?backlog=50, loading them again after events.
//
//go:embed dashboard/index.html
var dashboardHTML []byte

func dashboard(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	// Everything is inline; nothing may come from elsewhere.
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	_, _ = w.Write(dashboardHTML)
}
