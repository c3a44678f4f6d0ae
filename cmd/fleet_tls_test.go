package cmd_test

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet/etcd/etcdtest"
	"github.com/gracectl/gracectl/registry/testenv"
)

// The fleet over TLS: one etcd member that wants a client certificate
// (--client-cert-auth); a host publishes through it and a reader reads it,
// both with --fleet-cacert, --fleet-cert and --fleet-key. Without a client
// certificate, etcd is not reached, and the error names the endpoint and
// TLS.
func TestFleetOverTLS(t *testing.T) {
	ca := newTestCA(t)
	srvCert, srvKey := ca.issue(t, "etcd", true)
	cliCert, cliKey := ca.issue(t, "gracectl", false)
	caFile := filepath.Join(ca.dir, "ca.crt")
	pair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	ports := testenv.Ports(t, 10) // etcd 0-1, the host's range 2-9
	etcd := etcdtest.Start(t, ports, 1, &etcdtest.TLS{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile,
		Client: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}})
	tlsFlags := []string{"--fleet-cacert", caFile, "--fleet-cert", cliCert, "--fleet-key", cliKey}
	root, rg := t.TempDir(), ports.Sub(2, 9)
	if err := gracectlCmd(t, root, "allocate", "--service", "over-tls", "--range", rg).Run(); err != nil {
		t.Fatal(err)
	}
	startGracectl(t, root, append([]string{"watch", "--interval", "1s", "--range", rg, "--fleet", etcd.Spec(), "--host-id", "tls-host"}, tlsFlags...)...)
	waitFor(t, "the host in the fleet, over TLS", 60*time.Second, func() bool {
		out, err := gracectlCmd(t, t.TempDir(), append([]string{"port", "over-tls", "--fleet=" + etcd.Spec()}, tlsFlags...)...).Output()
		return err == nil && strings.HasSuffix(strings.TrimSpace(string(out)), ":"+ports.P(2))
	})
	// Without the client certificate: refused at the handshake.
	out, err := gracectlCmd(t, t.TempDir(), "status", "--fleet="+etcd.Spec(), "--fleet-cacert", caFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), ports.Addr(0)) || !strings.Contains(string(out), "TLS") {
		t.Errorf("status --fleet without a client certificate: %v\n%s", err, out)
	}
}
