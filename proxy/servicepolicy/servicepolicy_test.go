package servicepolicy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/proxy/balance"
	"github.com/meshctl/meshctl/proxy/retry"
)

func TestParseReadsEveryAnnotation(t *testing.T) {
	p, errs := Parse(map[string]string{
		RetryHTTP: "5xx", RetryGRPC: "unavailable", RetryLimit: "4", RetryTimeout: "300ms",
		RetryNonIdempotent: "true", BudgetRatio: "0.3", BudgetMinPerSecond: "5", BudgetTTL: "20s",
		RequestTimeout: "2s", FailureAccrual: "consecutive", MaxFailures: "3", MinPenalty: "2s", MaxPenalty: "20s",
	})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := Policy{
		Retry: retry.Policy{HTTP: []retry.StatusRange{{From: 500, To: 599}}, GRPC: 1 << 14, Limit: 4, PerTryTimeout: 300 * time.Millisecond,
			NonIdempotent: true, Budget: retry.BudgetConfig{Ratio: 0.3, MinPerSecond: 5, TTL: 20 * time.Second}},
		RequestTimeout: 2 * time.Second,
		Accrual:        balance.Accrual{MaxFailures: 3, Backoff: balance.Backoff{Min: 2 * time.Second, Max: 20 * time.Second, Jitter: 0.5}},
	}
	if !equal(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
}

func equal(a, b Policy) bool { return reflect.DeepEqual(a, b) }

func TestParseDefaults(t *testing.T) {
	p, errs := Parse(nil)
	if len(errs) > 0 || p.Retry.Enabled() || p.RequestTimeout != 0 || p.Accrual.MaxFailures != 0 {
		t.Errorf("no annotations gave %+v %v", p, errs)
	}
	p, _ = Parse(map[string]string{RetryHTTP: "gateway-error", FailureAccrual: "consecutive"})
	if p.Retry.Limit != 1 || p.Retry.Budget != retry.DefaultBudget || p.Accrual.MaxFailures != DefaultMaxFailures || p.Accrual.Backoff != balance.DefaultBackoff {
		t.Errorf("defaults: %+v", p)
	}
}

func TestParseReportsBadValuesAndKeepsTheRest(t *testing.T) {
	p, errs := Parse(map[string]string{
		RetryHTTP: "5xx", RetryLimit: "many", RetryTimeout: "-1s", RequestTimeout: "soon", BudgetRatio: "0",
		FailureAccrual: "sometimes", RetryGRPC: "everything",
	})
	if len(errs) != 6 {
		t.Errorf("%d errors, want 6: %v", len(errs), errs)
	}
	for _, e := range errs {
		if !strings.Contains(e.Error(), "meshctl.io/") {
			t.Errorf("error does not name its annotation: %v", e)
		}
	}
	if !p.Retry.Status(503) || p.Retry.Limit != 1 || p.RequestTimeout != 0 || p.Retry.Budget.Ratio != 0.2 {
		t.Errorf("the good values were not kept: %+v", p)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("5xx", "unavailable", "3", "1s", "consecutive", "5")
	f.Fuzz(func(t *testing.T, h, g, limit, timeout, accrual, maxFailures string) {
		p, _ := Parse(map[string]string{RetryHTTP: h, RetryGRPC: g, RetryLimit: limit, RetryTimeout: timeout,
			RequestTimeout: timeout, FailureAccrual: accrual, MaxFailures: maxFailures})
		if p.Retry.Limit < 0 || p.Retry.Limit > MaxRetryLimit || p.Retry.PerTryTimeout < 0 || p.RequestTimeout < 0 ||
			p.Accrual.MaxFailures < 0 || p.Accrual.Backoff.Max < p.Accrual.Backoff.Min {
			t.Fatalf("Parse gave %+v", p)
		}
	})
}
