// Package etcd is the fleet's etcd client: the few calls of etcd's v3 API
// the fleet makes (range, put, delete, transactions, leases and a watch),
// as JSON over HTTP through the gRPC gateway that every etcd since 3.4
// serves at /v3/ on its client URLs (etcd's
// Documentation/dev-guide/api_grpc_gateway.md). Keys and values travel
// base64-encoded and 64-bit numbers as JSON strings, as the proto3 JSON
// mapping has them. It links nothing of gRPC or protobuf: a command that
// never reads the fleet pays nothing for it at start-up.
package etcd

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-json-experiment/json"
)

// DialTimeout bounds connecting to one endpoint, so that an unreachable
// member leaves time to try the next one.
const DialTimeout = 2 * time.Second

// Client talks to the members of one etcd cluster. Each call goes to the
// member that answered last, and on to the next one when it does not answer
// (no connection, or etcd's "unavailable").
type Client struct {
	eps    []string // HOST:PORT, as given
	scheme string   // http, or https with TLS
	tr     *http.Transport
	hc     *http.Client
	first  atomic.Int32 // the endpoint to try first
}

// New returns a client of the endpoints (HOST:PORT); with tlsConf, it
// speaks HTTPS. It does not connect until the first call.
func New(endpoints []string, tlsConf *tls.Config) *Client {
	tr := &http.Transport{
		// Never through an HTTP proxy of the environment: etcd is reached
		// directly, as its own clients do.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: DialTimeout, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: DialTimeout,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     time.Minute,
	}
	c := &Client{eps: endpoints, scheme: "http", tr: tr, hc: &http.Client{Transport: tr}}
	if tlsConf != nil {
		c.scheme = "https"
	}
	return c
}

// Endpoints are the members the client tries, as given.
func (c *Client) Endpoints() []string { return c.eps }

// Close drops the idle connections.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Error is etcd's own answer to a call it refused (a gRPC status, as the
// gateway passes it on).
type Error struct {
	Code    int // the gRPC code: 5 not found, 9 failed precondition, 14 unavailable, …
	Message string
}

func (e *Error) Error() string { return e.Message }

// gRPC codes the client acts on.
const (
	codeDeadlineExceeded = 4
	codeNotFound         = 5
	codeUnavailable      = 14
)

// IsLeaseNotFound reports whether err is etcd saying a lease does not exist
// (it ran out, was revoked, or etcd lost its data).
func IsLeaseNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == codeNotFound && strings.Contains(e.Message, "lease not found")
}

// UnreachableError is a call no endpoint answered.
type UnreachableError struct {
	Tried   []string // the endpoints tried, in the order they failed
	Reasons []string // why each did not answer
}

func (e *UnreachableError) add(ep, reason string) {
	e.Tried = append(e.Tried, ep)
	e.Reasons = append(e.Reasons, reason)
}

// Error names every endpoint tried, and why it did not answer: once for
// all when they failed alike.
func (e *UnreachableError) Error() string {
	same := true
	for _, r := range e.Reasons {
		same = same && r == e.Reasons[0]
	}
	if same {
		return fmt.Sprintf("no answer from etcd at %s (%s)", strings.Join(e.Tried, ", "), e.Reasons[0])
	}
	parts := make([]string, len(e.Tried))
	for i := range e.Tried {
		parts[i] = fmt.Sprintf("%s (%s)", e.Tried[i], e.Reasons[i])
	}
	return "no answer from etcd at " + strings.Join(parts, ", ")
}

// Hedge is how long a read waits for one member before it asks the next as
// well: a member cut off from the others may hold a read until its own
// timeout, while the rest of the cluster answers at once.
const Hedge = time.Second

// call posts req as JSON to path and decodes the answer into resp (see
// open; hedge is for reads only).
func (c *Client) call(ctx context.Context, path string, req, resp any, hedge time.Duration) error {
	body, err := c.open(ctx, path, req, hedge)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.UnmarshalRead(body, resp); err != nil {
		return fmt.Errorf("etcd's answer to %s does not parse", path)
	}
	return nil
}

type attempt struct {
	n    int // the endpoint
	body io.ReadCloser
	err  error
}

