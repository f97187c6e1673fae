package metrics

import (
	"bytes"
	"context"
	"math"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// windowed parses WriteWindow's exposition with Prometheus's own parser.
func windowed(t *testing.T, m *Metrics, want time.Duration) map[string]*dto.MetricFamily {
	t.Helper()
	var buf bytes.Buffer
	m.WriteWindow(&buf, want)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatalf("a windowed /metrics is not valid text exposition: %v\n%s", err, buf.String())
	}
	return fams
}

// windowFigures are what a window says: its seconds, requests, responses,
// and responses at or under 5 ms and 300 ms.
type windowFigures struct {
	seconds                         float64
	requests, responses, le5, le300 float64
}

func figures(fams map[string]*dto.MetricFamily) windowFigures {
	var f windowFigures
	if w := fams[FamilyWindow]; w != nil {
		f.seconds = w.GetMetric()[0].GetGauge().GetValue()
	}
	for _, x := range fams[familyRequests].GetMetric() {
		f.requests += x.GetCounter().GetValue()
	}
	for _, x := range fams[familyResponses].GetMetric() {
		f.responses += x.GetCounter().GetValue()
	}
	for _, x := range fams[familyLatency].GetMetric() {
		for _, b := range x.GetHistogram().GetBucket() {
			switch b.GetUpperBound() {
			case 5:
				f.le5 += float64(b.GetCumulativeCount())
			case 300:
				f.le300 += float64(b.GetCumulativeCount())
			}
		}
	}
	return f
}

// TestWindowCountsOnlyTheLastMinute: a windowed exposition counts what
// came after the newest snapshot at least the window old (else the oldest,
// else since counting began), says how long that is, and leaves the
// cumulative /metrics as it was.
func TestWindowCountsOnlyTheLastMinute(t *testing.T) {
	m := New(Config{})
	m.windows.started = time.Now().Add(-80 * time.Second)
	r := m.Open(ConnLabels{Direction: Inbound}).Route("web.shop:80")
	serve := func(n int, latencyMs float64) {
		for range n {
			r.Request()
			r.Response(200, Success, latencyMs)
		}
	}
	serve(5, 3)
	if f := figures(windowed(t, m, time.Minute)); f.requests != 5 || f.responses != 5 || f.le5 != 5 || math.Abs(f.seconds-80) > 5 {
		t.Errorf("before any snapshot: %+v, want all 5 since counting began, 80 s ago", f)
	}
	now := time.Now()
	m.tick(now.Add(-70 * time.Second))
	serve(2, 300)
	m.tick(now.Add(-40 * time.Second))
	r.Request() // in flight

	if f := figures(windowed(t, m, time.Minute)); f.requests != 3 || f.responses != 2 || f.le5 != 0 || f.le300 != 2 || math.Abs(f.seconds-70) > 5 {
		t.Errorf("the last minute: %+v, want 3 requests and 2 responses (both ≤ 300 ms, none ≤ 5 ms) over the 70 s since the snapshot a minute old", f)
	}
	if f := figures(windowed(t, m, 30*time.Second)); f.requests != 1 || f.responses != 0 || math.Abs(f.seconds-40) > 5 {
		t.Errorf("the last 30 s: %+v, want the 1 request since the snapshot 40 s old", f)
	}
	if f := figures(windowed(t, m, 5*time.Minute)); f.requests != 8 || math.Abs(f.seconds-80) > 5 {
		t.Errorf("5 minutes, with fewer snapshots than are kept: %+v, want all 8 since counting began (nothing is lost yet)", f)
	}
	if got := counterValue(t, m, familyRequests); got != 8 {
		t.Errorf("cumulative request_total %v, want 8", got)
	}
	// A route made after the base snapshot counts from its first request.
	late := m.Open(ConnLabels{Direction: Outbound}).Route("api.shop:80")
	late.Request()
	if f := figures(windowed(t, m, time.Minute)); f.requests != 4 {
		t.Errorf("with a route made since: %v requests, want 4", f.requests)
	}
	// Slots are reused: after windowSlots more ticks, the window starts at
	// one of them.
	for i := range windowSlots {
		m.tick(now.Add(time.Duration(i-windowSlots) * 10 * time.Second))
	}
	if f := figures(windowed(t, m, time.Minute)); f.requests != 0 || math.Abs(f.seconds-40) > 5 {
		t.Errorf("after the ring turned: %+v, want nothing since the oldest kept snapshot (40 s)", f)
	}
	// The latency sum is windowed too.
	if s := windowed(t, m, 30*time.Second)[familyLatency].GetMetric()[0].GetHistogram().GetSampleSum(); s != 0 {
		t.Errorf("windowed latency sum %v, want 0 (nothing answered since)", s)
	}
}

