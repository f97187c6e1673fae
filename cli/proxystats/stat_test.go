package proxystats

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/meshnames"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// exposition writes a proxy's metrics: ok and failed inbound responses, and
// their latencies spread over the buckets as given (upper bound → count).
func exposition(started float64, ok, failed float64, latency map[float64]float64, outbound string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %v\n", started)
	b.WriteString("# TYPE response_total counter\n")
	in := `direction="inbound",tls="true",client_id="spiffe://cluster.local/ns/demo/sa/load",server_id="",dst_workload="",authority="web"`
	fmt.Fprintf(&b, "response_total{%s,status_code=\"200\",classification=\"success\"} %v\n", in, ok)
	fmt.Fprintf(&b, "response_total{%s,status_code=\"500\",classification=\"failure\"} %v\n", in, failed)
	if outbound != "" {
		fmt.Fprintf(&b, "response_total{%s} 7\n", outbound)
	}
	b.WriteString("# TYPE response_latency_ms histogram\n")
	cum := 0.0
	for _, le := range []float64{1, 5, 10, 50, 100} {
		cum += latency[le]
		fmt.Fprintf(&b, "response_latency_ms_bucket{%s,status_code=\"200\",classification=\"success\",le=\"%v\"} %v\n", in, le, cum)
	}
	cum += latency[math.Inf(1)]
	fmt.Fprintf(&b, "response_latency_ms_bucket{%s,status_code=\"200\",classification=\"success\",le=\"+Inf\"} %v\n", in, cum)
	fmt.Fprintf(&b, "response_latency_ms_sum{%s,status_code=\"200\",classification=\"success\"} 0\n", in)
	fmt.Fprintf(&b, "response_latency_ms_count{%s,status_code=\"200\",classification=\"success\"} %v\n", in, cum)
	b.WriteString("# TYPE tcp_open_connections gauge\n")
	b.WriteString(`tcp_open_connections{direction="inbound",tls="true",client_id="",server_id="",dst_workload=""} 2` + "\n")
	return b.String()
}

