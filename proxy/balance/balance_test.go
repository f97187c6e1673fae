package balance

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestPeakEWMAJumpsToPeaksAndDecaysOverTime(t *testing.T) {
	e := peakEWMA{decay: float64(10 * time.Second)}
	e.observe(50*time.Millisecond, t0)
	if got := time.Duration(e.at(t0)); got != 50*time.Millisecond {
		t.Fatalf("first sample: estimate %v, want 50ms", got)
	}
	// Without samples the estimate decays towards zero: 1/e after the decay time.
	got := e.at(t0.Add(10 * time.Second))
	if want := float64(50*time.Millisecond) / math.E; math.Abs(got-want) > 1e3 {
		t.Errorf("after 10s: %v, want %v", time.Duration(got), time.Duration(want))
	}
	// A sample above the estimate replaces it at once (the peak)...
	e.observe(200*time.Millisecond, t0.Add(time.Second))
	if got := time.Duration(e.at(t0.Add(time.Second))); got != 200*time.Millisecond {
		t.Errorf("peak: %v, want 200ms", got)
	}
	// ...one below moves it by the weight of the time since the last sample.
	now := t0.Add(2 * time.Second)
	e.observe(10*time.Millisecond, now)
	w := math.Exp(-0.1) // one second of a ten-second decay
	want := float64(200*time.Millisecond)*w*w + float64(10*time.Millisecond)*(1-w)
	if got := e.at(now); math.Abs(got-want) > 1e3 {
		t.Errorf("after a lower sample: %v, want %v", time.Duration(got), time.Duration(want))
	}
}

func TestBackoffDoublesUpToItsMaximumWithJitter(t *testing.T) {
	b := Backoff{Min: time.Second, Max: 10 * time.Second, Jitter: 0.5}
	r := rand.New(rand.NewPCG(1, 2))
	for n, full := range []time.Duration{1, 2, 4, 8, 10, 10, 10} {
		full *= time.Second
		lowest, highest := full, time.Duration(0)
		for range 1000 {
			d := b.Wait(n, r)
			lowest, highest = min(lowest, d), max(highest, d)
		}
		if lowest < full/2 || highest > full {
			t.Errorf("wait %d: between %v and %v, want within [%v, %v]", n, lowest, highest, full/2, full)
		}
		if highest-lowest < full/4 {
			t.Errorf("wait %d: between %v and %v: hardly any jitter", n, lowest, highest)
		}
	}
	if d := (Backoff{}).Wait(100, r); d > time.Minute || d < 30*time.Second {
		t.Errorf("default backoff after many waits: %v, want 30s..60s", d)
	}
}

// simulate sends n requests one after another (one keep-alive client) to
// endpoints answering in the given latencies, choosing with pick; it returns
// how many each received.
func simulate(n int, latency []time.Duration, pick func(eps []*Endpoint, now time.Time) (int, bool)) []int {
	eps := make([]*Endpoint, len(latency))
	for i := range eps {
		eps[i] = NewEndpoint(0)
	}
	got := make([]int, len(eps))
	now := t0
	for range n {
		i, _ := pick(eps, now)
		got[i]++
		now = now.Add(latency[i])
		eps[i].Observe(latency[i], now)
		eps[i].End(false, false, Accrual{}, now)
		now = now.Add(100 * time.Microsecond) // the client's own time between requests
	}
	return got
}

func TestSlowEndpointGetsLessThanRoundRobinWouldGive(t *testing.T) {
	latency := []time.Duration{2 * time.Millisecond, 2 * time.Millisecond, 52 * time.Millisecond}
	p := P2C{Rand: rand.New(rand.NewPCG(7, 7))}
	got := simulate(3000, latency, p.Pick)
	next := 0
	rr := simulate(3000, latency, func(eps []*Endpoint, now time.Time) (int, bool) {
		i := next % len(eps)
		next++
		eps[i].begin(now)
		return i, false
	})
	t.Logf("P2C: %v; round robin: %v", got, rr)
	if rr[2] != 1000 {
		t.Fatalf("round robin gave the slow endpoint %d of 3000", rr[2])
	}
	if got[2] == 0 || got[2]*3 >= got[0] || got[2]*3 >= got[1] {
		t.Errorf("the slow endpoint got %d requests, the fast ones %d and %d: want some, and under a third of each", got[2], got[0], got[1])
	}
	if got[2]*10 > rr[2] {
		t.Errorf("the slow endpoint got %d requests, round robin %d: want at most a tenth", got[2], rr[2])
	}
}