// TestAYoungProxysWindowIsSinceItStarted: a proxy 50 s old with one
// snapshot (35 s old) answers for its whole life, not the 35 s since.
func TestAYoungProxysWindowIsSinceItStarted(t *testing.T) {
	m := New(Config{})
	now := time.Now()
	m.windows.started = now.Add(-50 * time.Second)
	r := m.Open(ConnLabels{Direction: Inbound}).Route("web.shop:80")
	for range 10 {
		r.Request()
	}
	m.tick(now.Add(-35 * time.Second))
	r.Request()
	if f := figures(windowed(t, m, time.Minute)); f.requests != 11 || math.Abs(f.seconds-50) > 5 {
		t.Errorf("a proxy 50 s old: %+v, want its 11 requests over 50 s", f)
	}
}

// TestWindowDifferencesWrap: counts are kept in 32 bits; a counter that
// passed 2³² since the snapshot still gives the right difference.
func TestWindowDifferencesWrap(t *testing.T) {
	if got := since(1<<32+5, math.MaxUint32-1); got != 7 {
		t.Errorf("since(2³²+5, 2³²-2) = %d, want 7", got)
	}
	atSnapshot := uint64(1<<33 - 2) // already past 2³² when the snapshot was taken
	if got := since(1<<33+3, uint32(atSnapshot)); got != 5 {
		t.Errorf("since(2³³+3, (2³³-2) mod 2³²) = %d, want 5", got)
	}
	if got := since(12, 12); got != 0 {
		t.Errorf("since(12, 12) = %d", got)
	}
}

// TestRunWindowsStopsWithItsContext: the snapshot goroutine ends with ctx.
func TestRunWindowsStopsWithItsContext(t *testing.T) {
	m := New(Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.RunWindows(ctx); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunWindows did not return after its context ended")
	}
}

// BenchmarkWindowTick: one snapshot of 500 routes of 4 statuses each (the
// caps), every 15 s.
func BenchmarkWindowTick(b *testing.B) {
	b.ReportAllocs()
	m := New(Config{})
	c := m.Open(ConnLabels{Direction: Inbound})
	for i := range 500 {
		r := c.Route("10.0.0.1:" + string(rune('a'+i%26)) + string(rune('a'+i/26)))
		for s := range 4 {
			r.Request()
			r.Response(200+s, Success, 1)
		}
	}
	now := time.Now()
	for b.Loop() {
		m.tick(now)
	}
}

// TestATickDoesNotMoveAWritesBase: a write that chose its base keeps it
// while the next tick is taken (the slot that tick writes is never a
// base), so a scrape that overlaps a tick is not half one window, half
// another.
func TestATickDoesNotMoveAWritesBase(t *testing.T) {
	m := New(Config{})
	r := m.Open(ConnLabels{Direction: Inbound}).Route("web.shop:80")
	now := time.Now()
	for i := range windowBases {
		r.Request()
		m.tick(now.Add(time.Duration(i-windowBases) * windowEvery))
	}
	r.Request()
	b := m.base(now, time.Minute) // the oldest kept: 1 request before it, 4 after
	m.tick(now)                   // during the write
	var buf bytes.Buffer
	m.write(&helpWriter{w: &buf}, &b)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := fams[familyRequests].GetMetric()[0].GetCounter().GetValue(); got != 4 {
		t.Errorf("requests since the base chosen before a tick: %v, want 4", got)
	}
}
