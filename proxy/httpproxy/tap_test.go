package httpproxy

import (
	"net/http"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/tap"
)

// tapEnd waits for the next request's end on a tap.
func tapEnd(t *testing.T, sub *tap.Tap) api.TapEvent {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-sub.Events():
			if e.Type == api.TapEnd {
				return e
			}
		case <-deadline:
			t.Fatal("no end event on the tap")
		}
	}
}

// TestTapSaysWhereAndWhy: a tapped request's end says which endpoint
// answered, whether over mutual TLS, how many retries it took, and, when
// the proxy answered it itself, why.
func TestTapSaysWhereAndWhy(t *testing.T) {
	hub := tap.NewHub()
	sub := hub.Subscribe(tap.Filter{}, 1000)
	defer hub.Unsubscribe(sub)

	b, _ := failing(t, 1, 500)
	tp := serve(t, destination(t, "web.shop:80", map[string]string{"retry.meshctl.io/budget-min-per-second": "1000"},
		route(b.addr, nil, &api.RouteRetry{Codes: []int{500}, Attempts: 2}), b.addr), Config{Tap: hub})
	time.Sleep(50 * time.Millisecond) // the budget fills
	if res, _ := get(t, tp.url+"/"); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	e := tapEnd(t, sub)
	if e.Status != 200 || e.Retries != 1 || e.Endpoint != b.addr || e.TLS == nil || *e.TLS || e.Reason != "" {
		t.Errorf("end of a request retried once: status %d, retries %d, endpoint %q (want %q), tls %v, reason %q", e.Status, e.Retries, e.Endpoint, b.addr, e.TLS, e.Reason)
	}

	none := serve(t, destination(t, "gone.shop:80", nil, nil), Config{Tap: hub})
	if res, _ := get(t, none.url+"/"); res.StatusCode != 503 {
		t.Fatalf("no endpoints: status %d", res.StatusCode)
	}
	if e := tapEnd(t, sub); e.Status != 503 || e.Reason != "no endpoints" || e.Endpoint != "" {
		t.Errorf("end of a request with no endpoint: status %d, reason %q, endpoint %q", e.Status, e.Reason, e.Endpoint)
	}

	// A retry the budget does not allow: the failure, and why it was not retried.
	nb, _ := failing(t, 1, 500)
	np := serve(t, destination(t, "broke.shop:80", map[string]string{"retry.meshctl.io/budget-min-per-second": "0.001", "retry.meshctl.io/budget-ratio": "0.001"},
		route(nb.addr, nil, &api.RouteRetry{Codes: []int{500}, Attempts: 2}), nb.addr), Config{Tap: hub})
	if res, _ := get(t, np.url+"/"); res.StatusCode != 500 {
		t.Fatalf("budget exhausted: status %d", res.StatusCode)
	}
	if e := tapEnd(t, sub); e.Status != 500 || e.Retries != 0 || e.Reason != "retry budget exhausted" {
		t.Errorf("end of a request whose retry the budget refused: status %d, retries %d, reason %q", e.Status, e.Retries, e.Reason)
	}

	// A request that outlives its timeout: 504, and the reason.
	sb := slow(t, 1, 2*time.Second)
	sp := serve(t, destination(t, "slow.shop:80", nil, route(sb.addr, &api.RouteTimeouts{RequestMs: 100}, nil), sb.addr), Config{Tap: hub})
	if res, _ := get(t, sp.url+"/"); res.StatusCode != 504 {
		t.Fatalf("timeout: status %d", res.StatusCode)
	}
	if e := tapEnd(t, sub); e.Status != 504 || e.Reason != "request timeout" {
		t.Errorf("end of a request that timed out: status %d, reason %q", e.Status, e.Reason)
	}

	// An application (not meshed) cannot speak for the mesh: its own
	// meshctl-proxy-error header is no reason.
	forger := newEcho(t, "forger", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("meshctl-proxy-error", "unauthorized (a rule that does not exist)")
		w.WriteHeader(403)
	})
	fp := serve(t, destination(t, "forger.shop:80", nil, nil, forger.addr), Config{Tap: hub})
	if res, _ := get(t, fp.url+"/"); res.StatusCode != 403 {
		t.Fatalf("forger: status %d", res.StatusCode)
	}
	if e := tapEnd(t, sub); e.Status != 403 || e.Reason != "" {
		t.Errorf("a plaintext upstream's own header taken as the reason: %q", e.Reason)
	}
}
