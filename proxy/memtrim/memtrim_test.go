package memtrim

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

// TestTrimsOnceWhenQuietAfterWork: never while busy, once when the work
// stops, not again while nothing new was allocated, and again after the
// next burst; a quiet trickle below the growth never trims.
func TestTrimsOnceWhenQuietAfterWork(t *testing.T) {
	var allocated uint64
	trims := 0
	tr := &Trimmer{QuietBytes: 100, MinGrowth: 1000, allocated: func() uint64 { return allocated }, trim: func() { trims++ }}
	steps := []struct {
		alloc uint64 // allocated during the period before the tick
		trim  bool
	}{
		{0, false},    // the first read only sets the start
		{5000, false}, // busy
		{5000, false}, // busy
		{10, true},    // quiet after 10,000 B of work
		{10, false},   // still quiet: nothing worth trimming
		{0, false},
		{2000, false}, // the next burst
		{0, true},
		{50, false}, // a trickle: 50 B a period never adds up to a trim...
		{50, false},
	}
	for i, s := range steps {
		allocated += s.alloc
		if got := tr.Tick(); got != s.trim {
			t.Errorf("step %d (+%d B): trimmed %v, want %v", i, s.alloc, got, s.trim)
		}
	}
	if trims != 2 {
		t.Errorf("%d trims, want 2", trims)
	}
	// ... until it does: 1000 B since the last trim, all of it quiet.
	for range 20 {
		allocated += 50
		tr.Tick()
	}
	if trims != 3 {
		t.Errorf("after a trickle adding up to the growth: %d trims, want 3", trims)
	}
}

// TestTrimCollectsAndReleases: with the runtime's own readings, quiet after
// work forces a collection and leaves released pages.
func TestTrimCollectsAndReleases(t *testing.T) {
	read := func() (forced, released uint64) {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}, {Name: "/memory/classes/heap/released:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64(), s[1].Value.Uint64()
	}
	tr := &Trimmer{}
	tr.Tick()
	var work [][]byte
	for range 64 {
		work = append(work, make([]byte, 256<<10)) // 16 MiB of work
	}
	runtime.KeepAlive(work)
	tr.Tick() // busy
	forced0, _ := read()
	if !tr.Tick() {
		t.Fatal("no trim when quiet after 16 MiB of work")
	}
	forced1, released := read()
	if forced1 <= forced0 || released == 0 {
		t.Errorf("after a trim: forced collections %d → %d, released %d B; want a forced collection and released pages", forced0, forced1, released)
	}
}
