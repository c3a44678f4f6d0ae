package cmd

import (
	"bytes"
	"testing"
)

// writeTable draws check's table: columns as wide as their widest cell on
// a terminal (a CJK character or an emoji takes two columns, a combining
// accent none), left-aligned, ASCII borders.
func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	writeTable(&b, []string{"Port", "Service"}, [][]string{{"8000", "日本"}, {"18080", "web"}, {"8001", ""}, {"8002", "café"}, {"8003", "🚀"}})
	want := `+-------+---------+
| Port  | Service |
+-------+---------+
| 8000  | 日本    |
| 18080 | web     |
| 8001  |         |
| 8002  | café    |
| 8003  | 🚀      |
+-------+---------+
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	writeTable(&b, []string{"Port", "Service"}, nil)
	if want := "+------+---------+\n| Port | Service |\n+------+---------+\n+------+---------+\n"; b.String() != want {
		t.Fatalf("empty table: got\n%s\nwant\n%s", b.String(), want)
	}
}
