package endpoints

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/meshctl/meshctl/proxy/balance"
)

// Why no endpoint could be picked.
var (
	// ErrNoEndpoints: the destination has no ready endpoint.
	ErrNoEndpoints = errors.New("the destination has no ready endpoints")
	// ErrAllFailing: every endpoint is ejected for failing.
	ErrAllFailing = errors.New("every endpoint of the destination is failing")
	// ErrQueueFull: too many requests are already waiting for an endpoint.
	ErrQueueFull = errors.New("too many requests are waiting for an endpoint of the destination")
)

// Queue bounds how requests wait when no endpoint can take them (none is
// ready, or all are ejected): endpoints being replaced should delay requests
// briefly, not fail them, while a destination that stays down fails fast.
type Queue struct {
	// Timeout is the longest a request waits; 0 fails at once.
	Timeout time.Duration
	// Capacity bounds the requests waiting per destination; beyond it
	// requests fail at once.
	Capacity int
}

// pollEvery is how often a waiting request looks again for an ejected
// endpoint whose backoff ended (updates wake it at once).
const pollEvery = 20 * time.Millisecond

// p2c draws from the global random source.
var p2c balance.P2C

// Lease is one request's use of an endpoint. Exactly one of Done or
// ConnectFailed ends it.
type Lease struct {
	Endpoint
	bal     *balance.Endpoint // nil for a plain set
	accrual balance.Accrual
	start   time.Time
	probe   bool // the request probes an ejected endpoint
}

// Acquire picks the endpoint for a request, waiting as q allows when none
// can take it now. avoid, when not "", is the address of an endpoint to
// pick only if no other can take the request (where a retried request just
// failed). The error is ErrNoEndpoints, ErrAllFailing, ErrQueueFull or the
// context's.
func (s *Set) Acquire(ctx context.Context, q Queue, avoid string) (Lease, error) {
	st := s.st.Load()
	if l, ok := st.pick(avoid); ok {
		return l, nil
	}
	if q.Timeout <= 0 {
		return Lease{}, st.unavailable()
	}
	if s.waiting.Add(1) > int64(q.Capacity) {
		s.waiting.Add(-1)
		return Lease{}, ErrQueueFull
	}
	defer s.waiting.Add(-1)
	deadline := time.NewTimer(q.Timeout)
	defer deadline.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return Lease{}, ctx.Err()
		case <-deadline.C:
			return Lease{}, s.st.Load().unavailable()
		case <-st.changed:
		case <-poll.C:
		}
		st = s.st.Load()
		if l, ok := st.pick(avoid); ok {
			return l, nil
		}
	}
}

func (st *state) pick(avoid string) (Lease, bool) {
	if !st.balanced {
		return Lease{Endpoint: st.eps[0]}, true
	}
	now := time.Now()
	skip := -1
	if avoid != "" {
		skip = slices.IndexFunc(st.eps, func(e Endpoint) bool { return e.Addr == avoid })
	}
	i, probe := p2c.PickExcept(st.bal, skip, now)
	if i < 0 {
		return Lease{}, false
	}
	return Lease{Endpoint: st.eps[i], bal: st.bal[i], accrual: st.policy.Accrual, start: now, probe: probe}, true
}

func (st *state) unavailable() error {
	if len(st.eps) == 0 {
		return ErrNoEndpoints
	}
	return ErrAllFailing
}

// Responded records that the endpoint answered (its response headers, or
// for a connection, the connection made): the latency feeds the endpoint's
// estimate, and failed settles a probe at once, so that a long response or
// connection does not keep the endpoint on probation.
func (l Lease) Responded(failed bool) {
	if l.bal != nil {
		now := time.Now()
		l.bal.Observe(now.Sub(l.start), now)
		if l.probe {
			l.bal.Settle(failed, l.accrual, now)
		}
	}
}

// Done ends the request; failed feeds failure accrual. It reports whether
// this request got the endpoint ejected.
func (l Lease) Done(failed bool) bool {
	if l.bal == nil {
		return false
	}
	return l.bal.End(failed, l.probe, l.accrual, time.Now())
}

// ConnectFailed ends a request whose connection to the endpoint could not
// be made; the endpoint is backed off.
func (l Lease) ConnectFailed() {
	if l.bal != nil {
		l.bal.ConnectFailed(l.probe, l.accrual.Backoff, time.Now())
	}
}

// Cancel ends a request that was never sent to the endpoint.
func (l Lease) Cancel() {
	if l.bal != nil {
		l.bal.Cancel(l.probe)
	}
}

// Pick returns the endpoint a request would get now, without starting one
// on it; false when none can take a request.
func (s *Set) Pick() (Endpoint, bool) {
	l, ok := s.st.Load().pick("")
	if !ok {
		return Endpoint{}, false
	}
	l.Cancel()
	return l.Endpoint, true
}
