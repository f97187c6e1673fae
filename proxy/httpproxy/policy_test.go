package httpproxy

import (
	"context"
	"io"
	"net/http"
	"strings"
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
	// POST too: a route's retry takes every method, within the same budget.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			b, tries := failing(t, 1000, 500)
			// A budget with next to nothing in it.
			annotations := map[string]string{"retry.meshctl.io/budget-ratio": "0.001", "retry.meshctl.io/budget-min-per-second": "0.001"}
			tp := serve(t, destination(t, "web.shop:80", annotations, route(b.addr, nil, &api.RouteRetry{Codes: []int{500}, Attempts: 3}), b.addr), Config{})
			const n = 20
			for range n {
				req, err := http.NewRequestWithContext(context.Background(), method, tp.url+"/", strings.NewReader("body"))
				if err != nil {
					t.Fatal(err)
				}
				do(t, h1(), req)
			}
			if got := tries.Load(); got > n+1 {
				t.Errorf("%d tries for %d requests: the retries ignored the budget", got, n)
			}
			if tp.counter(t, "retry_budget_exhausted_total", nil) == 0 {
				t.Error("no retry counted as refused by the budget")
			}
		})
	}
}

// budgetReady waits until set's retry budget allows a retry (a new budget
// has nothing to spend until its first tokens accrue).
func budgetReady(t *testing.T, set *endpoints.Set) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b := set.Budget()
		if b != nil && b.Available(time.Now()) >= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the retry budget allows no retry after 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestARouteRetryTakesEveryMethod: GEP-1731 has no method rule, so a
// route's retry sends a POST (or a gRPC call) again with its body, whatever
// the Service's retry.meshctl.io/non-idempotent says; the Service's own
// retries keep that rule, and a body beyond MaxReplayBytes is sent once.
func TestARouteRetryTakesEveryMethod(t *testing.T) {
	small := "order=42"
	large := strings.Repeat("x", MaxReplayBytes+1)
	for _, tc := range []struct {
		name        string
		method      string
		contentType string
		body        string
		annotations map[string]string
		retry       *api.RouteRetry
		wantStatus  int
		wantTries   int64
	}{
		{"route retry, POST", http.MethodPost, "text/plain", small, nil, &api.RouteRetry{Codes: []int{503}, Attempts: 1}, 200, 2},
		{"route retry, PATCH", http.MethodPatch, "text/plain", small, nil, &api.RouteRetry{Codes: []int{503}, Attempts: 1}, 200, 2},
		{"route retry, gRPC call", http.MethodPost, "application/grpc", small, nil, &api.RouteRetry{Codes: []int{503}, Attempts: 1}, 200, 2},
		{"route retry, POST, the Service forbidding it", http.MethodPost, "text/plain", small,
			map[string]string{"retry.meshctl.io/non-idempotent": "false"}, &api.RouteRetry{Codes: []int{503}, Attempts: 1}, 200, 2},
		{"route retry, POST beyond the replay buffer", http.MethodPost, "text/plain", large, nil, &api.RouteRetry{Codes: []int{503}, Attempts: 1}, 503, 1},
		{"the Service's retry keeps its method rule", http.MethodPost, "text/plain", small,
			map[string]string{"retry.meshctl.io/http": "503"}, nil, 503, 1},
		{"the Service's retry, POST allowed", http.MethodPost, "text/plain", small,
			map[string]string{"retry.meshctl.io/http": "503", "retry.meshctl.io/non-idempotent": "true"}, nil, 200, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Whichever endpoint takes the first try answers 503, the
			// next try 200; both read and keep the whole body.
			var tries atomic.Int64
			bodies := make(chan string, 10)
			h := func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					t.Errorf("reading the body: %v", err)
				}
				bodies <- string(b)
				if tries.Add(1) == 1 {
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				w.Write([]byte("ok"))
			}
			a, b := newEcho(t, "a", h), newEcho(t, "b", h)
			annotations := map[string]string{"retry.meshctl.io/budget-min-per-second": "1000"}
			for k, v := range tc.annotations {
				annotations[k] = v
			}
			routes := []endpoints.RouteSpec{{Name: "shop/web", Retry: tc.retry, Backends: []endpoints.BackendSpec{
				{Name: "v1.shop:80", Weight: 1, Endpoints: []endpoints.Endpoint{{Addr: a.addr}, {Addr: b.addr}}},
			}}}
			set := destination(t, "web.shop:80", annotations, routes, a.addr, b.addr)
			budgetReady(t, set)
			tp := serve(t, set, Config{})
			req, err := http.NewRequestWithContext(context.Background(), tc.method, tp.url+"/orders", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", tc.contentType)
			res, _ := do(t, h1(), req)
			if res.StatusCode != tc.wantStatus || tries.Load() != tc.wantTries {
				t.Fatalf("%d after %d tries, want %d after %d", res.StatusCode, tries.Load(), tc.wantStatus, tc.wantTries)
			}
			for i := range tc.wantTries {
				if got := <-bodies; got != tc.body {
					t.Errorf("try %d sent a body of %d bytes, want the client's %d", i+1, len(got), len(tc.body))
				}
			}
			if tc.wantTries == 2 && (a.count.Load() != 1 || b.count.Load() != 1) {
				t.Errorf("tries per endpoint %d and %d: the retry did not go to the other endpoint", a.count.Load(), b.count.Load())
			}
		})
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
