package registry

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Every JSON document gracectl reads or writes — the registry, the audit
// log, the watchdog state, `--json` and the HTTP API — goes through
// github.com/go-json-experiment/json (encoding/json/v2) with these options.
// Strings are escaped as encoding/json escaped them (<, >, &, U+2028 and
// U+2029 as \u escapes), so files written by earlier versions read the same.
//
// Maps are written with their keys sorted (Deterministic). When writing,
// names are not checked for duplicates: they come from Go
// structs and maps, which cannot hold any, and the check costs a map insert
// per name (docs/benchmarks). Reading always refuses duplicates.
var (
	compactJSON  = json.JoinOptions(jsontext.EscapeForHTML(true), jsontext.EscapeForJS(true), jsontext.AllowDuplicateNames(true), json.Deterministic(true))
	indentedJSON = json.JoinOptions(compactJSON, jsontext.WithIndent("  "))
)

// MarshalLine encodes v on one line, as the audit log has it.
func MarshalLine(v any) ([]byte, error) { return json.Marshal(v, compactJSON) }

// WriteIndented writes v indented by two spaces with a final newline: the
// form of every file gracectl writes and of every `--json` and API answer.
func WriteIndented(w io.Writer, v any) error {
	if err := json.MarshalWrite(w, v, indentedJSON); err != nil {
		return err
	}
	_, err := w.Write([]byte{'\n'})
	return err
}

// MarshalIndented is WriteIndented into a byte slice.
func MarshalIndented(v any) ([]byte, error) {
	var buf bytes.Buffer
	err := WriteIndented(&buf, v)
	return buf.Bytes(), err
}

// Unmarshal decodes one JSON document into v. Duplicate names and invalid
// UTF-8 are errors.
func Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// MarshalJSONTo writes the seed's form, or null for the zero Time.
func (t Time) MarshalJSONTo(enc *jsontext.Encoder) error {
	if t.IsZero() {
		return enc.WriteToken(jsontext.Null)
	}
	b := enc.AvailableBuffer()
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return enc.WriteValue(append(b, '"'))
}

// UnmarshalJSONFrom accepts any RFC 3339 time (a hand-edited file may carry
// an offset or fractions), "" and null.
func (t *Time) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		*t = Time{}
		return nil
	case '"':
	default:
		return fmt.Errorf("timestamp must be a string, got %s", tok.Kind())
	}
	s := tok.String()
	if s == "" {
		*t = Time{}
		return nil
	}
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("timestamp %s is not RFC 3339", Quote(s))
	}
	*t = Time{v.UTC()}
	return nil
}

// MarshalJSONTo writes the allocations in numeric port order; the library
// would sort the keys as text ("10000" before "9000").
func (m Allocations) MarshalJSONTo(enc *jsontext.Encoder) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		if len(x) != len(y) { // port keys have no leading zeros (Parse)
			return len(x) - len(y)
		}
		return strings.Compare(x, y)
	})
	if err := enc.WriteToken(jsontext.BeginObject); err != nil {
		return err
	}
	for _, k := range keys {
		if err := enc.WriteToken(jsontext.String(k)); err != nil {
			return err
		}
		if err := json.MarshalEncode(enc, m[k]); err != nil {
			return err
		}
	}
	return enc.WriteToken(jsontext.EndObject)
}

