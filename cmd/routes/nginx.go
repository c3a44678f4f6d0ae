package routes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strings"

	"github.com/gracectl/gracectl/registry"
)

// Default commands of --routes-test and --routes-reload.
const (
	DefaultNginxTest   = "nginx -t"
	DefaultNginxReload = "nginx -s reload"
)

// Nginx keeps the routes in an include file that nginx's configuration
// includes inside its http block: gracectl writes the whole file (atomic
// replace), has nginx test the configuration, and reloads it. A file nginx
// refuses is replaced by the one before it at once. Nothing but the file is
// ever written.
type Nginx struct {
	Path   string // the include file
	Test   string // shell command testing nginx's configuration (nginx -t)
	Reload string // shell command reloading it (nginx -s reload)
	Config Config

	refused  []byte          // the last file nginx refused: not tried again
	fallback []byte          // what nginx took instead of it (nil: nothing, the file stayed)
	refusal  error           // why
	accepted map[string]bool // the names of the last table nginx took whole
	pending  bool            // the file changed but nginx has not reloaded it yet
}

// Name says which file this is.
func (n *Nginx) Name() string { return "nginx (" + n.Path + ")" }

// Check tests nginx's configuration as it is now.
func (n *Nginx) Check(ctx context.Context) error {
	if fi, err := os.Stat(dirOf(n.Path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("the folder of the nginx include %s does not exist", n.Path)
	}
	if out, err := run(ctx, n.Test); err != nil {
		return fmt.Errorf("nginx's configuration fails its test before any change (%s): %s", n.Test, out)
	}
	return nil
}

func dirOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// run runs a shell command and returns its output's last meaningful line.
func run(ctx context.Context, command string) (string, error) {
	out, err := exec.CommandContext(ctx, "/bin/sh", "-c", command).CombinedOutput()
	if err != nil {
		return lastLine(out, err), err
	}
	return "", nil
}

// lastLine picks nginx's message: its "[emerg]" line, else the last line.
func lastLine(out []byte, err error) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, l := range lines {
		for _, level := range []string{"[emerg] ", "[alert] ", "[crit] ", "[error] "} {
			if _, msg, ok := strings.Cut(l, level); ok {
				// Without nginx's time, level and PID#TID.
				if id, rest, ok := strings.Cut(msg, ": "); ok && !strings.Contains(id, " ") {
					msg = rest
				}
				if msg = oneLine(msg); msg != "" {
					return msg
				}
			}
		}
	}
	if l := oneLine(lines[len(lines)-1]); l != "" {
		return l
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return "it could not be run"
}

// Apply writes the file when it differs from t, tests, reloads. When the
// test refuses it, the names nginx has not accepted before are left out
// and the rest tried, so that withdrawals still reach nginx; when that is
// refused too, the file is put back as it was. A refused table is not
// tried again until it changes. A reload that fails is tried again at the
// next apply.
func (n *Nginx) Apply(ctx context.Context, t *Table) (bool, error) {
	old, err := os.ReadFile(n.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("cannot read the nginx include %s", n.Path)
	}
	exists := err == nil
	want := NginxInclude(t)
	if n.refused != nil && bytes.Equal(want, n.refused) {
		return n.settle(ctx, old, exists, n.fallback, n.refusal)
	}
	if exists && bytes.Equal(old, want) {
		n.refused = nil
		return n.reload(ctx, false, nil)
	}
	msg, err := n.try(ctx, want)
	if err == nil {
		n.refused, n.accepted, n.pending = nil, hosts(t), true
		return n.reload(ctx, true, nil)
	}
	refusal := fmt.Errorf("nginx refused the routes (%s)", msg)
	var fallback []byte
	if cut, left := n.withoutNew(t); len(left) > 0 {
		if _, err := n.try(ctx, cut); err == nil {
			fallback = cut
			refusal = fmt.Errorf("nginx refused the routes (%s); left out until that changes: %s", msg, strings.Join(left, ", "))
		}
	}
	n.refused, n.fallback, n.refusal = want, fallback, refusal
	return n.settle(ctx, old, exists, fallback, refusal)
}

// settle leaves the file holding fallback, which nginx took, or, when nil,
// as it was before (old), and returns the refusal.
func (n *Nginx) settle(ctx context.Context, old []byte, exists bool, fallback []byte, refusal error) (bool, error) {
	cur, err := os.ReadFile(n.Path)
	if fallback == nil {
		switch {
		case exists && (err != nil || !bytes.Equal(cur, old)):
			err = n.write(old)
		case !exists && err == nil:
			err = os.Remove(n.Path)
		default:
			err = nil
		}
		if err != nil {
			return false, fmt.Errorf("%v, and the file before could not be put back: %s", refusal, n.Path)
		}
		return false, fmt.Errorf("%v; %s is as it was", refusal, n.Path)
	}
	changed := !exists || !bytes.Equal(old, fallback)
	if err != nil || !bytes.Equal(cur, fallback) {
		if err := n.write(fallback); err != nil {
			return false, err
		}
	}
	n.pending = n.pending || changed
	return n.reload(ctx, changed, refusal)
}

// reload reloads nginx if the file changed since it last did.
func (n *Nginx) reload(ctx context.Context, changed bool, refusal error) (bool, error) {
	if n.pending {
		if msg, err := run(ctx, n.Reload); err != nil {
			return changed, fmt.Errorf("nginx could not be reloaded (%s: %s); %s holds the routes for its next start", n.Reload, msg, n.Path)
		}
		n.pending = false
	}
	return changed, refusal
}

// try writes b and has nginx test it.
func (n *Nginx) try(ctx context.Context, b []byte) (string, error) {
	if err := n.write(b); err != nil {
		return err.Error(), err
	}
	return run(ctx, n.Test)
}

// withoutNew is t's file without the names nginx has not accepted yet,
// and those names.
func (n *Nginx) withoutNew(t *Table) ([]byte, []string) {
	cut := *t
	cut.Routes = nil
	var left []string
	for _, r := range t.Routes {
		if n.accepted[r.Host] {
			cut.Routes = append(cut.Routes, r)
		} else {
			left = append(left, r.Host)
		}
	}
	return NginxInclude(&cut), left
}

func hosts(t *Table) map[string]bool {
	m := map[string]bool{}
	for _, r := range t.Routes {
		m[r.Host] = true
	}
	return m
}

func (n *Nginx) write(b []byte) error {
	perm := fs.FileMode(0o644)
	info, _ := os.Lstat(n.Path)
	if info != nil && info.Mode().IsRegular() {
		perm = info.Mode().Perm()
	} else {
		info = nil
	}
	if err := registry.WriteFileAtomic(n.Path, b, perm, info); err != nil {
		return fmt.Errorf("cannot write the nginx include %s", n.Path)
	}
	return nil
}

// Withdraw leaves the include without a route (nginx's configuration still
// includes it) and reloads.
func (n *Nginx) Withdraw(ctx context.Context) error {
	_, err := n.Apply(ctx, &Table{})
	return err
}

// nginxListen is --routes-listen as nginx's listen directive takes it.
func nginxListen(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return port
	}
	return net.JoinHostPort(host, port)
}

