package cmd_test

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
	"golang.org/x/crypto/bcrypt"
)

// The API off the host: TLS, client certificates and basic auth through
// exporter-toolkit's web config, on ports of each test's own.

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gracectl test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	ca.write(t, "ca.crt", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// issue makes a certificate signed by the CA, for a server (127.0.0.1) or
// a client; it returns the cert and key files. A server's is good for
// client authentication too: etcd's JSON gateway presents it to etcd's own
// gRPC server, which refuses it otherwise under --client-cert-auth.
func (ca *testCA) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return ca.write(t, name+".crt", "CERTIFICATE", der), ca.write(t, name+".key", "EC PRIVATE KEY", kder)
}

// TLS with a client certificate required, and basic auth: every endpoint,
// the page, the event stream and /metrics included, wants both; a wrong
// password is a bare 401, counted; no client certificate, no handshake.
func TestAPIWithTLSAndAuth(t *testing.T) {
	b := testPorts(t)
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "server", true)
	cliCert, cliKey := ca.issue(t, "client", false)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	cfg := filepath.Join(ca.dir, "web.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: %s
basic_auth_users:
  prometheus: %s
`, srvCert, srvKey, filepath.Join(ca.dir, "ca.crt"), hash)), 0o600)

	root := t.TempDir()
	w := startGracectl(t, root, "watch", "--interval", "1h", "--range", b.Sub(0, 7), "--api", b.Addr(9), "--api-web-config", cfg)
	waitFor(t, "the TLS API", 60*time.Second, func() bool { return strings.Contains(w.out.String(), "API listening on") })
	if !strings.Contains(w.out.String(), "(loopback)") || strings.Contains(w.out.String(), "WARNING") {
		t.Errorf("log:\n%s", w.out)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	withCert := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
	noCert := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(c *http.Client, path, user, pass string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", "https://"+b.Addr(9)+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		return c.Do(req)
	}
	for _, path := range []string{"/", "/api/ports/status", "/metrics"} {
		resp, err := get(withCert, path, "prometheus", "s3cret")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s with the client certificate and the password: %v %v", path, err, resp)
		}
		resp.Body.Close()
	}
	// The event stream too.
	resp, err := get(withCert, "/api/ports/events", "prometheus", "s3cret")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("event stream: %v %v", err, resp)
	}
	if line, _ := bufio.NewReader(resp.Body).ReadString('\n'); !strings.HasPrefix(line, "retry:") {
		t.Errorf("event stream starts with %q", line)
	}
	resp.Body.Close()
	// Wrong password, no password: 401 with no detail.
	fails := 0
	for _, pass := range []string{"wrong", ""} {
		resp, err := get(withCert, "/metrics", "prometheus", pass)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 || strings.TrimSpace(string(body)) != "Unauthorized" {
			t.Errorf("password %q: %d %q", pass, resp.StatusCode, body)
		}
		fails++
	}
	resp, _ = get(withCert, "/", "", "")
	resp.Body.Close()
	fails++
	// No client certificate: no TLS session at all.
	if resp, err := get(noCert, "/api/ports/status", "prometheus", "s3cret"); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate got %d", resp.StatusCode)
	}
	// Failed logins are counted.
	resp, err = get(withCert, "/metrics", "prometheus", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), fmt.Sprintf("gracectl_api_auth_failures_total %d", fails)) {
		t.Errorf("auth failures not counted (want %d):\n%s", fails, grepLines(string(metrics), "auth_failures"))
	}
	// The refused handshake is a line of the watchdog's log, in its
	// format (issue 22: it came in the log package's "2006/01/02 15:04:05").
	waitFor(t, "the handshake error in the log", 10*time.Second, func() bool {
		return regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\S+ \[PORT-WATCHDOG\] API: http: TLS handshake error from 127\.0\.0\.1:\d+: `).MatchString(w.out.String())
	})
	if regexp.MustCompile(`(?m)^\d{4}/\d\d/\d\d `).MatchString(w.out.String()) {
		t.Errorf("a line in Go's default log format:\n%s", w.out)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A remote API without TLS and authentication is said at every start and
// in status; its Host check still refuses names it is not reached by.
func TestRemoteAPIWithoutAuthIsSaid(t *testing.T) {
	b := testPorts(t)
	root := t.TempDir()
	w := startGracectl(t, root, "watch", "--interval", "1h", "--range", b.Sub(0, 7), "--api", "0.0.0.0:"+b.P(8), "--api-allow-remote", "--api-host", "ports.example")
	waitFor(t, "the API", 60*time.Second, func() bool { return strings.Contains(w.out.String(), "Health check:") })
	if !strings.Contains(w.out.String(), "WARNING: the API on 0.0.0.0:"+b.P(8)+" is reachable from other hosts (remote, unauthenticated)") {
		t.Errorf("no warning:\n%s", w.out)
	}
	out, _ := gracectlCmd(t, root, "status", "--range", b.Sub(0, 7)).Output()
	if !strings.Contains(string(out), "\nAPI: remote, unauthenticated\n") {
		t.Errorf("status does not say it:\n%s", out)
	}
	checkHosts(t, b.Addr(8), map[string]int{"ports.example:" + b.P(8): 200, b.Addr(8): 200, "evil.example:" + b.P(8): 403})
}

// checkHosts asks the API at addr for its status with each Host header,
// and checks the answer's code.
func checkHosts(t *testing.T, addr string, want map[string]int) {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second}
	for host, code := range want {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/ports/status", nil)
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != code {
			t.Errorf("Host %s: %d, want %d", host, resp.StatusCode, code)
		}
	}
}

