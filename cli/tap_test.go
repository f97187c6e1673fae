package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/api"
)

// hostilePath clears the screen, rings the bell and opens a C1 control
// sequence (a raw 0x9b byte) if printed raw.
const hostilePath = "/a\x1b[2J\x07b\x9b"

// rawControl returns the first control character, DEL or invalid UTF-8 byte
// in s other than a newline, and false when there is none.
func rawControl(s string) (string, bool) {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || (r == utf8.RuneError && n == 1)) {
			return s[i : i+n], true
		}
		i += n
	}
	return "", false
}

func hostileEvents() []tapstream.PodEvent {
	return []tapstream.PodEvent{
		{Namespace: "demo", Pod: "web-1", Workload: "web", Event: tapstream.Event{Type: "start", ID: 1, Direction: "inbound",
			Method: "GET\x1b[1m", Authority: "web\u009b2J", Path: hostilePath, ClientID: "spiffe://cluster.local/ns/demo/sa/\x1b]0;owned\x07", ServerID: "x\x7f"}},
		{Namespace: "demo", Pod: "web-1", Workload: "web", Event: tapstream.Event{Type: "headers", ID: 1, Status: 200}},
		{Namespace: "demo", Pod: "web-1", Workload: "web", Event: tapstream.Event{Type: "end", ID: 1, Status: 200, GRPCStatus: "0\r\x1b[A"}},
	}
}

func TestTapLinesPrintNoControlCharacters(t *testing.T) {
	var lines []string
	for _, e := range hostileEvents() {
		line := tapLine(e)
		if c, ok := rawControl(line); ok {
			t.Errorf("the %s line holds a raw %q: %q", e.Type, c, line)
		}
		lines = append(lines, line)
	}
	want := `req id=web-1:1 proxy=in src=spiffe://cluster.local/ns/demo/sa/\x1b]0;owned\x07 dst=x\x7f :method=GET\x1b[1m :authority=web\u009b2J :path=/a\x1b[2J\x07b\x9b`
	if lines[0] != want {
		t.Errorf("req line\n got %s\nwant %s", lines[0], want)
	}
	if !strings.HasSuffix(lines[2], `grpc-status=0\x0d\x1b[A`) {
		t.Errorf("end line %s", lines[2])
	}
	// Ordinary events print as they did.
	if got := tapLine(tapstream.PodEvent{Pod: "web-1", Event: tapstream.Event{Type: "start", ID: 2, Method: "GET", Authority: "web:80", Path: "/café"}}); got != "req id=web-1:2 proxy=in src=- dst=- :method=GET :authority=web:80 :path=/café" {
		t.Errorf("ordinary req line %q", got)
	}
	var b bytes.Buffer
	for _, e := range hostileEvents() {
		if err := writeJSONLine(&b, e); err != nil {
			t.Fatal(err)
		}
	}
	if c, ok := rawControl(b.String()); ok {
		t.Errorf("tap -o json holds a raw %q:\n%s", c, b.String())
	}
}

func TestLiveTopViewPrintsNoControlCharacters(t *testing.T) {
	m := &liveTop{title: "meshctl top deploy/web", sortBy: "count", top: tapstream.NewTop("inbound"), height: 40}
	for _, e := range hostileEvents() {
		m.add(e)
	}
	m.fail(tapstream.Pod{Namespace: "demo", Name: "web-2"}, errors.New("an error on the server (\"\x1b[2J\") has prevented the request"))
	view := m.View()
	if c, ok := rawControl(view); ok {
		t.Errorf("the live view holds a raw %q:\n%q", c, view)
	}
	if !strings.Contains(view, `/a\x1b[2J\x07b\x9b`) || !strings.Contains(view, `("\x1b[2J")`) {
		t.Errorf("the live view does not show the escaped path and error:\n%s", view)
	}
}

// TestEndpointsTable: endpoints sorted, an unmeshed endpoint's identity a
// dash, a destination without endpoints said so, the Service named.
func TestEndpointsTable(t *testing.T) {
	var b strings.Builder
	err := writeEndpoints(&b, []destinationView{
		{Destination: "10.96.0.5:5432", Service: "db.demo", Endpoints: []api.DestinationEndpoint{{Addr: "10.0.0.5:5432", Opaque: true}}},
		{Destination: "10.96.0.7:80", Endpoints: []api.DestinationEndpoint{}},
		{Destination: "10.96.0.9:80", Service: "web.demo", Endpoints: []api.DestinationEndpoint{
			{Addr: "10.0.0.9:8080", Identity: "spiffe://td/ns/demo/sa/web"}, {Addr: "10.0.0.2:8080", Identity: "spiffe://td/ns/demo/sa/web"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `DESTINATION      SERVICE    ENDPOINT        IDENTITY                     OPAQUE
10.96.0.5:5432   db.demo    10.0.0.5:5432   -                            true
10.96.0.7:80     -          (none)          -                            -
10.96.0.9:80     web.demo   10.0.0.2:8080   spiffe://td/ns/demo/sa/web   false
10.96.0.9:80     web.demo   10.0.0.9:8080   spiffe://td/ns/demo/sa/web   false
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