func parse(t *testing.T, text string) *Sample {
	t.Helper()
	s, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestQuantileIsTheBucketHoldingTheValue(t *testing.T) {
	h := Histogram{Bounds: []float64{1, 5, 10, math.Inf(1)}, Counts: []float64{10, 60, 99, 100}}
	for q, want := range map[float64]float64{0.05: 1, 0.1: 1, 0.5: 5, 0.6: 5, 0.95: 10, 0.99: 10, 0.995: math.Inf(1)} {
		if got := h.Quantile(q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if !math.IsNaN((Histogram{}).Quantile(0.5)) {
		t.Error("an empty histogram has a quantile")
	}
}

func TestDeltaCountsFromZeroAfterARestart(t *testing.T) {
	start := parse(t, exposition(100, 1000, 10, map[float64]float64{5: 1010}, ""))
	end := parse(t, exposition(100, 1900, 20, map[float64]float64{5: 1910}, ""))
	d := Delta(start, end)
	var ok, failed float64
	for s, n := range d.Responses {
		if s.Success {
			ok += n
		} else {
			failed += n
		}
	}
	if ok != 900 || failed != 10 {
		t.Errorf("delta: %v ok, %v failed; want 900 and 10", ok, failed)
	}
	// The proxy restarted in between: its counters start again from zero.
	restartedEnd := parse(t, exposition(200, 300, 3, map[float64]float64{5: 303}, ""))
	d = Delta(start, restartedEnd)
	ok = 0
	for s, n := range d.Responses {
		if s.Success {
			ok += n
		}
	}
	if ok != 300 {
		t.Errorf("after a restart: %v ok, want the 300 since the restart", ok)
	}
	// A counter going backwards without a start time is a restart too.
	start.Started, restartedEnd.Started = 0, 0
	if d := Delta(start, restartedEnd); d != restartedEnd {
		t.Error("a counter that went backwards was not taken as a restart")
	}
}

func TestStatRowsMatchGolden(t *testing.T) {
	window := 10 * time.Second
	web := Resource{Kind: "deployment", Namespace: "demo", Name: "web", Pods: []*Pod{
		{Namespace: "demo", Name: "web-1", Meshed: true,
			Start: parse(t, exposition(1, 100, 0, map[float64]float64{1: 50, 5: 50}, "")),
			End:   parse(t, exposition(1, 590, 10, map[float64]float64{1: 300, 5: 280, 10: 18, 50: 2}, ""))},
		{Namespace: "demo", Name: "web-2", Meshed: true,
			Start: parse(t, exposition(1, 0, 0, nil, "")),
			End:   parse(t, exposition(1, 400, 0, map[float64]float64{1: 150, 5: 240, 100: 10}, ""))},
		{Namespace: "demo", Name: "web-3", Meshed: true, Err: errors.New("the proxy is gone")},
	}}
	idle := Resource{Kind: "deployment", Namespace: "demo", Name: "batch", Pods: []*Pod{{Namespace: "demo", Name: "batch-1"}}}
	rows := Stat([]Resource{web, idle}, window, Inbound)
	w := rows[1]
	if w.Requests != 900 || w.Successes != 890 || w.RPS != 90 || w.Meshed != 3 || w.Pods != 3 {
		t.Errorf("web: %+v", w)
	}
	var b bytes.Buffer
	if err := WriteTable(&b, &b, rows, TableOptions{}); err != nil {
		t.Fatal(err)
	}
	b.WriteString("---\n")
	if err := WriteJSON(&b, rows); err != nil {
		t.Fatal(err)
	}
	golden(t, "stat", b.Bytes())
}

func TestEdgesFromOutboundMetrics(t *testing.T) {
	secured := `direction="outbound",tls="true",client_id="",server_id="spiffe://cluster.local/ns/demo/sa/api",dst_workload="api",authority="api.demo.svc.cluster.local",status_code="200",classification="success"`
	plain := `direction="outbound",tls="false",client_id="",server_id="",dst_workload="",authority="legacy.other:8080",status_code="200",classification="success"`
	web := Resource{Kind: "deployment", Namespace: "demo", Name: "web", Pods: []*Pod{
		{Namespace: "demo", Name: "web-1", Meshed: true, End: parse(t, exposition(1, 1, 0, nil, secured))},
		{Namespace: "demo", Name: "web-2", Meshed: true, End: parse(t, exposition(1, 1, 0, nil, plain))},
		// The proxy's own 503 while a destination had no endpoint: no edge.
		{Namespace: "demo", Name: "web-3", Meshed: true, End: parse(t, exposition(1, 1, 0, nil,
			`direction="outbound",tls="false",client_id="",server_id="",dst_workload="",authority="starting.demo",status_code="503",classification="failure"`))},
	}}
	var b bytes.Buffer
	if err := WriteEdges(&b, Edges([]Resource{web}, nil), false); err != nil {
		t.Fatal(err)
	}
	golden(t, "edges", b.Bytes())
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		os.WriteFile(path, got, 0o644)
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (-update to accept):\n%s", path, got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(exposition(1, 10, 1, map[float64]float64{5: 11}, ""))
	f.Fuzz(func(t *testing.T, text string) {
		s, err := Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		for _, h := range s.Latency {
			_ = h.Quantile(0.99)
		}
		_ = Delta(s, s)
	})
}

func TestParseReadsPlaintextConnections(t *testing.T) {
	s, err := Parse(strings.NewReader("# TYPE plaintext_connections_total counter\n" +
		`plaintext_connections_total{direction="outbound",reason="no_identity"} 3` + "\n" +
		`plaintext_connections_total{direction="outbound",reason="not_in_mesh"} 2` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Plaintext["no_identity"] != 3 || s.Plaintext["not_in_mesh"] != 2 {
		t.Errorf("plaintext by reason %v, want no_identity 3, not_in_mesh 2", s.Plaintext)
	}
}

// TestEdgesSayWhyAndAWindowForgetsWhatWasFixed: each kind of unsecured
// edge says why; clients without a proxy make an edge into the resource;
// and over a window (a Delta) an edge fixed since the proxy started shows
// secured, where the count since the start still has its plaintext past.
func TestEdgesSayWhyAndAWindowForgetsWhatWasFixed(t *testing.T) {
	out := func(tls bool, server, workload, authority string) Series {
		return Series{Direction: "outbound", TLS: tls, ServerID: server, DstWorkload: workload, Authority: authority, Status: "200", Success: true}
	}
	api := out(true, "spiffe://td/ns/demo/sa/api", "api", "api.demo.svc.cluster.local:80")
	apiPlain := out(false, "", "api", "api.demo.svc.cluster.local:80")
	legacy := out(false, "", "", "legacy:80")
	noID := out(true, "", "", "tls.example:443")
	unmeshedIn := Series{Direction: "inbound", Authority: "web:80", Status: "200", Success: true}
	probes := Series{Direction: "inbound", Authority: meshnames.ProbeAuthority, Status: "200", Success: true} // not clients
	start := &Sample{Started: 1, Responses: map[Series]float64{apiPlain: 40, api: 10, legacy: 5, noID: 1, unmeshedIn: 3, probes: 100}}
	end := &Sample{Started: 1, Responses: map[Series]float64{apiPlain: 40, api: 30, legacy: 9, noID: 2, unmeshedIn: 7, probes: 200}}
	res := func(s, e *Sample) []Resource {
		return []Resource{{Kind: "deployment", Namespace: "demo", Name: "web", Pods: []*Pod{{Namespace: "demo", Name: "web-1", Meshed: true, Start: s, End: e}}}}
	}
	byDst := func(edges []Edge) map[string]Edge {
		m := map[string]Edge{}
		for _, e := range edges {
			m[e.Src+">"+e.Dst] = e
		}
		return m
	}
	all := byDst(Edges(res(nil, end), nil))
	for dst, want := range map[string]string{"web>api": ReasonPlaintextToMeshed, "web>legacy:80": ReasonNotMeshed, "web>tls.example:443": ReasonNoIdentity, UnmeshedClients + ">web": ReasonClientNotMeshed} {
		if e, ok := all[dst]; !ok || e.Secured || e.Reason != want {
			t.Errorf("since the start, %s: %+v, want not secured because %q", dst, e, want)
		}
	}
	if e := all[UnmeshedClients+">web"]; e.Requests != 7 || e.DstNamespace != "demo" {
		t.Errorf("the unmeshed clients' edge: %+v", e)
	}
	// Over the window: api's plaintext series did not grow.
	win := byDst(Edges(res(nil, Delta(start, end)), nil))
	if e := win["web>api"]; !e.Secured || e.Reason != "" || e.Requests != 20 || len(e.DstIDs) != 1 || e.DstIDs[0] != "spiffe://td/ns/demo/sa/api" {
		t.Errorf("over the window, web>api: %+v, want secured, 20 requests, its identity", e)
	}
	if e := win["web>legacy:80"]; e.Secured || e.Requests != 4 {
		t.Errorf("over the window, web>legacy: %+v", e)
	}
	// Two reasons on one edge: the worst, every time (not the map's order).
	mixed := &Sample{Started: 1, Responses: map[Series]float64{out(true, "", "", "x.demo:80"): 1, out(false, "", "", "x.demo:80"): 1}}
	for range 50 {
		if e := byDst(Edges(res(nil, mixed), nil))["web>x.demo:80"]; e.Reason != ReasonNotMeshed {
			t.Fatalf("an edge with two reasons says %q, want the worst, %q", e.Reason, ReasonNotMeshed)
		}
	}
	var b bytes.Buffer
	if err := WriteEdges(&b, Edges(res(nil, end), nil), true); err != nil {
		t.Fatal(err)
	}
	golden(t, "edges-wide", b.Bytes())
}

// TestStatOverThePodsOwnWindows: with no window of its own (0), stat
// takes each pod's rate over the window its proxy kept: 60 requests in 60 s
// and 30 in 30 s are 1 + 1 per second, not 90 over one window. The
// kubelet's probes (failing while a pod starts) are no client's requests.
func TestStatOverThePodsOwnWindows(t *testing.T) {
	ok := Series{Direction: "inbound", Authority: "web:80", Status: "200", Success: true}
	failed := Series{Direction: "inbound", Authority: "web:80", Status: "500"}
	sample := func(window, ok200, failed500 float64) *Sample {
		probe := Series{Direction: "inbound", Authority: meshnames.ProbeAuthority, Status: "502"} // no client's: not counted
		return &Sample{Window: window, Responses: map[Series]float64{ok: ok200, failed: failed500, probe: 4}, Latency: map[Series]Histogram{}, OpenConns: map[string]float64{}}
	}
	res := []Resource{{Kind: "deployment", Namespace: "shop", Name: "web", Pods: []*Pod{
		{Namespace: "shop", Name: "web-1", Meshed: true, End: sample(60, 57, 3)},
		{Namespace: "shop", Name: "web-2", Meshed: true, End: sample(30, 30, 0)},
	}}}
	rows := Stat(res, 0, func(Series) bool { return true })
	if len(rows) != 1 || rows[0].RPS != 2 || rows[0].Requests != 90 || rows[0].SuccessRate != 87.0/90 || rows[0].WindowSeconds != 60 {
		t.Errorf("rows %+v, want 2 requests/s, 90 requests, 87/90 success, a 60 s window", rows)
	}
	if rows := Stat(res, 10*time.Second, func(Series) bool { return true }); rows[0].RPS != 9 || rows[0].WindowSeconds != 10 {
		t.Errorf("over a window of stat's own (10 s): %v requests/s in %v s, want 9 in 10", rows[0].RPS, rows[0].WindowSeconds)
	}
}

// TestParseReadsTheWindow: a windowed exposition's metrics_window_seconds
// is the sample's window; a cumulative one has none.
func TestParseReadsTheWindow(t *testing.T) {
	cumulative := "# TYPE response_total counter\n" +
		`response_total{authority="web:80",classification="success",direction="inbound",status_code="200",tls="true"} 7` + "\n"
	s, err := Parse(strings.NewReader("# TYPE metrics_window_seconds gauge\nmetrics_window_seconds 58.5\n" + cumulative))
	if err != nil || s.Window != 58.5 {
		t.Errorf("windowed: window %v, %v; want 58.5", s.Window, err)
	}
	s, err = Parse(strings.NewReader(cumulative))
	if err != nil || s.Window != 0 {
		t.Errorf("cumulative: window %v, %v; want 0", s.Window, err)
	}
}
