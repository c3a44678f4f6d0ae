package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/gracectl/gracectl/probe"
)

// RequestTimeout bounds one question to an engine (not a stop, which takes
// as long as the container's stop timeout, nor the event stream).
const RequestTimeout = 5 * time.Second

// maxBody bounds what is read of one answer.
const maxBody = 16 << 20

// Engine is one container engine's API socket, checked: the process serving
// it is UID (SO_PEERCRED).
type Engine struct {
	Socket string
	Kind   string // "docker" or "podman", from the Server header of its answers
	UID    int
	// samePIDs: the engine sees processes in this process's PID namespace,
	// so the main PIDs it names are PIDs here.
	samePIDs bool
	// sameNet: the engine runs in this process's network namespace, so
	// the host ports it publishes are ports here.
	sameNet bool
	hc      *http.Client
}

// ErrUntrusted means the socket is served by a user who is neither root nor
// the user concerned: what it says is not believed.
var ErrUntrusted = errors.New("the socket is served by another user")

// connect opens a client for the engine at socket and asks it who it is.
// Every connection it makes checks the peer: root, or uid.
func connect(ctx context.Context, socket string, uid int) (*Engine, error) {
	g := &Engine{Socket: socket, UID: -1}
	var once sync.Once
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, err
			}
			puid, ppid, err := peer(c)
			if err == nil && puid != 0 && puid != uid {
				err = fmt.Errorf("%s: %w (uid %d)", socket, ErrUntrusted, puid)
			}
			if err != nil {
				c.Close()
				return nil, err
			}
			once.Do(func() {
				g.UID, g.samePIDs, g.sameNet = puid, probe.SamePIDNamespace(ppid), probe.SameNetNamespace(ppid)
			})
			return c, nil
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	g.hc = &http.Client{Transport: tr}
	resp, err := g.do(ctx, http.MethodGet, "/_ping", RequestTimeout)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	resp.Body.Close()
	g.Kind = kindOf(resp.Header.Get("Server"))
	if resp.StatusCode != http.StatusOK || g.Kind == "" {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("%s does not answer as a container engine (HTTP %d, server %q)", socket, resp.StatusCode, resp.Header.Get("Server"))
	}
	return g, nil
}

// kindOf tells the engine from its Server header: "Docker/20.10.24 (linux)"
// or "Libpod/4.3.1 (linux)".
func kindOf(server string) string {
	switch {
	case strings.HasPrefix(server, "Docker/"):
		return "docker"
	case strings.HasPrefix(server, "Libpod/"):
		return "podman"
	}
	return ""
}

// close drops the engine's idle connections.
func (g *Engine) close() { g.hc.CloseIdleConnections() }

// do sends one request; timeout 0 leaves it to ctx.
func (g *Engine) do(ctx context.Context, method, path string, timeout time.Duration) (*http.Response, error) {
	cancel := func() {}
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	// The host is a placeholder: the transport dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://engine"+path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		cancel()
		return nil, plainError(g.Socket, err)
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// plainError says what went wrong with an engine's socket without the
// layers of Go's HTTP and socket errors: "/run/docker.sock: permission
// denied", not "Get \"http://engine/_ping\": dial unix …: connect: …".
func plainError(sock string, err error) error {
	var errno syscall.Errno
	var ue *url.Error
	switch {
	case errors.Is(err, ErrUntrusted):
		return err // says which socket already
	case errors.As(err, &errno):
		return fmt.Errorf("%s: %w", sock, errno)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: no answer in time", sock)
	case errors.As(err, &ue):
		return fmt.Errorf("%s: %w", sock, ue.Err)
	}
	return fmt.Errorf("%s: %w", sock, err)
}

type cancelBody struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelBody) Close() error { err := b.ReadCloser.Close(); b.cancel(); return err }