func TestChoiceIsWeightedByPendingRequests(t *testing.T) {
	// Three equally fast endpoints; one has 4 requests pending that never
	// finish (a stuck connection): it must lose most draws.
	eps := []*Endpoint{NewEndpoint(0), NewEndpoint(0), NewEndpoint(0)}
	for _, e := range eps {
		e.Observe(5*time.Millisecond, t0)
	}
	for range 4 {
		eps[0].begin(t0)
	}
	p := P2C{Rand: rand.New(rand.NewPCG(3, 4))}
	got := make([]int, 3)
	for range 3000 {
		i, _ := p.Pick(eps, t0)
		got[i]++
		eps[i].End(false, false, Accrual{}, t0)
	}
	t.Logf("picks with 4 pending on the first: %v", got)
	if got[0] != 0 || got[1] < 1300 || got[2] < 1300 {
		t.Errorf("picks %v: the busy endpoint should lose every draw, the others share evenly", got)
	}
	// With weights, an equally loaded endpoint of weight 3 wins the draws it
	// is in against weight 1: 2/3 of all requests (it is in two of three pairs).
	eps = []*Endpoint{NewEndpoint(0), NewEndpoint(0), NewEndpoint(0)}
	for _, e := range eps {
		e.Observe(5*time.Millisecond, t0)
	}
	eps[2].SetWeight(3)
	got = make([]int, 3)
	for range 3000 {
		i, _ := p.Pick(eps, t0)
		got[i]++
		for _, e := range eps {
			if e.Pending() > 0 {
				e.End(false, false, Accrual{}, t0)
			}
		}
	}
	t.Logf("picks with weights 1, 1, 3: %v", got)
	if math.Abs(float64(got[2])/3000-2.0/3) > 0.03 {
		t.Errorf("weight 3 got %d of 3000, want about 2/3", got[2])
	}
}

func TestNewEndpointIsTriedBeforeKnownOnes(t *testing.T) {
	known := NewEndpoint(0)
	known.Observe(time.Millisecond, t0)
	fresh := NewEndpoint(0)
	p := P2C{Rand: rand.New(rand.NewPCG(1, 1))}
	if i, _ := p.Pick([]*Endpoint{known, fresh}, t0); i != 1 {
		t.Errorf("picked %d, want the endpoint never tried", i)
	}
	// While its first request is pending it is not flooded.
	if i, _ := p.Pick([]*Endpoint{known, fresh}, t0); i != 0 {
		t.Errorf("picked %d, want the known endpoint while the new one's first request is pending", i)
	}
}

func TestFailureAccrualEjectsProbesAndReadmits(t *testing.T) {
	a := Accrual{MaxFailures: 7, Backoff: Backoff{Min: time.Second, Max: 8 * time.Second, Jitter: 0.01}}
	bad, good := NewEndpoint(0), NewEndpoint(0)
	eps := []*Endpoint{bad, good}
	now := t0
	for i := range 7 {
		if ok, _ := bad.begin(now); !ok {
			t.Fatalf("request %d: endpoint unavailable before the limit", i)
		}
		if ej := bad.End(true, false, a, now); ej != (i == 6) {
			t.Fatalf("failure %d: ejected = %v", i+1, ej)
		}
	}
	if !bad.Ejected() {
		t.Fatal("not ejected after 7 failures in a row")
	}
	p := P2C{Rand: rand.New(rand.NewPCG(5, 5))}
	for range 100 {
		if i, _ := p.Pick(eps, now); i != 1 {
			t.Fatal("an ejected endpoint was picked before its backoff ended")
		}
		good.End(false, false, a, now)
	}
	// After the backoff, exactly one probe at a time.
	now = now.Add(time.Second)
	if ok, probe := bad.begin(now); !ok || !probe {
		t.Fatal("no probe after the backoff")
	}
	if ok, _ := bad.begin(now); ok {
		t.Fatal("a second request went to an endpoint on probation")
	}
	bad.End(true, true, a, now) // the probe fails: out again, for about twice as long
	if ok, _ := bad.begin(now.Add(1500 * time.Millisecond)); ok {
		t.Fatal("probed again before the doubled backoff")
	}
	now = now.Add(2 * time.Second)
	if ok, probe := bad.begin(now); !ok || !probe {
		t.Fatal("no probe after the doubled backoff")
	}
	bad.End(false, true, a, now) // healed
	if bad.Ejected() {
		t.Fatal("still ejected after a successful probe")
	}
	for range 3 {
		if ok, probe := bad.begin(now); !ok || probe {
			t.Fatal("a readmitted endpoint refused requests, or took them as probes")
		}
	}
}

