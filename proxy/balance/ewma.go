package balance

import (
	"math"
	"time"
)

// DefaultDecay is how fast a latency estimate forgets: after this long
// without a sample an estimate has fallen to 1/e of itself.
const DefaultDecay = 10 * time.Second

// penalty is the cost of an endpoint that has requests pending but no
// latency sample yet: it must not attract every request of a burst.
const penalty = float64(time.Second)

// peakEWMA estimates an endpoint's latency: a sample above the estimate
// replaces it at once (the peak), one below pulls it down as an exponentially
// weighted moving average over time; without samples the estimate decays
// towards zero, so an endpoint left alone is eventually tried again. Its
// owner serializes access.
type peakEWMA struct {
	decay float64 // nanoseconds
	cost  float64 // nanoseconds; 0 = no sample yet
	stamp time.Time
}

// observe adds a latency sample taken at now.
func (e *peakEWMA) observe(rtt time.Duration, now time.Time) {
	sample := float64(rtt)
	if sample <= 0 {
		sample = 1 // a sample of zero must still count as one
	}
	cur := e.at(now)
	if sample > cur {
		e.cost = sample
	} else {
		w := e.weight(now)
		e.cost = cur*w + sample*(1-w)
	}
	e.stamp = now
}

// at is the estimate at now, decayed since the last sample.
func (e *peakEWMA) at(now time.Time) float64 {
	if e.cost == 0 {
		return 0
	}
	return e.cost * e.weight(now)
}

// weight is how much of the current estimate survives until now.
func (e *peakEWMA) weight(now time.Time) float64 {
	d := now.Sub(e.stamp)
	if d <= 0 {
		return 1
	}
	return math.Exp(-float64(d) / e.decay)
}