// get reads one whole answer; a 404 is (nil, false, nil).
func (g *Engine) get(ctx context.Context, path string) (body []byte, found bool, err error) {
	resp, err := g.do(ctx, http.MethodGet, path, RequestTimeout)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
	switch {
	case err != nil:
		return nil, false, fmt.Errorf("%s: %w", g.Socket, err)
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, nil
	case resp.StatusCode != http.StatusOK:
		return nil, false, fmt.Errorf("%s: GET %s: HTTP %d: %s", g.Socket, path, resp.StatusCode, engineMessage(body))
	}
	return body, true, nil
}

// engineMessage is the "message" of an engine's error answer, made safe to
// print.
func engineMessage(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &m, jsontext.AllowInvalidUTF8(true)) != nil || m.Message == "" {
		return "no message"
	}
	return printable(m.Message, 200)
}

// printable keeps the printable ASCII of s, at most n bytes: engine text
// reaches terminals and logs.
func printable(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c >= 0x20 && c < 0x7f {
			b = append(b, c)
		}
	}
	return string(b)
}

// published lists the running containers and the host TCP ports each
// publishes: GET /containers/json.
func (g *Engine) published(ctx context.Context) (map[int]Info, error) {
	body, _, err := g.get(ctx, "/containers/json")
	if err != nil {
		return nil, err
	}
	ports, err := parseList(body)
	if err != nil {
		return nil, fmt.Errorf("%s: the container list: %w", g.Socket, err)
	}
	for p, in := range ports {
		in.Engine = g.Kind
		ports[p] = in
	}
	return ports, nil
}

// inspect asks for one container: GET /containers/{id}/json.
func (g *Engine) inspect(ctx context.Context, id string) (*State, error) {
	if !validID(id) {
		return nil, fmt.Errorf("%q is not a container ID or name", printable(id, 80))
	}
	body, found, err := g.get(ctx, "/containers/"+url.PathEscape(id)+"/json")
	if err != nil {
		return nil, err
	}
	if !found {
		return &State{Info: Info{ID: id, Engine: g.Kind}}, nil
	}
	st, err := parseInspect(body)
	if err != nil {
		return nil, fmt.Errorf("%s: container %s: %w", g.Socket, printable(id, 80), err)
	}
	st.Engine, st.NATHere = g.Kind, g.natHere()
	if !g.samePIDs {
		st.PID = 0 // a PID of another namespace names nothing here
	}
	return st, nil
}

// natHere reports whether the ports the engine publishes are published in
// this network namespace even where no process listens on them (through
// NAT rules alone): only root's engines can make such rules, and only one
// in this network namespace makes them here. A rootless engine's ports are
// always held by a listener of its own (rootlesskit, rootlessport, pasta).
func (g *Engine) natHere() bool { return g.UID == 0 && g.sameNet }

// stop stops a container as `docker stop` does: its stop signal, then,
// after its stop timeout, SIGKILL. POST /containers/{id}/stop without t
// leaves both to the container's own settings. It returns once the
// container has stopped (or is gone).
func (g *Engine) stop(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("%q is not a container ID", printable(id, 80))
	}
	resp, err := g.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/stop", 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch resp.StatusCode {
	case http.StatusNoContent, http.StatusNotModified, http.StatusNotFound, http.StatusOK:
		return nil // stopped, already stopped, or gone
	}
	return fmt.Errorf("%s: stopping container %s: HTTP %d: %s", g.Socket, printable(id, 80), resp.StatusCode, engineMessage(body))
}

