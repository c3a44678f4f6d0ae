package routes

import (
	"strings"
	"testing"

	"github.com/gracectl/gracectl/registry"
)

// FuzzCaddyConfig: whatever Caddy's GET /config/ answers, finding
// gracectl's objects in it neither panics nor reports a server that does
// not listen on the address.
func FuzzCaddyConfig(f *testing.F) {
	f.Add([]byte(`null`))
	f.Add([]byte(`{"apps":{"http":{"servers":{"srv0":{"listen":[":80"],"routes":[{"@id":"gracectl_routes"}]}}}}}`))
	f.Add([]byte(`{"apps":{"http":{"servers":{"a":{"listen":["tcp/0.0.0.0:80"],"@id":"gracectl_server"},"b":7}}}}`))
	f.Add([]byte(`{"apps":{"http":{"servers":[1,2]}}}`))
	f.Add([]byte(`{"apps":{"http":{"servers":{"x":{"listen":":80","routes":{"@id":"gracectl_routes"}}}}}}`))
	c := &Caddy{Config: Config{Listen: ":80", Domain: "localhost"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var cfg any
		if registry.Unmarshal(data, &cfg) != nil {
			return
		}
		got := c.find(cfg)
		if got.server != "" {
			srv, _ := dig(cfg, "apps", "http", "servers", got.server).(map[string]any)
			listen, _ := srv["listen"].([]any)
			ok := false
			for _, l := range listen {
				s, _ := l.(string)
				ok = ok || sameListen(s, ":80")
			}
			if !ok {
				t.Fatalf("server %q does not listen on :80: %v", got.server, srv)
			}
		}
		if got.route != nil && got.routeIn == "" {
			t.Fatalf("a route without its server")
		}
	})
}

// FuzzNginxMessage: whatever nginx -t prints, the message taken from it
// is one line.
func FuzzNginxMessage(f *testing.F) {
	f.Add([]byte("2026/12/01 11:12:30 [emerg] 30236#30236: could not build server_names_hash\nnginx: configuration file /x test failed\n"))
	f.Add([]byte(""))
	f.Add([]byte("[error] : \n\n"))
	f.Add([]byte("[emerg] \n0"))
	f.Fuzz(func(t *testing.T, out []byte) {
		msg := lastLine(out, nil)
		if strings.ContainsAny(msg, "\n\r") || msg == "" {
			t.Fatalf("lastLine(%q) = %q", out, msg)
		}
	})
}
