package tapstream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Printable returns s safe to print on a terminal: every C0 and C1 control
// character and DEL becomes \xNN (C1 as \u00NN), every Unicode
// bidirectional control \uNNNN, and every byte that is not valid UTF-8
// \xNN, so that what a client put in its request (its path, authority,
// method, identity) can neither move the cursor, clear the screen nor
// retitle the window of the operator watching it, nor reorder the text
// shown (U+202E and nimda/ show /admin). Other text, UTF-8 included, is kept
// as it is, and s itself is returned when it needs no escaping.
func Printable(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unprintable(r, n) {
			return escapeFrom(s, i)
		}
		i += n
	}
	return s
}

// unprintable says whether the rune r, n bytes long, must be escaped.
func unprintable(r rune, n int) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || bidi(r) || (r == utf8.RuneError && n == 1)
}

// bidi says whether r is a Unicode bidirectional control: the Arabic letter
// mark, the left-to-right and right-to-left marks, embeddings, overrides
// and isolates and their terminators, which reorder the text around them.
func bidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// escapeFrom escapes s from its first unprintable rune, at i.
func escapeFrom(s string, i int) string {
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case !unprintable(r, n):
			b.WriteString(s[i : i+n])
		case n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}

// writeJSON encodes v as JSON to w (indented when indent is set), with DEL,
// the C1 controls and the bidirectional controls escaped too: encoding/json
// escapes the C0 controls and replaces invalid UTF-8, but leaves those raw,
// and terminals act on them.
func writeJSON(w io.Writer, v any, indent bool) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encoding JSON: %w", err)
	}
	b := buf.Bytes()
	// Outside strings, JSON is ASCII without DEL: whatever is found is
	// inside a string, where \u escapes mean the same.
	var out []byte
	last := 0
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) || bidi(r) {
			out = append(out, b[last:i]...)
			out = fmt.Appendf(out, `\u%04x`, r)
			last = i + n
		}
		i += n
	}
	if out != nil {
		b = append(out, b[last:]...)
	}
	_, err := w.Write(b)
	return err
}

// WriteJSONIndented writes v as indented JSON, safe for a terminal (see
// Printable): what every meshctl command prints with -o json.
func WriteJSONIndented(w io.Writer, v any) error { return writeJSON(w, v, true) }

// WriteJSONLine writes v as one line of JSON, safe for a terminal (see
// Printable).
func WriteJSONLine(w io.Writer, v any) error { return writeJSON(w, v, false) }
