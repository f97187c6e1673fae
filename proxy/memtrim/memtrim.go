package memtrim

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Defaults of a Trimmer's zero fields.
const (
	// DefaultEvery is how often allocation is read.
	DefaultEvery = time.Second
	// DefaultQuietBytes: allocating less than this in one period is quiet.
	DefaultQuietBytes = 256 << 10
	// DefaultMinGrowth: a trim is worth its collection once this much was
	// allocated since the last one.
	DefaultMinGrowth = 4 << 20
)

// Trimmer releases memory when the process goes quiet after work. The
// zero value is ready to use.
type Trimmer struct {
	// Every is how often allocation is read. Default: DefaultEvery.
	Every time.Duration
	// QuietBytes is the allocation per period under which the process is
	// quiet. Default: DefaultQuietBytes.
	QuietBytes uint64
	// MinGrowth is the allocation since the last trim that makes the next
	// one worth it. Default: DefaultMinGrowth.
	MinGrowth uint64
	// Log, when set, gets a debug line per trim.
	Log *slog.Logger

	// allocated and trim are the runtime's unless a test sets them.
	allocated func() uint64
	trim      func()

	last, lastTrim uint64
	started        bool
}

// Run reads allocation every period and trims when it should, until ctx
// is done.
func (t *Trimmer) Run(ctx context.Context) {
	every := t.Every
	if every <= 0 {
		every = DefaultEvery
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.Tick()
		}
	}
}

// Tick reads allocation once, trims if the process went quiet after
// enough work since the last trim, and reports whether it trimmed.
func (t *Trimmer) Tick() bool {
	if t.allocated == nil {
		t.allocated = heapAllocated()
	}
	if t.trim == nil {
		t.trim = debug.FreeOSMemory
	}
	quiet, growth := t.QuietBytes, t.MinGrowth
	if quiet == 0 {
		quiet = DefaultQuietBytes
	}
	if growth == 0 {
		growth = DefaultMinGrowth
	}
	now := t.allocated()
	if !t.started {
		t.last, t.lastTrim, t.started = now, now, true
		return false
	}
	delta := now - t.last
	t.last = now
	if delta >= quiet || now-t.lastTrim < growth {
		return false
	}
	start, since := time.Now(), now-t.lastTrim
	t.trim()
	// What the trim itself allocated is not work.
	t.last = t.allocated()
	t.lastTrim = t.last
	if t.Log != nil && t.Log.Enabled(context.Background(), slog.LevelDebug) {
		t.Log.Debug("returned idle memory to the kernel", "allocated_since_last_mb", float64(since)/(1<<20), "took", time.Since(start))
	}
	return true
}

// heapAllocated reads the bytes allocated on the heap since the process
// started, without allocating.
func heapAllocated() func() uint64 {
	sample := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	return func() uint64 {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
}