// validID accepts what an engine's container IDs and names are made of.
func validID(id string) bool {
	if id == "" || len(id) > 256 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// Event is one container event of an engine.
type Event struct {
	ID     string
	Action string // "start", "die", "destroy", ...
}

// Follow streams the engine's container events to fn until ctx ends or the
// stream breaks (the engine stopped): GET /events, filtered to containers.
// opened is called once the stream is open.
func (g *Engine) Follow(ctx context.Context, opened func(), fn func(Event)) error {
	q := url.Values{"filters": {`{"type":["container"]}`}}
	resp, err := g.do(ctx, http.MethodGet, "/events?"+q.Encode(), 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: GET /events: HTTP %d", g.Socket, resp.StatusCode)
	}
	opened()
	return decodeEvents(resp.Body, fn)
}

// decodeEvents reads a stream of JSON event objects.
func decodeEvents(r io.Reader, fn func(Event)) error {
	dec := jsontext.NewDecoder(r, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true))
	for {
		var ev struct {
			Type   string `json:"Type"`
			Action string `json:"Action"`
			Actor  struct {
				ID string `json:"ID"`
			} `json:"Actor"`
		}
		if err := json.UnmarshalDecode(dec, &ev); err != nil {
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF // the engine closed the stream
			}
			return err
		}
		if ev.Type == "container" && validID(ev.Actor.ID) {
			// "exec_start: sh" and "health_status: healthy" carry a detail.
			action, _, _ := strings.Cut(ev.Action, ":")
			fn(Event{ID: ev.Actor.ID, Action: action})
		}
	}
}

// parseList reads GET /containers/json: each container's host TCP ports.
func parseList(body []byte) (map[int]Info, error) {
	var list []struct {
		ID    string   `json:"Id"`
		Names []string `json:"Names"`
		Image string   `json:"Image"`
		Ports []struct {
			PublicPort int    `json:"PublicPort"`
			Type       string `json:"Type"`
		} `json:"Ports"`
	}
	if err := json.Unmarshal(body, &list, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, errors.New("not the engine's JSON")
	}
	out := map[int]Info{}
	for _, c := range list {
		if !validID(c.ID) {
			continue
		}
		in := Info{ID: c.ID, Image: printable(c.Image, 256)}
		if len(c.Names) > 0 {
			in.Name = printable(strings.TrimPrefix(c.Names[0], "/"), 256)
		}
		for _, p := range c.Ports {
			if p.PublicPort > 0 && p.PublicPort < 65536 && (p.Type == "tcp" || p.Type == "") {
				out[p.PublicPort] = in
			}
		}
	}
	return out, nil
}

// parseInspect reads GET /containers/{id}/json.
func parseInspect(body []byte) (*State, error) {
	var c struct {
		ID    string `json:"Id"`
		Name  string `json:"Name"`
		State struct {
			Running    bool `json:"Running"`
			Paused     bool `json:"Paused"`
			Restarting bool `json:"Restarting"`
			Pid        int  `json:"Pid"`
			ExitCode   int  `json:"ExitCode"`
		} `json:"State"`
		Config struct {
			Image string `json:"Image"`
		} `json:"Config"`
		NetworkSettings struct {
			Ports map[string][]struct {
				HostPort string `json:"HostPort"`
			} `json:"Ports"`
		} `json:"NetworkSettings"`
	}
	if err := json.Unmarshal(body, &c, jsontext.AllowInvalidUTF8(true), jsontext.AllowDuplicateNames(true)); err != nil {
		return nil, errors.New("not the engine's JSON")
	}
	if !validID(c.ID) {
		return nil, errors.New("no container ID in the answer")
	}
	st := &State{Info: Info{ID: c.ID, Name: printable(strings.TrimPrefix(c.Name, "/"), 256), Image: printable(c.Config.Image, 256)},
		Exists: true, Running: (c.State.Running || c.State.Paused) && !c.State.Restarting, Restarting: c.State.Restarting, ExitCode: c.State.ExitCode}
	if st.Running && c.State.Pid > 0 {
		st.PID = c.State.Pid
	}
	for spec, binds := range c.NetworkSettings.Ports {
		if !strings.HasSuffix(spec, "/tcp") {
			continue
		}
		for _, b := range binds {
			if p, err := strconv.Atoi(b.HostPort); err == nil && p > 0 && p < 65536 && !st.Publishes(p) {
				st.Ports = append(st.Ports, p)
			}
		}
	}
	return st, nil
}
