package balance

import (
	"math/rand/v2"
	"time"
)

// P2C picks endpoints by the power of two choices: two endpoints drawn at
// random, the cheaper one wins. Cost is the peak-EWMA latency times one plus
// the pending requests, divided by the weight: a slow or busy endpoint loses
// most draws but is still tried as its estimate decays. The zero value is
// ready and safe for concurrent use.
type P2C struct {
	// Rand draws the candidates; nil uses the global source. A *rand.Rand is
	// not safe for concurrent use: set it only in single-goroutine tests.
	Rand *rand.Rand
}

func (p P2C) intN(n int) int {
	if p.Rand != nil {
		return p.Rand.IntN(n)
	}
	return rand.IntN(n)
}

// Pick chooses an endpoint for a request at now and starts the request on
// it (End, ConnectFailed or Cancel must follow, with probe). It returns -1
// when no endpoint can take a request: there is none, or all are ejected;
// probe says the request is an ejected endpoint's probe.
func (p P2C) Pick(eps []*Endpoint, now time.Time) (i int, probe bool) {
	return p.PickExcept(eps, -1, now)
}

// PickExcept is Pick avoiding eps[skip] (the endpoint a retried request just
// failed on) unless no other endpoint can take the request.
func (p P2C) PickExcept(eps []*Endpoint, skip int, now time.Time) (int, bool) {
	if skip >= 0 && skip < len(eps) && len(eps) > 1 {
		rest := make([]*Endpoint, 0, len(eps)-1)
		rest = append(append(rest, eps[:skip]...), eps[skip+1:]...)
		if i, probe := p.Pick(rest, now); i >= 0 {
			if i >= skip {
				i++
			}
			return i, probe
		}
	}
	for range 3 { // a lost race for a probe slot draws again
		i := p.choose(eps, now)
		if i < 0 {
			return -1, false
		}
		if ok, probe := eps[i].begin(now); ok {
			return i, probe
		}
	}
	return -1, false
}

func (p P2C) choose(eps []*Endpoint, now time.Time) int {
	n := len(eps)
	switch n {
	case 0:
		return -1
	case 1:
		if _, ok := eps[0].load(now); ok {
			return 0
		}
		return -1
	}
	i := p.intN(n)
	j := p.intN(n - 1)
	if j >= i {
		j++
	}
	ci, okI := eps[i].load(now)
	cj, okJ := eps[j].load(now)
	switch {
	case okI && okJ:
		if cj < ci {
			return j
		}
		return i
	case okI:
		return i
	case okJ:
		return j
	}
	// Both out: any endpoint that is in, from a random start.
	start := p.intN(n)
	for k := range n {
		if _, ok := eps[(start+k)%n].load(now); ok {
			return (start + k) % n
		}
	}
	return -1
}
