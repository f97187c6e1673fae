package balance

import (
	"math/rand/v2"
	"time"
)

// Backoff is an exponential backoff with jitter: the n-th consecutive wait
// (n from 0) is Min·2ⁿ capped at Max, less a random part of up to Jitter of
// itself, so that many proxies do not probe a recovering endpoint in step.
type Backoff struct {
	// Min is the first wait. Default: 1s.
	Min time.Duration
	// Max bounds every wait. Default: 60s.
	Max time.Duration
	// Jitter is the fraction of a wait that is random, 0..1. Default: 0.5.
	Jitter float64
}

// DefaultBackoff is the backoff of ejected endpoints unless configured.
var DefaultBackoff = Backoff{Min: time.Second, Max: time.Minute, Jitter: 0.5}

func (b Backoff) withDefaults() Backoff {
	if b.Min <= 0 {
		b.Min = DefaultBackoff.Min
	}
	if b.Max <= 0 {
		b.Max = max(DefaultBackoff.Max, b.Min)
	}
	if b.Jitter <= 0 || b.Jitter > 1 {
		b.Jitter = DefaultBackoff.Jitter
	}
	return b
}

// Wait is the n-th wait; r draws the jitter (nil: the global source).
func (b Backoff) Wait(n int, r *rand.Rand) time.Duration {
	b = b.withDefaults()
	d := b.Min
	for i := 0; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	var f float64
	if r != nil {
		f = r.Float64()
	} else {
		f = rand.Float64()
	}
	return d - time.Duration(b.Jitter*f*float64(d))
}
