package metrics

import (
	"bufio"
	"context"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The proxy remembers its request metrics as they were windowEvery ago,
// twice that, and so on windowBases times (a minute), so that
// /metrics?window= answers for the last minute at once (meshctl stat)
// rather than after a wait. One slot more than that is kept: the one the
// next tick writes is never a window's base, so a write reads its base
// without a lock while ticks go on (unless it takes longer than a tick, as
// only a client that stalls does). A series keeps 4-byte counts per slot
// (differences taken modulo 2³², exact below four billion requests a
// window): about 500 bytes per status of a route.
const (
	windowEvery = 15 * time.Second
	windowBases = 4
	windowSlots = windowBases + 1
)

// FamilyWindow is the gauge a windowed exposition starts with: the seconds
// its request metrics cover.
const FamilyWindow = "metrics_window_seconds"

// snapshot is one status's response count, latency buckets and latency sum
// at a tick. Atomic: a write reads it while a tick may write another slot.
type snapshot struct {
	count   atomic.Uint32
	buckets [len(latencyBounds)]atomic.Uint32
	sumBits atomic.Uint64
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

// tick writes the current values of every live series into the next slot
// (never a base a write may be reading: see windowSlots), then publishes
// it.
func (m *Metrics) tick(now time.Time) {
	m.windows.mu.Lock()
	slot := m.windows.ticks % windowSlots
	m.windows.mu.Unlock()
	for _, r := range m.liveRoutes() {
		r.past[slot].Store(uint32(r.requests.Load()))
		r.mu.Lock()
		for _, s := range r.responses {
			s.snapshot(slot)
		}
		r.mu.Unlock()
	}
	m.windows.mu.Lock()
	m.windows.at[slot] = now
	m.windows.ticks++
	m.windows.mu.Unlock()
}

// snapshot writes s's current values into slot.
func (s *responseStats) snapshot(slot uint64) {
	p := &s.past[slot]
	p.count.Store(uint32(s.count.Load()))
	for i := range s.buckets {
		p.buckets[i].Store(uint32(s.buckets[i].Load()))
	}
	p.sumBits.Store(s.sumBits.Load())
}

// windowBase is what a windowed exposition subtracts: the slot of the tick
// it starts at, or none (since counting began).
type windowBase struct {
	slot    int // -1: none
	seconds float64
}

// base picks the window's start for one of want: the newest of the last
// windowBases ticks at least want old; else, while fewer ticks were taken
// (nothing is lost yet), when counting began; else the oldest tick kept.
func (m *Metrics) base(now time.Time, want time.Duration) windowBase {
	w := &m.windows
	w.mu.Lock()
	defer w.mu.Unlock()
	start := windowBase{slot: -1, seconds: now.Sub(w.started).Seconds()}
	kept := min(w.ticks, windowBases)
	for i := uint64(1); i <= kept; i++ { // newest first
		slot := int((w.ticks - i) % windowSlots)
		if age := now.Sub(w.at[slot]); age >= want || (i == kept && w.ticks >= windowBases) {
			return windowBase{slot: slot, seconds: age.Seconds()}
		}
	}
	return start
}

// WriteWindow writes what WritePrometheus does, but with the request
// metrics (request_total, response_total, response_latency_ms) counting
// only the last want, as nearly as the snapshots allow (at most a minute),
// after a gauge metrics_window_seconds saying how long that is. It holds
// no lock while it writes: a client that reads slowly delays nothing else.
func (m *Metrics) WriteWindow(w io.Writer, want time.Duration) {
	b := m.base(time.Now(), want)
	hw := &helpWriter{w: w}
	bw := bufio.NewWriter(hw)
	writeHead(bw, FamilyWindow, "gauge")
	bw.WriteString(FamilyWindow + " " + strconv.FormatFloat(b.seconds, 'f', 3, 64) + "\n")
	_ = bw.Flush()
	m.write(hw, &b)
}