// The example web config is valid as exporter-toolkit reads it, and the
// example scrape config is the https, basic_auth and tls_config kind.
func TestSecurityExamples(t *testing.T) {
	ports := testPorts(t)
	b, err := os.ReadFile("../docs/prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ScrapeConfigs []struct {
			Scheme    string            `yaml:"scheme"`
			BasicAuth map[string]string `yaml:"basic_auth"`
			TLSConfig map[string]string `yaml:"tls_config"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil || len(cfg.ScrapeConfigs) != 1 {
		t.Fatalf("prometheus.yml: %v", err)
	}
	sc := cfg.ScrapeConfigs[0]
	if sc.Scheme != "https" || sc.BasicAuth["username"] == "" || sc.TLSConfig["ca_file"] == "" || sc.TLSConfig["cert_file"] == "" {
		t.Errorf("scrape config: %+v", sc)
	}
	// The web config, with its files pointed at real ones.
	ca := newTestCA(t)
	crt, key := ca.issue(t, "server", true)
	web, err := os.ReadFile("../docs/prometheus/web-config.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("/etc/gracectl/tls/server.crt", crt, "/etc/gracectl/tls/server.key", key,
		"/etc/gracectl/tls/clients-ca.crt", filepath.Join(ca.dir, "ca.crt")).Replace(string(web))
	path := filepath.Join(ca.dir, "web-config.yml")
	os.WriteFile(path, []byte(text), 0o600)
	if out, err := gracectlCmd(t, t.TempDir(), "watch", "--api", ports.Addr(7), "--api-web-config", path, "--interval", "1h", "--range", ports.Sub(0, 6), "--exit-when-idle", "100ms").CombinedOutput(); err != nil {
		t.Fatalf("watch with the example web config: %v\n%s", err, out)
	}
}

// Issue 23: a remote API accepts every address of this host as its Host,
// IPv4 and IPv6 (with and without the port), as --help says: a Prometheus
// target or a browser naming the host by address is not DNS rebinding.
func TestRemoteAPIAcceptsThisHostsAddresses(t *testing.T) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var hosts []string // as a Host header gives them
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLoopback() || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			hosts = append(hosts, ipn.IP.String())
		} else {
			hosts = append(hosts, "["+ipn.IP.String()+"]")
		}
	}
	b := testPorts(t)
	root := t.TempDir()
	w := startGracectl(t, root, "watch", "--interval", "1h", "--range", b.Sub(0, 7), "--api", "0.0.0.0:"+b.P(8), "--api-allow-remote")
	waitFor(t, "the API", 60*time.Second, func() bool { return strings.Contains(w.out.String(), "Health check:") })
	// 198.51.100.254 (TEST-NET-2) and 2001:db8::254 stand for another
	// host's address, unless this host has them.
	want := map[string]int{"[::1]:" + b.P(8): 200, "127.0.0.1:" + b.P(8): 200, "evil.example:" + b.P(8): 403,
		"198.51.100.254:" + b.P(8): 403, "[2001:db8::254]:" + b.P(8): 403}
	for _, h := range hosts {
		want[h+":"+b.P(8)], want[h] = 200, 200
	}
	checkHosts(t, b.Addr(8), want)
	var v4, v6 bool
	for _, h := range hosts {
		v6 = v6 || strings.HasPrefix(h, "[")
		v4 = v4 || !strings.HasPrefix(h, "[")
	}
	if !v4 {
		t.Log("this host has no non-loopback IPv4 address: only loopback's was tried")
	}
	if !v6 {
		t.Log("this host has no global IPv6 address: only ::1 was tried")
	}
	if len(hosts) == 0 {
		t.Skip("this host has no non-loopback address: only loopback's were tried (they passed)")
	}
}
