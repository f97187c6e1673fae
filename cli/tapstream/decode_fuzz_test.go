package tapstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// maxLine is the longest line Follow reads (its scanner's bound), the
// newline included.
const maxLine = 1 << 20

// FuzzDecode feeds arbitrary bytes to Follow as one pod's /tap stream, the
// way the proxy's admin port sends it: one JSON event a line. It checks
//
//   - the events are those of refDecode, an independent reading of the
//     lines (split at "\n", a "\r" before it dropped, the last line
//     without a newline kept), in order, up to the first line that is not
//     an event, after which nothing more comes, and the one failure says
//     which: a bad line, or a stream that ended;
//   - every event decoded re-encodes to one line that decodes to the same
//     event (round trip);
//   - the events decoded, and events built out of the input, written as a
//     valid stream (by json.Encoder, with "\n" or "\r\n", read a byte at a
//     time) come out as they went in, and the stream then ends with
//     io.ErrUnexpectedEOF;
//
// and, once per run, that a line longer than the scanner's bound is
// refused after reading about that bound, not the whole line.
func FuzzDecode(f *testing.F) {
	checkLineBound(f)
	for _, seed := range []string{
		`{"type":"start","id":1,"ts":"2024-05-01T10:00:00.123456789Z","direction":"inbound","method":"GET","authority":"web:80","path":"/a","client_id":"spiffe://cluster.local/ns/demo/sa/load"}` + "\n" +
			`{"type":"headers","id":1,"ts":"2024-05-01T10:00:00.2Z","status":200,"latency_ms":1.5}` + "\n" +
			`{"type":"end","id":1,"ts":"2024-05-01T10:00:00.3+02:00","status":200,"grpc_status":"0","latency_ms":3,"bytes":12}` + "\n" +
			`{"type":"dropped","count":4}` + "\n",
		`{"type":"start","id":7}` + "\r\n" + `{"type":"end","id":7}`,                          // CRLF, no final newline
		`{"type":"start","id":7}` + "\n" + `not json` + "\n" + `{"type":"end","id":7}` + "\n", // nothing after a bad line
		"\n" + `{"type":"start"}` + "\n",                                                      // an empty line is not an event
		`null` + "\n" + `{}` + "\n" + `{"TYPE":"start","Id":2,"id":3}` + "\n",
		`{"type":"start","path":"/\u202e\u0000\ud800","method":"\xff\xfe"}` + "\n",
		`{"type":"end","latency_ms":-0,"bytes":-1,"id":18446744073709551615,"status":-5}` + "\n",
		`{"type":"end","latency_ms":1e400}` + "\n",
		`{"type":"end","ts":"0000-01-01T00:00:00+23:59"}` + "\n" + `{"type":"end","ts":"9999-12-31T23:59:59-23:59"}` + "\n",
		`{"type":"start"} {"type":"end"}` + "\n",
		`[` + strings.Repeat(`[`, 20000) + "\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if longestLine(in) >= maxLine-1 {
			return // the bound has its own check
		}
		want, wantBad := refDecode(in)
		got, failure := follow(t, bytes.NewReader(in))
		if !sameEvents(got, want) {
			t.Fatalf("stream %q: events\n%s\nwant\n%s", in, show(got), show(want))
		}
		if wantBad {
			if !strings.Contains(failure, "a bad line") {
				t.Fatalf("stream %q: failure %q, want a bad line", in, failure)
			}
		} else if failure != "its tap stream ended: "+io.ErrUnexpectedEOF.Error() {
			t.Fatalf("stream %q: failure %q, want the stream ended (unexpected EOF)", in, failure)
		}

		events := append(got, built(in)...)
		for _, e := range events {
			line, err := json.Marshal(e.Event)
			if err != nil {
				t.Fatalf("event %+v does not encode: %v", e.Event, err)
			}
			if bytes.ContainsAny(line, "\r\n") {
				t.Fatalf("event %+v encodes to more than one line: %q", e.Event, line)
			}
			var back Event
			if err := json.Unmarshal(line, &back); err != nil || !sameEvent(back, e.Event) {
				t.Fatalf("event %+v encodes to %s, which decodes to %+v, %v", e.Event, line, back, err)
			}
		}
		var stream bytes.Buffer
		enc := json.NewEncoder(&stream)
		for _, e := range events {
			if err := enc.Encode(e.Event); err != nil {
				t.Fatal(err)
			}
		}
		crlf := bytes.ReplaceAll(stream.Bytes(), []byte("\n"), []byte("\r\n"))
		for name, s := range map[string]io.Reader{
			"LF":                       bytes.NewReader(stream.Bytes()),
			"CRLF, a byte at a time":   iotest.OneByteReader(bytes.NewReader(crlf)),
			"LF, data and EOF at once": iotest.DataErrReader(bytes.NewReader(stream.Bytes())),
		} {
			got, failure := follow(t, s)
			if !sameEvents(got, events) {
				t.Fatalf("%s stream %q: events\n%s\nwant\n%s", name, stream.Bytes(), show(got), show(events))
			}
			if failure != "its tap stream ended: "+io.ErrUnexpectedEOF.Error() {
				t.Fatalf("%s stream %q: failure %q, want the stream ended (unexpected EOF)", name, stream.Bytes(), failure)
			}
		}
	})
}

