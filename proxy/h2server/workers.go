package h2server

import (
	"context"
	"runtime/pprof"
	"slices"
	"sync"
	"time"
)

// workers run streams' handlers on goroutines that wait a while for the
// next stream once theirs is done. A stream then usually starts on a stack
// already grown through the handler, instead of a new goroutine's 2 KiB
// stack growing (and being copied) again on every request: with a
// goroutine per stream, runtime.newstack took 3–5 % of the inbound hop's
// CPU. gRPC-Go's server offers the same (NumStreamWorkers).
//
// There is no queue: a stream goes to a worker only if one is waiting for
// it, else to a new goroutine, so no stream ever waits for another's
// handler. The worker idle the shortest takes it (last in, first out), so
// the workers a burst made beyond what the load after it needs time out;
// first in, first out, a trickle of requests kept them all.
type workers struct {
	// idle is how long a worker waits for its next stream before it ends.
	idle time.Duration

	mu     sync.Mutex
	ready  []*worker // waiting, most recently idle last
	closed bool
}

// worker is one waiting goroutine's hand: run sends it one stream (the
// buffer of one never blocks), close closes it.
type worker struct{ jobs chan *stream }

func newWorkers(idle time.Duration) *workers { return &workers{idle: idle} }

// run serves s's request on a waiting worker, or on a new one.
func (w *workers) run(s *stream) {
	if w.idle > 0 {
		w.mu.Lock()
		if n := len(w.ready); n > 0 {
			wk := w.ready[n-1]
			w.ready[n-1] = nil
			w.ready = w.ready[:n-1]
			w.mu.Unlock()
			wk.jobs <- s
			return
		}
		w.mu.Unlock()
	}
	go w.work(&worker{jobs: make(chan *stream, 1)}, s)
}

// work serves s, then the streams handed to it, until it has waited idle
// for one or the server is closed.
func (w *workers) work(wk *worker, s *stream) {
	var timer *time.Timer
	for s != nil {
		s.c.runHandler(s)
		// What a handler set for profiles (pprof.SetGoroutineLabels) must
		// not label the next stream's.
		pprof.SetGoroutineLabels(context.Background())
		if w.idle <= 0 {
			return
		}
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return
		}
		w.ready = append(w.ready, wk)
		w.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(w.idle)
			defer timer.Stop()
		} else {
			timer.Reset(w.idle)
		}
		select {
		case s = <-wk.jobs:
		case <-timer.C:
			w.mu.Lock()
			i := slices.Index(w.ready, wk)
			if i >= 0 {
				w.ready = slices.Delete(w.ready, i, i+1)
			}
			w.mu.Unlock()
			if i >= 0 {
				return
			}
			s = <-wk.jobs // handed a stream as the timer fired (nil: closed)
		}
	}
}

// close ends the waiting workers, and those busy once their handler
// returns; it does not wait for them.
func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	for _, wk := range w.ready {
		close(wk.jobs)
	}
	w.ready = nil
}
