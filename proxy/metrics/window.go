package metrics

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"sync"
	"time"
)

// The proxy remembers its request metrics as they were windowEvery ago,
// twice that, and so on windowSlots times (a minute), so that
// /metrics?window= answers for the last minute at once (meshctl stat)
// rather than after a wait. A series keeps 4-byte counts per snapshot
// (differences taken modulo 2³², exact below four billion requests a
// window): about 400 bytes per status of a route.
const (
	windowEvery = 15 * time.Second
	windowSlots = 4
)

// FamilyWindow is the gauge a windowed exposition starts with: the seconds
// its request metrics cover.
const FamilyWindow = "metrics_window_seconds"

// snapshot is one status's response count, latency buckets and latency sum
// at a tick.
type snapshot struct {
	count   uint32
	buckets [len(latencyBounds)]uint32
	sum     float64
}

// windows are the ticks taken: when each slot was last written.
type windows struct {
	mu sync.Mutex
	// ticks counts the snapshots taken; tick k is in slot k % windowSlots.
	ticks uint64
	at    [windowSlots]time.Time
	// started is when counting began: the base of a window older than
	// every tick.
	started time.Time
}

// RunWindows takes a snapshot of every request series each windowEvery
// until ctx ends.
func (m *Metrics) RunWindows(ctx context.Context) {
	t := time.NewTicker(windowEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.tick(now)
		}
	}
}

// tick writes the current values of every live series into the next slot.
func (m *Metrics) tick(now time.Time) {
	m.windows.mu.Lock()
	defer m.windows.mu.Unlock()
	slot := m.windows.ticks % windowSlots
	for _, r := range m.liveRoutes() {
		r.past[slot] = uint32(r.requests.Load())
		r.mu.Lock()
		for _, s := range r.responses {
			s.snapshot(slot)
		}
		r.mu.Unlock()
	}
	m.windows.at[slot] = now
	m.windows.ticks++
}

// snapshot writes s's current values into slot.
func (s *responseStats) snapshot(slot uint64) {
	p := &s.past[slot]
	p.count = uint32(s.count.Load())
	for i := range s.buckets {
		p.buckets[i] = uint32(s.buckets[i].Load())
	}
	p.sum = s.sum()
}

// windowBase is what a windowed exposition subtracts: the slot of the tick
// it starts at, or none (since counting began).
type windowBase struct {
	slot    int // -1: none
	seconds float64
}

// base picks the window's start for one of want: the newest tick at least
// want old, else the oldest tick kept, else when counting began. Callers
// hold m.windows.mu.
func (m *Metrics) base(now time.Time, want time.Duration) windowBase {
	w := &m.windows
	b := windowBase{slot: -1, seconds: now.Sub(w.started).Seconds()}
	kept := min(w.ticks, windowSlots)
	for i := uint64(1); i <= kept; i++ { // newest first
		slot := int((w.ticks - i) % windowSlots)
		b = windowBase{slot: slot, seconds: now.Sub(w.at[slot]).Seconds()}
		if now.Sub(w.at[slot]) >= want {
			break
		}
	}
	return b
}

// WriteWindow writes what WritePrometheus does, but with the request
// metrics (request_total, response_total, response_latency_ms) counting
// only the last want, as nearly as the snapshots allow (at most a minute),
// after a gauge metrics_window_seconds saying how long that is.
func (m *Metrics) WriteWindow(w io.Writer, want time.Duration) {
	m.windows.mu.Lock()
	defer m.windows.mu.Unlock()
	b := m.base(time.Now(), want)
	hw := &helpWriter{w: w}
	bw := bufio.NewWriter(hw)
	writeHead(bw, FamilyWindow, "gauge")
	bw.WriteString(FamilyWindow + " " + strconv.FormatFloat(b.seconds, 'f', 3, 64) + "\n")
	_ = bw.Flush()
	m.write(hw, &b)
}
