package retry

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestBudgetArithmetic(t *testing.T) {
	b := NewBudget(BudgetConfig{}, t0)
	if got := b.Config(); got != DefaultBudget {
		t.Fatalf("defaults %+v, want %+v", got, DefaultBudget)
	}
	// The reserve: 10 per second, accruing from the start.
	if b.Withdraw(t0) {
		t.Error("a new budget allowed a retry before earning one")
	}
	if got := b.Available(t0.Add(time.Second)); math.Abs(got-10) > 1e-9 {
		t.Errorf("after 1s: %v retries available, want 10", got)
	}
	if !b.Withdraw(t0.Add(100 * time.Millisecond)) {
		t.Error("no retry after 100ms of reserve")
	}
	b = NewBudget(BudgetConfig{}, t0)
	// 100 requests earn 20 more.
	for range 100 {
		b.Deposit(t0.Add(time.Second))
	}
	now := t0.Add(time.Second)
	if got := b.Available(now); math.Abs(got-30) > 1e-9 {
		t.Errorf("after 100 requests: %v available, want 30", got)
	}
	spent := 0
	for b.Withdraw(now) {
		spent++
	}
	if spent != 30 {
		t.Errorf("spent %d retries, want 30", spent)
	}
	// The reserve keeps coming, a second's worth each second.
	if got := b.Available(now.Add(2 * time.Second)); math.Abs(got-20) > 1e-9 {
		t.Errorf("2s later: %v, want 20", got)
	}
	// After the TTL what was earned has expired unless it was reserve of the
	// window (the current tenth of the TTL and the nine before): saving up
	// is bounded.
	later := now.Add(30*time.Second + 500*time.Millisecond)
	if got := b.Available(later); math.Abs(got-95) > 1e-9 {
		t.Errorf("30.5s later: %v, want 95 (10/s over the 9.5s window)", got)
	}
}

// TestRetryBudgetStopsRetryStorm: against a destination that fails every
// request, clients that would retry each request 4 times get no more than
// Ratio × requests + MinPerSecond × duration retries.
func TestRetryBudgetStopsRetryStorm(t *testing.T) {
	for _, cfg := range []BudgetConfig{DefaultBudget, {Ratio: 0.3, MinPerSecond: 5, TTL: 3 * time.Second}} {
		for _, rps := range []int{5, 100, 1000} {
			b := NewBudget(cfg, t0)
			const seconds = 37
			requests, retries := 0, 0
			for i := range seconds * rps {
				now := t0.Add(time.Duration(i) * time.Second / time.Duration(rps))
				b.Deposit(now)
				requests++
				for range 4 {
					if b.Withdraw(now) {
						retries++
					}
				}
			}
			bound := cfg.Ratio*float64(requests) + cfg.MinPerSecond*seconds
			t.Logf("%+v at %d rps: %d requests, %d retries, bound %.0f", cfg, rps, requests, retries, bound)
			if float64(retries) > bound {
				t.Errorf("%+v at %d rps: %d retries, more than the bound %.0f", cfg, rps, retries, bound)
			}
			if float64(retries) < 0.9*bound {
				t.Errorf("%+v at %d rps: only %d retries, the budget allows %.0f", cfg, rps, retries, bound)
			}
		}
	}
}

func TestParseConditions(t *testing.T) {
	r, err := ParseHTTP("5xx, 429 ,gateway-error,500-504")
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{HTTP: r}
	for status, want := range map[int]bool{500: true, 599: true, 429: true, 503: true, 404: false, 200: false, 430: false} {
		if p.Status(status) != want {
			t.Errorf("status %d retried = %v", status, !want)
		}
	}
	for _, bad := range []string{"", "6xx", "99", "504-500", "abc", "500-x"} {
		if _, err := ParseHTTP(bad); err == nil {
			t.Errorf("ParseHTTP(%q) accepted", bad)
		}
	}
	mask, err := ParseGRPC("unavailable, RESOURCE_EXHAUSTED,canceled")
	if err != nil {
		t.Fatal(err)
	}
	p = Policy{GRPC: mask}
	for code, want := range map[int]bool{14: true, 8: true, 1: true, 0: false, 13: false, 99: false} {
		if p.GRPCCode(code) != want {
			t.Errorf("gRPC code %d retried = %v", code, !want)
		}
	}
	for _, bad := range []string{"", "ok", "nonsense"} {
		if _, err := ParseGRPC(bad); err == nil {
			t.Errorf("ParseGRPC(%q) accepted", bad)
		}
	}
	if (Policy{}).Enabled() || (Policy{}).Method("POST") || !(Policy{}).Method("GET") || !(Policy{NonIdempotent: true}).Method("POST") {
		t.Error("method rules wrong")
	}
}

func FuzzParseHTTP(f *testing.F) {
	for _, s := range []string{"5xx", "gateway-error,429", "500-504", "a-b", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ranges, err := ParseHTTP(s)
		if err != nil {
			return
		}
		for _, r := range ranges {
			if r.From < 100 || r.To > 599 || r.From > r.To {
				t.Fatalf("ParseHTTP(%q) gave %+v", s, r)
			}
		}
	})
}