// follow runs Follow on one pod whose stream is r and returns the events
// it delivered and its one failure (it fails the test unless there is
// exactly one).
func follow(t testing.TB, r io.Reader) ([]PodEvent, string) {
	t.Helper()
	open := func(context.Context, Pod, url.Values) (io.ReadCloser, error) { return io.NopCloser(r), nil }
	events := make(chan PodEvent)
	var failures []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		Follow(context.Background(), []Pod{{"ns", "pod", "wl"}}, open, Filter{}, events,
			func(p Pod, err error) { failures = append(failures, err.Error()) }, nil)
	}()
	var got []PodEvent
	for {
		select {
		case e := <-events:
			if e.Namespace != "ns" || e.Pod != "pod" || e.Workload != "wl" {
				t.Fatalf("event of pod %s/%s (%s), want ns/pod (wl)", e.Namespace, e.Pod, e.Workload)
			}
			got = append(got, e)
			continue
		case <-done:
		}
		break
	}
	if len(failures) != 1 {
		t.Fatalf("failures %q, want one", failures)
	}
	return got, failures[0]
}

// refDecode reads a stream as its lines: the events up to the first line
// that is not one, and whether there was such a line.
func refDecode(in []byte) (events []PodEvent, bad bool) {
	lines := strings.Split(string(in), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // after the last newline: no line
	}
	for _, line := range lines {
		var e Event
		if err := json.Unmarshal([]byte(strings.TrimSuffix(line, "\r")), &e); err != nil {
			return events, true
		}
		events = append(events, PodEvent{Namespace: "ns", Pod: "pod", Workload: "wl", Event: e})
	}
	return events, false
}

// longestLine is the length of the longest line of in, its newline included.
func longestLine(in []byte) int {
	longest := 0
	for line := range bytes.Lines(in) {
		longest = max(longest, len(line))
	}
	return longest
}

// built makes up to 4 valid events out of the input's bytes: strings
// valid UTF-8 (JSON cannot carry other bytes), a time in years 1–8000
// with a zone offset in whole minutes (RFC 3339 has no seconds there), a
// finite latency.
func built(in []byte) []PodEvent {
	var out []PodEvent
	for len(in) >= 24 && len(out) < 4 {
		word := func(i int) uint64 { return binary.LittleEndian.Uint64(in[i*8:]) }
		n := min(int(in[0])%40, len(in)-24)
		text := in[24 : 24+n]
		str := func(k int) string { return strings.ToValidUTF8(string(text[:min(k, len(text))]), "\ufffd") }
		zone := time.FixedZone("", int(int64(word(0))%(24*60))*60)
		ts := time.Unix(int64(word(1)%250000000000)-62135596800+86400, int64(word(2)%1e9)).In(zone)
		latency := math.Float64frombits(word(2))
		if math.IsNaN(latency) || math.IsInf(latency, 0) {
			latency = float64(word(2) >> 11)
		}
		out = append(out, PodEvent{Namespace: "ns", Pod: "pod", Workload: "wl", Event: Event{
			Type: str(n), ID: word(0), Time: ts, Direction: str(n / 2), Method: str(3), Authority: str(n / 3),
			Path: str(n + 7), ClientID: str(n / 4), ServerID: str(1), Status: int(int32(word(1))),
			GRPCStatus: str(2), LatencyMs: latency, Bytes: int64(word(2)), Count: word(1),
		}})
		in = in[24+n:]
	}
	return out
}

// sameEvents compares two lists of events with sameEvent.
func sameEvents(a, b []PodEvent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Namespace != b[i].Namespace || a[i].Pod != b[i].Pod || a[i].Workload != b[i].Workload || !sameEvent(a[i].Event, b[i].Event) {
			return false
		}
	}
	return true
}

// sameEvent compares two events field by field, their times as the same
// instant with the same zone offset (a decoded time's *time.Location is
// a new one each time).
func sameEvent(a, b Event) bool {
	_, ao := a.Time.Zone()
	_, bo := b.Time.Zone()
	if !a.Time.Equal(b.Time) || ao != bo {
		return false
	}
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b
}

// show prints events one a line, for failure messages.
func show(events []PodEvent) string {
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "  %+v\n", e.Event)
	}
	return b.String()
}

// endless is a stream without a newline that counts what it gives and
// gives up after limit bytes.
type endless struct {
	read, limit int
}

// Read fills b with "x"s, until limit.
func (r *endless) Read(b []byte) (int, error) {
	if r.read >= r.limit {
		return 0, fmt.Errorf("read %d bytes of one line", r.read)
	}
	n := min(len(b), r.limit-r.read)
	for i := range b[:n] {
		b[i] = 'x'
	}
	r.read += n
	return n, nil
}

// checkLineBound checks that Follow takes a line just under its bound and
// refuses an endless one with bufio.ErrTooLong, having read no more than
// the bound and a read's worth.
func checkLineBound(f *testing.F) {
	f.Helper()
	long := `{"type":"start","path":"` + strings.Repeat("a", maxLine-100) + `"}`
	got, failure := follow(f, strings.NewReader(long+"\n"))
	if len(got) != 1 || len(got[0].Path) != maxLine-100 || !strings.Contains(failure, io.ErrUnexpectedEOF.Error()) {
		f.Fatalf("a line of %d bytes: %d events, failure %q; want it and the stream ended", len(long), len(got), failure)
	}
	r := &endless{limit: 16 * maxLine}
	_, failure = follow(f, r)
	if !strings.Contains(failure, bufio.ErrTooLong.Error()) || r.read > maxLine+64<<10 {
		f.Fatalf("an endless line: failure %q after reading %d bytes; want %v within %d bytes", failure, r.read, bufio.ErrTooLong, maxLine+64<<10)
	}
}