// NginxInclude is the include file for t: a server block per host name
// (routed: proxy_pass to the port, a failure on the way a 503; down: 503),
// and one for every other name under the domain (404). With no route at
// all (the watchdog stopped) it holds no server block.
func NginxInclude(t *Table) []byte {
	var b bytes.Buffer
	b.WriteString("# Written by gracectl watch --routes: replaced whole at every change, do not edit.\n")
	b.WriteString("# Include it inside nginx's http block. docs/routes.md\n")
	if len(t.Routes) == 0 && t.Listen == "" {
		return b.Bytes()
	}
	listen := nginxListen(t.Listen)
	for _, r := range t.Routes {
		fmt.Fprintf(&b, "\nserver {\n    listen %s;\n    server_name %s;\n    default_type text/plain;\n", listen, r.Host)
		if r.State == StateRouted {
			fmt.Fprintf(&b, `    location / {
        proxy_pass http://127.0.0.1:%d;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_intercept_errors off;
        error_page 502 504 =503 @gracectl_down;
    }
    location @gracectl_down {
        return 503 "gracectl: %s is not answering\n";
    }
`, r.Port, r.Host)
		} else {
			fmt.Fprintf(&b, "    add_header Cache-Control no-store always;\n    return 503 \"gracectl: %s is down (%s)\\n\";\n", r.Host, nginxText(r.Reason))
		}
		b.WriteString("}\n")
	}
	fmt.Fprintf(&b, "\nserver {\n    listen %s;\n    server_name *.%s;\n    default_type text/plain;\n    return 404 \"gracectl: no service is called $host\\n\";\n}\n", listen, t.Domain)
	return b.Bytes()
}

// nginxText keeps a word of ours safe inside a quoted nginx string.
func nginxText(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r == ' ' || r == '_' {
			return r
		}
		return -1
	}, s)
}
