package registry

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/gracectl/gracectl/probe/container"
)

// interpreters are the programs whose first argument, not their own name,
// says what runs. python, pypy and lua also count with a version suffix
// (python3.12, lua5.4).
var interpreters = map[string]bool{
	"python": true, "pypy": true, "node": true, "nodejs": true, "deno": true, "bun": true,
	"ruby": true, "perl": true, "php": true, "bash": true, "sh": true, "dash": true, "zsh": true,
	"lua": true, "Rscript": true, "java": true, "uv": true, "uvx": true,
}

func isInterpreter(prog string) bool {
	if interpreters[prog] {
		return true
	}
	base := strings.TrimRight(prog, "0123456789.")
	return base != prog && (base == "python" || base == "pypy" || base == "lua")
}

// StartedBy names what a command line runs, for the started_by field: the
// script for an interpreter (`python serve.py` → serve.py), the module for
// `python -m http.server` (→ http.server), the program's name otherwise. A
// login shell's dash is dropped (-bash → bash), and a script read from a
// file descriptor (bash /dev/fd/3, process substitution) is named by its
// interpreter.
func StartedBy(argv []string) string {
	if len(argv) == 0 {
		return ""
	}
	prog := strings.TrimPrefix(filepath.Base(argv[0]), "-")
	if prog == "" {
		prog = "shell"
	}
	if !isInterpreter(prog) {
		return prog
	}
	if len(argv) > 1 && isFDPath(argv[len(argv)-1]) {
		return prog
	}
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		switch {
		case a == "-m" && i+1 < len(argv):
			return argv[i+1]
		case strings.HasPrefix(a, "-m") && len(a) > 2 && prog != "node":
			return a[2:]
		case a == "-c" || a == "-e":
			return prog
		case a == "--":
			if i+1 < len(argv) {
				return filepath.Base(argv[i+1])
			}
			return prog
		case strings.HasPrefix(a, "-"):
			continue
		default:
			return filepath.Base(a)
		}
	}
	return prog
}

// isFDPath reports a path that names an open file descriptor, not a file:
// what a shell's process substitution hands an interpreter.
func isFDPath(p string) bool {
	return strings.HasPrefix(p, "/dev/fd/") || strings.HasPrefix(p, "/proc/self/fd/") || p == "/dev/stdin"
}

// ServiceFromCommand derives a service name from a command line: what
// StartedBy names, without its extension (`python serve.py` → serve); for
// `docker run --name web ...` (or podman's), the container's name.
func ServiceFromCommand(argv []string) string {
	if rc, ok := container.ParseRun(argv); ok && rc.Name != "" {
		return SafeText(rc.Name, MaxServiceName)
	}
	s := StartedBy(argv)
	if ext := filepath.Ext(s); ext != "" && ext != s && !strings.Contains(s, string(os.PathSeparator)) {
		if isScriptExt(ext) {
			s = strings.TrimSuffix(s, ext)
		}
	}
	return SafeText(s, MaxServiceName)
}

func isScriptExt(ext string) bool {
	switch ext {
	case ".py", ".js", ".mjs", ".cjs", ".ts", ".rb", ".pl", ".php", ".sh", ".lua", ".R", ".jar":
		return true
	}
	return false
}

// MaxDNSLabel is the longest DNS label (RFC 1035).
const MaxDNSLabel = 63

// DNSLabel is name as one DNS label, for the host names of `watch
// --routes` (SERVICE.DOMAIN, PORTNAME.SERVICE.DOMAIN) and everything that
// shows them: character by character as EnvWord reads it (a-z and 0-9
// kept, other letters lower-cased without their accents), every run of
// anything else one '-', none at either end. "grace_backend" is
// grace-backend, "Café API" cafe-api. ok is false when nothing is left or
// more than MaxDNSLabel characters are: such a name has no host name.
func DNSLabel(name string) (label string, ok bool) {
	var b strings.Builder
	dash := false
	for _, r := range name {
		c := envChar(r)
		if c == '_' {
			dash = b.Len() > 0
			continue
		}
		if dash {
			b.WriteByte('-')
			dash = false
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
		if b.Len() > MaxDNSLabel {
			return "", false
		}
	}
	label = b.String()
	return label, label != ""
}

// ValidDomain reports whether d is a DNS name gracectl can put host names
// under: dot-separated labels of a-z, 0-9 and inner '-', each 1 to 63
// long, 200 characters at most (leaving room for two labels before it in
// a 253-character name). Upper case is refused, not folded: the domain is
// given once, by hand.
func ValidDomain(d string) bool {
	if d == "" || len(d) > 200 {
		return false
	}
	for l := range strings.SplitSeq(d, ".") {
		if l == "" || len(l) > MaxDNSLabel || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
