package httpproxy

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/retry"
	"github.com/meshctl/meshctl/proxy/servicepolicy"
)

// failing answers status to its first n requests, then 200; slow sleeps
// before answering its first slowN requests.
func failing(t *testing.T, n int64, status int) (*echoBackend, *atomic.Int64) {
	var seen atomic.Int64
	e := newEcho(t, "flaky", func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= n {
			w.WriteHeader(status)
			return
		}
		w.Write([]byte("ok"))
	})
	return e, &seen
}

func slow(t *testing.T, slowN int64, d time.Duration) *echoBackend {
	var seen atomic.Int64
	return newEcho(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		if seen.Add(1) <= slowN {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.Write([]byte("ok"))
	})
}

func route(addr string, timeouts *api.RouteTimeouts, retry *api.RouteRetry) []endpoints.RouteSpec {
	return []endpoints.RouteSpec{{Name: "shop/web", Timeouts: timeouts, Retry: retry, Backends: []endpoints.BackendSpec{to("v1.shop:80", addr, 1)}}}
}

func TestRouteRetryOverridesTheServicePolicy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		retry       *api.RouteRetry
		failures    int64
		wantStatus  int
		wantTries   int64
	}{
		{"route retries its codes", nil, &api.RouteRetry{Codes: []int{500}, Attempts: 2}, 2, 200, 3},
		{"route attempts bound the retries", nil, &api.RouteRetry{Codes: []int{500}, Attempts: 1}, 2, 500, 2},
		{"other codes are not retried", nil, &api.RouteRetry{Codes: []int{503}, Attempts: 2}, 2, 500, 1},
		{"the route's codes replace the Service's", map[string]string{"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "3"}, &api.RouteRetry{Codes: []int{503}, Attempts: 2}, 2, 500, 1},
		{"without a route retry, the Service's", map[string]string{"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "2"}, nil, 2, 200, 3},
		{"without either, no retry", nil, nil, 2, 500, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, tries := failing(t, tc.failures, 500)
			// A budget accrues retries with time (10/s by default): a
			// generous one, and a moment for it to fill.
			annotations := map[string]string{"retry.meshctl.io/budget-min-per-second": "1000"}
			for k, v := range tc.annotations {
				annotations[k] = v
			}
			tp := serve(t, destination(t, "web.shop:80", annotations, route(b.addr, nil, tc.retry), b.addr), Config{})
			time.Sleep(50 * time.Millisecond)
			res, _ := get(t, tp.url+"/")
			if res.StatusCode != tc.wantStatus || tries.Load() != tc.wantTries {
				t.Errorf("%d after %d tries, want %d after %d", res.StatusCode, tries.Load(), tc.wantStatus, tc.wantTries)
			}
		})
	}
}

func TestRouteRetryWaitsItsBackoff(t *testing.T) {
	b, tries := failing(t, 2, 500)
	generous := map[string]string{"retry.meshctl.io/budget-min-per-second": "1000"}
	tp := serve(t, destination(t, "web.shop:80", generous, route(b.addr, nil, &api.RouteRetry{Codes: []int{500}, Attempts: 2, BackoffMs: 150}), b.addr), Config{})
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	res, _ := get(t, tp.url+"/")
	if took := time.Since(start); res.StatusCode != 200 || tries.Load() != 3 || took < 300*time.Millisecond {
		t.Errorf("%d after %d tries in %v; want 200 after 3 tries, two waits of 150ms", res.StatusCode, tries.Load(), took)
	}
}

func TestRouteRetriesDrawOnTheServicesBudget(t *testing.T) {
	b, tries := failing(t, 1000, 500)
	// A budget with next to nothing in it.
	annotations := map[string]string{"retry.meshctl.io/budget-ratio": "0.001", "retry.meshctl.io/budget-min-per-second": "0.001"}
	tp := serve(t, destination(t, "web.shop:80", annotations, route(b.addr, nil, &api.RouteRetry{Codes: []int{500}, Attempts: 3}), b.addr), Config{})
	const n = 20
	for range n {
		get(t, tp.url+"/")
	}
	if got := tries.Load(); got > n+1 {
		t.Errorf("%d tries for %d requests: the retries ignored the budget", got, n)
	}
	if tp.counter(t, "retry_budget_exhausted_total", nil) == 0 {
		t.Error("no retry counted as refused by the budget")
	}
}

func TestRouteTimeoutsOverrideTheServices(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		timeouts    *api.RouteTimeouts
		retry       *api.RouteRetry
		slowN       int64
		wantStatus  int
		within      time.Duration
	}{
		{"route request timeout", nil, &api.RouteTimeouts{RequestMs: 200}, nil, 1, 504, time.Second},
		{"Service request timeout as fallback", map[string]string{"timeout.meshctl.io/request": "200ms"}, nil, nil, 1, 504, time.Second},
		{"a longer route timeout overrides the Service's", map[string]string{"timeout.meshctl.io/request": "100ms"}, &api.RouteTimeouts{RequestMs: 5000}, nil, 1, 200, 2 * time.Second},
		{"route per-try timeout, no retry", nil, &api.RouteTimeouts{BackendRequestMs: 200}, nil, 1, 504, time.Second},
		{"route per-try timeout, then a retry", map[string]string{"retry.meshctl.io/budget-min-per-second": "1000"}, &api.RouteTimeouts{BackendRequestMs: 200}, &api.RouteRetry{Attempts: 1}, 1, 200, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := slow(t, tc.slowN, 600*time.Millisecond)
			tp := serve(t, destination(t, "web.shop:80", tc.annotations, route(b.addr, tc.timeouts, tc.retry), b.addr), Config{})
			start := time.Now()
			res, _ := get(t, tp.url+"/")
			if took := time.Since(start); res.StatusCode != tc.wantStatus || took > tc.within {
				t.Errorf("%d in %v, want %d within %v", res.StatusCode, took, tc.wantStatus, tc.within)
			}
		})
	}
}

func TestRouteTimeoutsOverTheServicesAndZeroTurnsThemOff(t *testing.T) {
	svc := &servicepolicy.Policy{RequestTimeout: time.Second, Retry: retry.Policy{PerTryTimeout: 300 * time.Millisecond}}
	for _, tc := range []struct {
		name              string
		route             *endpoints.Route
		wantRequest, want time.Duration
	}{
		{"no route", nil, time.Second, 300 * time.Millisecond},
		{"unset", &endpoints.Route{}, time.Second, 300 * time.Millisecond},
		{"set", &endpoints.Route{RequestTimeout: 5 * time.Second, TryTimeout: time.Second}, 5 * time.Second, time.Second},
		{"0s", &endpoints.Route{RequestTimeout: -1, TryTimeout: -1}, 0, 0},
	} {
		pol := policyFor(svc, tc.route)
		if pol.requestTimeout != tc.wantRequest || pol.retry.PerTryTimeout != tc.want {
			t.Errorf("%s: request %s, try %s; want %s, %s", tc.name, pol.requestTimeout, pol.retry.PerTryTimeout, tc.wantRequest, tc.want)
		}
	}
}
