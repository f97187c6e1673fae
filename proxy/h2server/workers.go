package h2server

import (
	"sync"
	"time"
)

// workers run streams' handlers on goroutines that wait a while for the
// next stream once theirs is done. A stream then usually starts on a stack
// already grown through the handler, instead of a new goroutine's 2 KiB
// stack growing (and being copied) again on every request: with a
// goroutine per stream, runtime.newstack took 5 % of the inbound hop's
// CPU. gRPC-Go's server offers the same (NumStreamWorkers).
//
// There is no queue: a stream goes to a worker only if one is waiting for
// it, else to a new goroutine, so no stream ever waits for another's
// handler.
type workers struct {
	// jobs hands a stream to a waiting worker (unbuffered).
	jobs chan *stream
	// idle is how long a worker waits for its next stream before it ends.
	idle time.Duration

	closeOnce sync.Once
	closed    chan struct{}
	wg        sync.WaitGroup
}

func newWorkers(idle time.Duration) *workers {
	return &workers{jobs: make(chan *stream), idle: idle, closed: make(chan struct{})}
}

// run serves s's request on a waiting worker, or on a new one.
func (w *workers) run(s *stream) {
	if w.idle > 0 {
		select {
		case w.jobs <- s:
			return
		default:
		}
	}
	w.wg.Add(1)
	go w.work(s)
}

// work serves s, then the streams handed to it, until it has waited idle
// for one or the server is closed.
func (w *workers) work(s *stream) {
	defer w.wg.Done()
	s.c.runHandler(s)
	if w.idle <= 0 {
		return
	}
	timer := time.NewTimer(w.idle)
	defer timer.Stop()
	for {
		select {
		case s = <-w.jobs:
			s.c.runHandler(s)
			timer.Reset(w.idle)
		case <-timer.C:
			return
		case <-w.closed:
			return
		}
	}
}

// close ends the waiting workers, and those busy once their handler
// returns; it does not wait for them.
func (w *workers) close() {
	w.closeOnce.Do(func() { close(w.closed) })
}