// Parse decodes and validates a registry file's contents. A file that is
// not a registry is an error, never an empty registry.
func Parse(data []byte) (*Registry, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("file is empty, not a registry (expected a JSON object)")
	}
	if trimmed[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	r := new(Registry)
	if err := json.Unmarshal(data, r); err != nil {
		return nil, describeJSONError(err, data)
	}
	if r.Allocations == nil {
		r.Allocations = Allocations{}
	}
	for key, a := range r.Allocations {
		if a == nil {
			return nil, fmt.Errorf("allocation %s: is null", Quote(key))
		}
		if err := a.validateStored(key); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// describeJSONError names the place in the file and the JSON the way a
// person editing it would: `allocation "8000": field "port": expected a
// whole number, got a JSON string`, not the Go types the library names.
func describeJSONError(err error, data []byte) error {
	var se *json.SemanticError
	if errors.As(err, &se) {
		msg := "unexpected JSON"
		if se.Err != nil && se.JSONKind == 0 { // a method's own error (Time)
			return errors.New(where(se.JSONPointer) + se.Err.Error() + lineCol(data, se.ByteOffset))
		}
		if se.GoType != nil {
			msg = "expected " + jsonKind(se.GoType)
		}
		if se.JSONKind != 0 {
			msg += ", got JSON " + kindName(se.JSONKind)
		}
		if se.Err != nil {
			msg += ": " + se.Err.Error()
		}
		return errors.New(where(se.JSONPointer) + msg + lineCol(data, se.ByteOffset))
	}
	var syn *jsontext.SyntacticError
	if errors.As(err, &syn) {
		line, col := position(data, syn.ByteOffset)
		return fmt.Errorf("%sinvalid JSON at line %d, column %d: %v", where(syn.JSONPointer), line, col, syn.Err)
	}
	return err
}

// position turns a byte offset into a line and a column, both from 1.
func position(data []byte, off int64) (line, col int) {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	return line, int(off) - bytes.LastIndexByte(before, '\n')
}

// lineCol is " (line L, column C)" for an offset the library knows.
func lineCol(data []byte, off int64) string {
	if off <= 0 {
		return ""
	}
	line, col := position(data, off)
	return fmt.Sprintf(" (line %d, column %d)", line, col)
}

// where turns a JSON pointer into words: /allocations/8000/port is
// `allocation "8000": field "port": `.
func where(p jsontext.Pointer) string {
	var toks []string
	for t := range p.Tokens() {
		toks = append(toks, t)
	}
	var b strings.Builder
	if len(toks) >= 2 && toks[0] == "allocations" {
		fmt.Fprintf(&b, "allocation %q: ", toks[1])
		toks = toks[2:]
	}
	if len(toks) > 0 {
		fmt.Fprintf(&b, "field %q: ", strings.Join(toks, "/"))
	}
	return b.String()
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint64:
		return "a whole number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	}
	return t.String()
}

func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	}
	return k.String()
}

// Encode writes r as the registry file holds it.
func (r *Registry) Encode(w io.Writer) error { return WriteIndented(w, r) }

func (a *Allocation) validateStored(key string) error {
	port, ok := portKey(key)
	if !ok {
		return fmt.Errorf("allocation key %s is not a port number", Quote(key))
	}
	if a.Port != port {
		return fmt.Errorf("allocation %q: field \"port\" is %d, not %d", key, a.Port, port)
	}
	if a.ServiceName == "" {
		return fmt.Errorf("allocation %q: field \"service_name\" is empty", key)
	}
	if a.PID < 0 {
		return fmt.Errorf("allocation %q: field \"pid\" is negative", key)
	}
	return nil
}

// portKey reads an allocation key: a port number 1-65535 written the one
// way strconv.Itoa writes it.
func portKey(key string) (int, bool) {
	p, err := strconv.Atoi(key)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != key {
		return 0, false
	}
	return p, true
}

// MarshalJSONTo writes the PID, or null when there is no owner.
func (p OwnerPID) MarshalJSONTo(enc *jsontext.Encoder) error {
	if p <= 0 {
		return enc.WriteToken(jsontext.Null)
	}
	return enc.WriteToken(jsontext.Int(int64(p)))
}

// UnmarshalJSONFrom reads a PID, or null (and 0, as earlier versions
// wrote no key) for none.
func (p *OwnerPID) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() == 'n' {
		*p = 0
		_, err := dec.ReadToken()
		return err
	}
	return json.UnmarshalDecode(dec, (*int)(p))
}
