package tapstream

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// attackPath clears the screen, rings the bell and opens a C1 control
// sequence (a raw 0x9b byte, CSI to 8-bit terminals) if printed raw.
const attackPath = "/a\x1b[2J\x07b\x9b"

// bidiControls are Unicode's bidirectional controls, every one: ALM, LRM,
// RLM, LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI.
const bidiControls = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

// rawControl returns the first control character, DEL, bidirectional
// control or invalid UTF-8 byte in s other than a newline, and false when
// there is none.
func rawControl(s string) (string, bool) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || strings.ContainsRune(bidiControls, r) || (r == utf8.RuneError && n == 1)) {
			return s[i : i+n], true
		}
		i += n
	}
	return "", false
}

func TestPrintableEscapesControlsAndKeepsText(t *testing.T) {
	for in, want := range map[string]string{
		"/api/users?q=1":       "/api/users?q=1",
		"/café/日本/\u00a0x":     "/café/日本/\u00a0x",
		`/a\b`:                 `/a\b`,
		"\ufffd":               "\ufffd",
		attackPath:             `/a\x1b[2J\x07b\x9b`,
		"a\tb\r\nc\x00":        `a\x09b\x0d\x0ac\x00`,
		"del\x7f":              `del\x7f`,
		"c1\u009b31m":          `c1\u009b31m`,
		"\x1b]0;owned\x07":     `\x1b]0;owned\x07`,
		"bad\xc3(utf8\xff":     `bad\xc3(utf8\xff`,
		"trunc\xe6\x97":        `trunc\xe6\x97`,
		"end\u0085nel\u009f,é": `end\u0085nel\u009f,é`,
		// Bidirectional controls: /api/\u202enimda/ shows as /api//admin.
		"/api/\u202enimda/":           `/api/\u202enimda/`,
		"/\u2067x\u2069/\u200e\u200f": `/\u2067x\u2069/\u200e\u200f`,
		bidiControls:                  `\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069`,
		// Their neighbours are text.
		"\u061b\u061d\u200d\u2010\u202f\u2070": "\u061b\u061d\u200d\u2010\u202f\u2070",
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func hostileTop() *Top {
	top := NewTop("inbound")
	top.Add(PodEvent{Namespace: "demo", Pod: "web-1", Workload: "web", Event: Event{Type: "start", ID: 1, Direction: "inbound",
		Method: "GET\x1b[1m", Path: attackPath, Authority: "web\u009b2J", ClientID: "spiffe://cluster.local/ns/demo/sa/\x1b[8m"}})
	top.Add(PodEvent{Namespace: "demo", Pod: "web-1", Workload: "web", Event: Event{Type: "end", ID: 1, Status: 200, LatencyMs: 1}})
	return top
}

func TestTopTablePrintsNoControlCharacters(t *testing.T) {
	var b bytes.Buffer
	if err := WriteTable(&b, hostileTop().Rows("count")); err != nil {
		t.Fatal(err)
	}
	if c, ok := rawControl(b.String()); ok {
		t.Errorf("the table holds a raw %q:\n%q", c, b.String())
	}
	if !strings.Contains(b.String(), `/a\x1b[2J\x07b\x9b`) || !strings.Contains(b.String(), `GET\x1b[1m`) || !strings.Contains(b.String(), `demo/\x1b[8m`) {
		t.Errorf("the table does not show the escaped fields:\n%s", b.String())
	}
}

func TestTopJSONEscapesEveryControlCharacter(t *testing.T) {
	top := NewTop("outbound")
	top.Add(PodEvent{Namespace: "demo", Pod: "web-1", Workload: "web", Event: Event{Type: "start", ID: 1, Direction: "outbound",
		Method: "GET\x7f", Path: attackPath, Authority: "api\u009b2J"}})
	top.Add(PodEvent{Namespace: "demo", Pod: "web-1", Workload: "web", Event: Event{Type: "end", ID: 1, Status: 200, LatencyMs: 1}})
	var b bytes.Buffer
	if err := WriteJSON(&b, top.Rows("count")); err != nil {
		t.Fatal(err)
	}
	if c, ok := rawControl(b.String()); ok {
		t.Errorf("the JSON holds a raw %q:\n%s", c, b.String())
	}
	var rows []Row
	if err := json.Unmarshal(b.Bytes(), &rows); err != nil {
		t.Fatalf("the JSON does not decode: %v\n%s", err, b.String())
	}
	// encoding/json replaces invalid UTF-8 (the raw 0x9b) with U+FFFD; the
	// rest comes back as it was.
	if len(rows) != 1 || rows[0].Method != "GET\x7f" || rows[0].Destination != "api\u009b2J" || rows[0].Path != "/a\x1b[2J\x07b\ufffd" {
		t.Errorf("decoded rows %+v", rows)
	}
}

func TestJSONEscapesBidirectionalControls(t *testing.T) {
	for _, s := range []string{"/api/\u202enimda/", bidiControls} {
		var b bytes.Buffer
		if err := WriteJSONLine(&b, s); err != nil {
			t.Fatal(err)
		}
		var back string
		if c, ok := rawControl(strings.TrimSuffix(b.String(), "\n")); ok {
			t.Errorf("WriteJSONLine(%q) = %s holds a raw %q", s, b.String(), c)
		} else if err := json.Unmarshal(b.Bytes(), &back); err != nil || back != s {
			t.Errorf("WriteJSONLine(%q) = %s decodes to %q (%v)", s, b.String(), back, err)
		}
	}
	var b bytes.Buffer
	if err := WriteJSONLine(&b, "/api/\u202enimda/"); err != nil || b.String() != `"/api/\u202enimda/"`+"\n" {
		t.Errorf("WriteJSONLine = %s (%v)", b.String(), err)
	}
}

func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"", "/api", attackPath, "café\u009b\x7f", "\xff\xfe", "\x1b]0;x\x07", "/api/\u202enimda/", bidiControls + "\u200d\u2070"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := Printable(s)
		if c, ok := rawControl(strings.ReplaceAll(p, "\n", "\x00")); ok {
			t.Fatalf("Printable(%q) = %q holds a raw %q", s, p, c)
		}
		if _, ok := rawControl(strings.ReplaceAll(s, "\n", "\x00")); !ok && p != s {
			t.Fatalf("Printable(%q) = %q changed printable text", s, p)
		}
		var b bytes.Buffer
		if err := WriteJSONLine(&b, s); err != nil {
			t.Fatal(err)
		}
		var back string
		if err := json.Unmarshal(b.Bytes(), &back); err != nil {
			t.Fatalf("WriteJSONLine(%q) = %q does not decode: %v", s, b.String(), err)
		}
		if c, ok := rawControl(strings.TrimSuffix(b.String(), "\n")); ok || (utf8.ValidString(s) && back != s) {
			t.Fatalf("WriteJSONLine(%q) = %q (raw %q), decodes to %q", s, b.String(), c, back)
		}
	})
}