// open posts req to path and returns the body of the first answer that is
// not a failure. The endpoints are tried in turn from the one that
// answered last: the next one when one fails, and with hedge > 0 (reads)
// also when one has not answered after hedge, the first still running.
// It ends when an endpoint answers, when etcd refuses the call, or when
// every endpoint has failed or ctx has ended.
func (c *Client) open(ctx context.Context, path string, req any, hedge time.Duration) (io.ReadCloser, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	first := int(c.first.Load())
	results := make(chan attempt, len(c.eps))
	cancels := make([]context.CancelFunc, len(c.eps))
	ue := &UnreachableError{}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	started, pending := 0, 0
	next := func() {
		n := (first + started) % len(c.eps)
		actx, cancel := context.WithCancel(ctx)
		cancels[n] = cancel
		started++
		pending++
		go func() { body, err := c.post(actx, c.eps[n], path, payload); results <- attempt{n, body, err} }()
		if hedge > 0 {
			timer.Reset(hedge)
		}
	}
	next()
	for pending > 0 {
		select {
		case <-timer.C:
			if started < len(c.eps) && ctx.Err() == nil {
				next()
			}
			continue
		case a := <-results:
			pending--
			var ee *Error
			refused := errors.As(a.err, &ee) && ee.Code != codeUnavailable && ee.Code != codeDeadlineExceeded
			if a.err == nil || refused { // an answer: the others are not wanted
				for i, cancel := range cancels {
					if cancel != nil && i != a.n {
						cancel()
					}
				}
				go drain(results, pending)
			}
			if a.err == nil {
				c.first.Store(int32(a.n))
				return &cancelOnClose{a.body, cancels[a.n]}, nil
			}
			cancels[a.n]()
			if refused {
				return nil, a.err // asking another member changes nothing
			}
			ue.add(c.eps[a.n], describe(ctx, a.err))
			if started < len(c.eps) && ctx.Err() == nil {
				next()
			}
		}
	}
	return nil, ue
}

// drain closes the answers of attempts no longer wanted.
func drain(results <-chan attempt, pending int) {
	for range pending {
		if a := <-results; a.body != nil {
			a.body.Close()
		}
	}
}

// cancelOnClose ends an attempt's context once its answer is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// post sends one request to one endpoint.
func (c *Client) post(ctx context.Context, ep, path string, payload []byte) (io.ReadCloser, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, c.scheme+"://"+ep+path, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	r.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(r)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	return nil, answerError(resp)
}

// answerError reads the gateway's error answer: {"error", "message",
// "code"} (etcd 3.4) or {"code", "message"} (3.5 and later).
func answerError(resp *http.Response) error {
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
		Code    int    `json:"code"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(b, &e) != nil || (e.Message == "" && e.Error == "") {
		code := 0
		if resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout {
			code = codeUnavailable
		}
		return &Error{Code: code, Message: fmt.Sprintf("etcd answered %s", resp.Status)}
	}
	if e.Message == "" {
		e.Message = e.Error
	}
	return &Error{Code: e.Code, Message: e.Message}
}

// describe says in a few words why an endpoint did not answer, without
// Go's internals.
func describe(ctx context.Context, err error) string {
	var ne net.Error
	var ee *Error
	switch {
	case errors.As(err, &ee) && strings.HasPrefix(ee.Message, "connection error"):
		// etcd's gateway could not reach etcd's own gRPC server: under
		// --client-cert-auth, etcd's --cert-file must allow client
		// authentication too (docs/fleet.md).
		return "etcd's JSON gateway cannot reach etcd's gRPC server (is etcd's --cert-file good for client authentication?)"
	case errors.As(err, &ee):
		return ee.Message
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return "no answer before the deadline"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	case errors.As(err, &ne) && ne.Timeout():
		return "connection timed out"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "cannot resolve " + dns.Name
	}
	if isTLSError(err) {
		return "TLS handshake failed (check --fleet-cacert, --fleet-cert and --fleet-key)"
	}
	return "cannot connect"
}

// isTLSError: the typed TLS errors, and by their text the alerts a peer
// sends ("remote error: tls: bad certificate"), whose type crypto/tls does
// not export.
func isTLSError(err error) bool {
	var rec tls.RecordHeaderError
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &rec) || errors.As(err, &alert) || errors.As(err, &verify) ||
		strings.Contains(err.Error(), "tls: ") || strings.Contains(err.Error(), "x509: ")
}