func TestAccrualOffNeverEjectsButConnectFailuresBackOff(t *testing.T) {
	e := NewEndpoint(0)
	for range 50 {
		e.begin(t0)
		e.End(true, false, Accrual{}, t0)
	}
	if e.Ejected() {
		t.Fatal("ejected with failure accrual off")
	}
	e.begin(t0)
	e.ConnectFailed(false, Backoff{Min: time.Second, Jitter: 0.01}, t0)
	if i, _ := (P2C{}).Pick([]*Endpoint{e}, t0.Add(500*time.Millisecond)); i != -1 {
		t.Fatal("an endpoint that failed to connect was picked within its backoff")
	}
	if i, probe := (P2C{}).Pick([]*Endpoint{e}, t0.Add(time.Second)); i != 0 || !probe {
		t.Fatal("not probed after its backoff")
	}
}

func TestPickExceptAvoidsTheEndpointThatJustFailed(t *testing.T) {
	eps := []*Endpoint{NewEndpoint(0), NewEndpoint(0), NewEndpoint(0)}
	p := P2C{Rand: rand.New(rand.NewPCG(9, 9))}
	for range 300 {
		i, _ := p.PickExcept(eps, 1, t0)
		if i == 1 || i < 0 {
			t.Fatalf("picked %d, avoiding 1", i)
		}
		eps[i].End(false, false, Accrual{}, t0)
	}
	// When nothing else can take it, the avoided one does.
	eps[0].begin(t0)
	eps[0].ConnectFailed(false, Backoff{Min: time.Hour}, t0)
	eps[2].begin(t0)
	eps[2].ConnectFailed(false, Backoff{Min: time.Hour}, t0)
	if i, _ := p.PickExcept(eps, 1, t0); i != 1 {
		t.Errorf("picked %d, want the avoided endpoint, the only one left", i)
	}
}

func BenchmarkPick(b *testing.B) {
	eps := []*Endpoint{NewEndpoint(0), NewEndpoint(0), NewEndpoint(0), NewEndpoint(0), NewEndpoint(0)}
	var p P2C
	b.ReportAllocs()
	for b.Loop() {
		now := time.Now()
		i, _ := p.Pick(eps, now)
		eps[i].Observe(time.Millisecond, now)
		eps[i].End(false, false, Accrual{}, now)
	}
}

func TestOnlyTheProbeSettlesProbation(t *testing.T) {
	a := Accrual{MaxFailures: 1, Backoff: Backoff{Min: time.Second, Max: time.Minute, Jitter: 0.01}}
	e := NewEndpoint(0)
	e.begin(t0) // a slow request, started before the trouble
	e.begin(t0)
	e.End(true, false, a, t0) // ejected
	now := t0.Add(time.Second)
	ok, probe := e.begin(now)
	if !ok || !probe {
		t.Fatal("no probe after the backoff")
	}
	e.End(false, false, a, now) // the old request succeeds meanwhile: not the probe's say
	if !e.Ejected() {
		t.Fatal("a request that was not the probe readmitted the endpoint")
	}
	if ok, _ := e.begin(now); ok {
		t.Fatal("a second probe started while the first was out")
	}
	e.Settle(false, a, now) // the probe's headers arrived: readmitted
	if e.Ejected() {
		t.Fatal("still ejected after the probe succeeded")
	}
	e.End(false, true, a, now) // the probe's end changes nothing more
}

func TestConcurrentConnectFailuresDoNotStretchTheBackoff(t *testing.T) {
	e := NewEndpoint(0)
	b := Backoff{Min: time.Second, Max: time.Minute, Jitter: 0.01}
	for range 7 {
		e.begin(t0)
	}
	for range 7 {
		e.ConnectFailed(false, b, t0)
	}
	if i, _ := (P2C{}).Pick([]*Endpoint{e}, t0.Add(time.Second)); i != 0 {
		t.Error("seven connections failing together backed the endpoint off for more than one wait")
	}
}
