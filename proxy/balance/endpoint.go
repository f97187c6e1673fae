package balance

import (
	"sync"
	"sync/atomic"
	"time"
)

// Accrual configures failure accrual: how many failures in a row take an
// endpoint out, and how long it stays out.
type Accrual struct {
	// MaxFailures ejects an endpoint after this many consecutive failed
	// requests; 0 turns failure accrual off.
	MaxFailures int
	// Backoff is how long an ejected endpoint waits before each probe.
	// Default: DefaultBackoff.
	Backoff Backoff
}

// Endpoint is the balancing state of one endpoint: requests pending, latency
// estimate, and health. It is safe for concurrent use.
type Endpoint struct {
	pending atomic.Int64

	// mu guards everything below.
	mu       sync.Mutex
	weight   float64
	ewma     peakEWMA
	failures int       // consecutive failed requests
	until    time.Time // ejected until then; zero while admitted
	ejected  bool      // out, or on probation until a probe succeeds
	probing  bool      // the one probe request is in flight
	streak   int       // consecutive ejections: the backoff's exponent
}

// NewEndpoint returns the state of a new endpoint with weight 1. decay is
// how fast its latency estimate forgets (0: DefaultDecay).
func NewEndpoint(decay time.Duration) *Endpoint {
	if decay <= 0 {
		decay = DefaultDecay
	}
	return &Endpoint{weight: 1, ewma: peakEWMA{decay: float64(decay)}}
}

// SetWeight sets the endpoint's relative share (values below 1 count as 1).
func (e *Endpoint) SetWeight(w int) {
	e.mu.Lock()
	e.weight = float64(max(w, 1))
	e.mu.Unlock()
}

// Pending is the number of requests the endpoint is serving.
func (e *Endpoint) Pending() int64 { return e.pending.Load() }

// Ejected reports whether the endpoint is out (or on probation) at now.
func (e *Endpoint) Ejected() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ejected
}

// load returns the endpoint's cost and whether it can take a request now.
func (e *Endpoint) load(now time.Time) (cost float64, ok bool) {
	pending := float64(e.pending.Load())
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ejected && (e.probing || now.Before(e.until)) {
		return 0, false
	}
	c := e.ewma.at(now)
	if c == 0 {
		if pending == 0 {
			return 0, true // never tried: try it
		}
		c = penalty
	}
	return c * (pending + 1) / e.weight, true
}

// begin starts a request on the endpoint unless it became unavailable since
// it was chosen; an ejected endpoint whose wait is over takes the request as
// its probe (probe reports it: only that request settles the probation).
func (e *Endpoint) begin(now time.Time) (ok, probe bool) {
	e.mu.Lock()
	if e.ejected {
		if e.probing || now.Before(e.until) {
			e.mu.Unlock()
			return false, false
		}
		e.probing, probe = true, true
	}
	e.mu.Unlock()
	e.pending.Add(1)
	return true, probe
}

// Observe records the latency of a request's response headers.
func (e *Endpoint) Observe(rtt time.Duration, now time.Time) {
	e.mu.Lock()
	e.ewma.observe(rtt, now)
	e.mu.Unlock()
}

// Settle ends the probation of an ejected endpoint with its probe's outcome
// (as soon as it is known: the response headers, the connection made):
// success readmits it, failure ejects it again for longer. Only the probe's
// request calls it; later calls do nothing.
func (e *Endpoint) Settle(failed bool, a Accrual, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.settle(failed, a, now)
}

func (e *Endpoint) settle(failed bool, a Accrual, now time.Time) {
	if !e.probing {
		return
	}
	e.probing = false
	if failed {
		e.eject(a.Backoff, now)
		return
	}
	e.ejected, e.until, e.streak, e.failures = false, time.Time{}, 0, 0
}

// End finishes a request started by a pick: failed says whether it failed
// (a 5xx, a failing gRPC status, an error). With failure accrual on, too
// many failures in a row eject the endpoint; a probe not settled yet
// settles now. It reports whether this request ejected the endpoint.
func (e *Endpoint) End(failed, probe bool, a Accrual, now time.Time) (ejected bool) {
	e.pending.Add(-1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if probe {
		was := e.ejected
		e.settle(failed, a, now)
		return !was && e.ejected
	}
	if !failed {
		e.failures = 0
		return false
	}
	e.failures++
	if a.MaxFailures > 0 && !e.ejected && e.failures >= a.MaxFailures {
		e.eject(a.Backoff, now)
		return true
	}
	return false
}

// ConnectFailed ends a request whose connection could not be made: the
// endpoint is backed off whether or not failure accrual is on (once: other
// requests failing at the same time do not lengthen the backoff).
func (e *Endpoint) ConnectFailed(probe bool, b Backoff, now time.Time) {
	e.pending.Add(-1)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failures++
	if probe {
		e.settle(true, Accrual{Backoff: b}, now)
		return
	}
	if !e.ejected {
		e.eject(b, now)
	}
}

// eject takes the endpoint out for the next backoff wait. Callers hold mu.
func (e *Endpoint) eject(b Backoff, now time.Time) {
	e.ejected = true
	e.until = now.Add(b.Wait(e.streak, nil))
	e.streak++
}

// Cancel ends a request that was never sent: no latency, no outcome (a
// probe's slot is freed for another).
func (e *Endpoint) Cancel(probe bool) {
	e.pending.Add(-1)
	if probe {
		e.mu.Lock()
		e.probing = false
		e.mu.Unlock()
	}
}
