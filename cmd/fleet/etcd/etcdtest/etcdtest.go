// Package etcdtest starts real etcd members on loopback for tests (Debian's
// etcd-server; a test skips, saying so, without it) and kills them when the
// test ends. Only tests import it.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gracectl/gracectl/cmd/fleet/etcd"
	"github.com/gracectl/gracectl/registry/testenv"
)

// TLS is a cluster that speaks HTTPS and wants a client certificate.
type TLS struct {
	CertFile, KeyFile string // the members' certificate: server and client authentication
	CAFile            string // the CA clients' certificates must come from
	Client            *tls.Config
}

// Cluster is n members: member i listens for clients on port 2i of the
// block and for its peers on 2i+1.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	ports   testenv.Block
	tls     *TLS
	members []*exec.Cmd
}

// Start starts n members on ports (2n of them) and waits until the cluster
// answers a read. With tlsConf, clients must come with a certificate.
func Start(t testing.TB, ports testenv.Block, n int, tlsConf *TLS) *Cluster {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("no etcd here (apt-get install etcd-server, or make test-fleet)")
	}
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), ports: ports, tls: tlsConf, members: make([]*exec.Cmd, n)}
	t.Cleanup(func() {
		for i := range c.members {
			c.Kill(i)
		}
	})
	for i := range n {
		c.StartMember(i)
	}
	c.WaitHealthy()
	return c
}

// Endpoints are the members' client addresses, HOST:PORT.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for i := range c.members {
		eps = append(eps, c.ports.Addr(2*i))
	}
	return eps
}

// Spec is the cluster as --fleet takes it: etcd://HOST:PORT,...
func (c *Cluster) Spec() string { return "etcd://" + strings.Join(c.Endpoints(), ",") }

// StartMember starts member i (again: its data directory is kept).
func (c *Cluster) StartMember(i int) {
	c.t.Helper()
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	var peers []string
	for j := range c.members {
		peers = append(peers, fmt.Sprintf("e%d=http://%s", j, c.ports.Addr(2*j+1)))
	}
	client, peer := scheme+"://"+c.ports.Addr(2*i), "http://"+c.ports.Addr(2*i+1)
	args := []string{"--name", fmt.Sprintf("e%d", i), "--data-dir", filepath.Join(c.dir, fmt.Sprintf("e%d", i)),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new", "--initial-cluster-token", "gracectl-test"}
	if c.tls != nil {
		args = append(args, "--cert-file", c.tls.CertFile, "--key-file", c.tls.KeyFile,
			"--trusted-ca-file", c.tls.CAFile, "--client-cert-auth")
	}
	// Tagged, in a group of its own, killed with the test (testenv).
	m := testenv.Command(c.t, c.bin, args...)
	m.Env = append(m.Env, "ETCD_UNSUPPORTED_ARCH="+os.Getenv("ETCD_UNSUPPORTED_ARCH"))
	if err := m.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.members[i] = m
}

// Kill stops member i with SIGKILL, if it runs.
func (c *Cluster) Kill(i int) {
	if m := c.members[i]; m != nil {
		m.Process.Kill()
		m.Wait()
		c.members[i] = nil
	}
}

// Running reports whether member i runs.
func (c *Cluster) Running(i int) bool { return c.members[i] != nil }

// Client is a client of every member.
func (c *Cluster) Client() *etcd.Client {
	var tlsConf *tls.Config
	if c.tls != nil {
		tlsConf = c.tls.Client
	}
	return etcd.New(c.Endpoints(), tlsConf)
}

// WaitHealthy waits until the cluster answers a read (it has a leader).
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	cli := c.Client()
	defer cli.Close()
	testenv.WaitFor(c.t, "etcd to elect a leader", 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := cli.Prefix(ctx, "/", true)
		return err == nil
	})
}

// Hang listens on addr like a member that accepts connections, reads what
// it is sent and never answers (a process stopped, or a host whose etcd
// hangs), until the test ends.
func Hang(t testing.TB, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { conn.Close() })
			go io.Copy(io.Discard, conn)
		}
	}()
}
