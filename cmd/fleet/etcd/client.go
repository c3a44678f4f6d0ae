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
	Tried  []string // the endpoints tried, in order
	Reason string   // why the last one did not answer
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("no answer from etcd at %s (%s)", strings.Join(e.Tried, ", "), e.Reason)
}

// call posts req as JSON to path and decodes the answer into resp, trying
// the endpoints in turn until one answers or ctx ends.
func (c *Client) call(ctx context.Context, path string, req, resp any) error {
	body, err := c.open(ctx, path, req)
	if err != nil {
		return err
	}
	defer body.Close()
	if err := json.UnmarshalRead(body, resp); err != nil {
		return fmt.Errorf("etcd's answer to %s does not parse", path)
	}
	return nil
}

// open posts req to path on one endpoint after another and returns the
// body of the first answer that is not a failure.
func (c *Client) open(ctx context.Context, path string, req any) (io.ReadCloser, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var tried []string
	reason := ""
	first := int(c.first.Load())
	for i := range c.eps {
		n := (first + i) % len(c.eps)
		if ctx.Err() != nil {
			break
		}
		body, err := c.post(ctx, c.eps[n], path, payload)
		if err == nil {
			c.first.Store(int32(n))
			return body, nil
		}
		var ee *Error
		if errors.As(err, &ee) && ee.Code != codeUnavailable && ee.Code != codeDeadlineExceeded {
			return nil, err // etcd answered: asking another member changes nothing
		}
		tried = append(tried, c.eps[n])
		reason = describe(ctx, err)
	}
	if len(tried) == 0 {
		tried, reason = c.eps[first:first+1], describe(ctx, ctx.Err())
	}
	return nil, &UnreachableError{Tried: tried, Reason: reason}
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

func isTLSError(err error) bool {
	var rec tls.RecordHeaderError
	var alert tls.AlertError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &rec) || errors.As(err, &alert) || errors.As(err, &verify) ||
		strings.Contains(err.Error(), "tls: ") || strings.Contains(err.Error(), "x509: ")
}
