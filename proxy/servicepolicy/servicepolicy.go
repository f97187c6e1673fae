package servicepolicy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meshctl/meshctl/proxy/balance"
	"github.com/meshctl/meshctl/proxy/retry"
)

// The annotations read, on a Service.
const (
	RetryHTTP          = "retry.meshctl.io/http"
	RetryGRPC          = "retry.meshctl.io/grpc"
	RetryLimit         = "retry.meshctl.io/limit"
	RetryTimeout       = "retry.meshctl.io/timeout"
	RetryNonIdempotent = "retry.meshctl.io/non-idempotent"
	BudgetRatio        = "retry.meshctl.io/budget-ratio"
	BudgetMinPerSecond = "retry.meshctl.io/budget-min-per-second"
	BudgetTTL          = "retry.meshctl.io/budget-ttl"
	RequestTimeout     = "timeout.meshctl.io/request"
	FailureAccrual     = "balancer.meshctl.io/failure-accrual"
	MaxFailures        = "balancer.meshctl.io/failure-accrual-consecutive-max-failures"
	MinPenalty         = "balancer.meshctl.io/failure-accrual-consecutive-min-penalty"
	MaxPenalty         = "balancer.meshctl.io/failure-accrual-consecutive-max-penalty"
)

// DefaultMaxFailures is the consecutive failures that eject an endpoint when
// failure accrual is on and the Service does not say.
const DefaultMaxFailures = 7

// MaxRetryLimit bounds retry.meshctl.io/limit.
const MaxRetryLimit = 10

// Policy is a Service's traffic policy. The zero value is none: no retries,
// no timeout, no failure accrual.
type Policy struct {
	// Retry is what may be retried, how often and within which budget.
	Retry retry.Policy
	// RequestTimeout bounds a whole request, retries included; 0: none.
	RequestTimeout time.Duration
	// Accrual is the failure accrual of the Service's endpoints.
	Accrual balance.Accrual
}

// Parse reads a Service's annotations. Every value that does not parse is
// an error in errs and keeps its default.
func Parse(annotations map[string]string) (p Policy, errs []error) {
	bad := func(key, value string, err error) {
		errs = append(errs, fmt.Errorf("%s: %q: %w", key, value, err))
	}
	if v, ok := annotations[RetryHTTP]; ok {
		if r, err := retry.ParseHTTP(v); err != nil {
			bad(RetryHTTP, v, err)
		} else {
			p.Retry.HTTP = r
		}
	}
	if v, ok := annotations[RetryGRPC]; ok {
		if m, err := retry.ParseGRPC(v); err != nil {
			bad(RetryGRPC, v, err)
		} else {
			p.Retry.GRPC = m
		}
	}
	if p.Retry.Enabled() {
		p.Retry.Limit = 1
	}
	if v, ok := annotations[RetryLimit]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil || n < 0:
			bad(RetryLimit, v, fmt.Errorf("want a count of retries, 0 to %d", MaxRetryLimit))
		case n > MaxRetryLimit:
			bad(RetryLimit, v, fmt.Errorf("at most %d retries", MaxRetryLimit))
		default:
			p.Retry.Limit = n
		}
	}
	p.Retry.PerTryTimeout = duration(annotations, RetryTimeout, bad)
	if v, ok := annotations[RetryNonIdempotent]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			bad(RetryNonIdempotent, v, fmt.Errorf("want true or false"))
		}
		p.Retry.NonIdempotent = b
	}
	p.Retry.Budget = retry.DefaultBudget
	if v, ok := annotations[BudgetRatio]; ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f <= 0 || f > 10 {
			bad(BudgetRatio, v, fmt.Errorf("want a ratio above 0, at most 10 (e.g. 0.2)"))
		} else {
			p.Retry.Budget.Ratio = f
		}
	}
	if v, ok := annotations[BudgetMinPerSecond]; ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || f <= 0 || f > 1e6 {
			bad(BudgetMinPerSecond, v, fmt.Errorf("want retries per second above 0 (e.g. 10)"))
		} else {
			p.Retry.Budget.MinPerSecond = f
		}
	}
	if d := duration(annotations, BudgetTTL, bad); d > 0 {
		if d < time.Second || d > time.Minute {
			bad(BudgetTTL, annotations[BudgetTTL], fmt.Errorf("want 1s to 60s"))
		} else {
			p.Retry.Budget.TTL = d
		}
	}
	p.RequestTimeout = duration(annotations, RequestTimeout, bad)
	if v, ok := annotations[FailureAccrual]; ok {
		switch strings.TrimSpace(v) {
		case "consecutive":
			p.Accrual.MaxFailures = DefaultMaxFailures
		case "", "none":
		default:
			bad(FailureAccrual, v, fmt.Errorf("the only kind is consecutive"))
		}
	}
	if _, ok := annotations[MaxFailures]; ok && p.Accrual.MaxFailures == 0 {
		bad(MaxFailures, annotations[MaxFailures], fmt.Errorf("ignored: %s is not consecutive", FailureAccrual))
	}
	if v, ok := annotations[MaxFailures]; ok && p.Accrual.MaxFailures > 0 {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 {
			bad(MaxFailures, v, fmt.Errorf("want a count of failures, at least 1"))
		} else {
			p.Accrual.MaxFailures = n
		}
	}
	p.Accrual.Backoff = balance.DefaultBackoff
	if d := duration(annotations, MinPenalty, bad); d > 0 {
		p.Accrual.Backoff.Min = d
	}
	if d := duration(annotations, MaxPenalty, bad); d > 0 {
		p.Accrual.Backoff.Max = d
	}
	if p.Accrual.Backoff.Max < p.Accrual.Backoff.Min {
		bad(MaxPenalty, annotations[MaxPenalty], fmt.Errorf("below the minimum penalty %s", p.Accrual.Backoff.Min))
		p.Accrual.Backoff.Max = p.Accrual.Backoff.Min
	}
	return p, errs
}

// duration reads a positive Go duration ("500ms", "2s").
func duration(a map[string]string, key string, bad func(key, value string, err error)) time.Duration {
	v, ok := a[key]
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		bad(key, v, fmt.Errorf("want a positive duration such as 500ms or 2s"))
		return 0
	}
	return d
}
