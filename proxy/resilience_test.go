package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/proxy/endpoints"
)

// serviceAddr is the Service address the balanced tests' clients call.
const serviceAddr = "10.96.0.99:80"

// balanced runs an outbound proxy that sends serviceAddr to the backends,
// with the Service annotations given.
func balanced(t *testing.T, annotations map[string]string, cfg Config, backends ...string) *running {
	t.Helper()
	table, err := json.Marshal(map[string]any{serviceAddr: map[string]any{"endpoints": backends, "annotations": annotations}})
	if err != nil {
		t.Fatal(err)
	}
	tab, err := endpoints.Parse(table)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Endpoints = tab
	cfg.Outbound = &SideConfig{Listen: "127.0.0.1:0", Upstream: serviceAddr}
	return startProxy(t, cfg)
}

// counting is a backend that counts its requests and answers as told.
type counting struct {
	hits   atomic.Int64
	status atomic.Int64 // 0: 200
	delay  atomic.Int64 // nanoseconds
	bodies chan string  // when set, receives each request's body
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.hits.Add(1)
	body, _ := io.ReadAll(r.Body)
	if c.bodies != nil {
		c.bodies <- string(body)
	}
	time.Sleep(time.Duration(c.delay.Load()))
	if s := c.status.Load(); s != 0 {
		w.WriteHeader(int(s))
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func get(t *testing.T, c *http.Client, r *running, method, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+r.outbound()+"/", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web.demo"
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	return res, readAll(t, res.Body)
}

func TestSlowEndpointGetsLessTrafficOnOneConnection(t *testing.T) {
	fast1, fast2, slow := &counting{}, &counting{}, &counting{}
	slow.delay.Store(int64(20 * time.Millisecond))
	r := balanced(t, nil, Config{}, backend(t, fast1), backend(t, fast2), backend(t, slow))
	c := h1Client()
	for range 600 {
		if res, _ := get(t, c, r, "GET", ""); res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
	}
	f1, f2, s := fast1.hits.Load(), fast2.hits.Load(), slow.hits.Load()
	t.Logf("600 requests over one connection: fast %d and %d, slow (+20 ms) %d; round robin would give 200 each", f1, f2, s)
	if s == 0 || s*3 >= f1 || s*3 >= f2 {
		t.Errorf("slow endpoint got %d, fast ones %d and %d: want some, under a third of each", s, f1, f2)
	}
}

func TestRetriesTurnFailuresIntoSuccesses(t *testing.T) {
	bad, good := &counting{}, &counting{}
	bad.status.Store(503)
	// A budget of one retry per request: the failing endpoint answers fast,
	// so it wins many draws and most requests need their retry.
	r := balanced(t, map[string]string{"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "4", "retry.meshctl.io/budget-ratio": "1"},
		Config{}, backend(t, bad), backend(t, good))
	c := h1Client()
	for i := range 200 {
		if res, body := get(t, c, r, "GET", ""); res.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
		}
	}
	fams := scrape(t, r)
	retries := metricValue(fams, "retry_total", map[string]string{"destination": serviceAddr})
	t.Logf("200 requests all succeeded; the failing endpoint got %d, retries %v", bad.hits.Load(), retries)
	if retries != float64(bad.hits.Load()) || retries == 0 {
		t.Errorf("retry_total %v, the failing endpoint was tried %d times", retries, bad.hits.Load())
	}
	// Responses are counted once, with the status the client got.
	if got := metricValue(fams, "response_total", map[string]string{"status_code": "503"}); got != 0 {
		t.Errorf("%v responses recorded as 503", got)
	}
}

func TestRetryBudgetBoundsRetriesAgainstAFailingService(t *testing.T) {
	down := &counting{}
	down.status.Store(500)
	start := time.Now() // the budget starts with the proxy's table
	r := balanced(t, map[string]string{
		"retry.meshctl.io/http": "5xx", "retry.meshctl.io/limit": "4",
		"retry.meshctl.io/budget-ratio": "0.2", "retry.meshctl.io/budget-min-per-second": "5",
	}, Config{}, backend(t, down))
	c := h1Client()
	const n = 300
	for range n {
		if res, _ := get(t, c, r, "GET", ""); res.StatusCode != 500 {
			t.Fatalf("status %d, want the service's 500", res.StatusCode)
		}
	}
	elapsed := time.Since(start)
	retries := down.hits.Load() - n
	bound := 0.2*n + 5*elapsed.Seconds()
	fams := scrape(t, r)
	exhausted := metricValue(fams, "retry_budget_exhausted_total", nil)
	t.Logf("%d requests in %v: %d retries (bound %.1f), %v refused by the budget", n, elapsed.Round(time.Millisecond), retries, bound, exhausted)
	if float64(retries) > bound {
		t.Errorf("%d retries, over the budget's bound %.1f", retries, bound)
	}
	if exhausted == 0 || metricValue(fams, "retry_total", nil) != float64(retries) {
		t.Errorf("metrics: %v exhausted, %v retries; the service saw %d retries", exhausted, metricValue(fams, "retry_total", nil), retries)
	}
}

func TestNonIdempotentRequestsAreRetriedOnlyWhenAllowed(t *testing.T) {
	bad := &counting{bodies: make(chan string, 100)}
	bad.status.Store(503)
	for _, allow := range []bool{false, true} {
		// (A budget of 3 retries per request: a new budget has no reserve yet.)
		ann := map[string]string{"retry.meshctl.io/http": "503", "retry.meshctl.io/limit": "3", "retry.meshctl.io/budget-ratio": "3"}
		if allow {
			ann["retry.meshctl.io/non-idempotent"] = "true"
		}
		bad.hits.Store(0)
		r := balanced(t, ann, Config{}, backend(t, bad))
		if res, _ := get(t, h1Client(), r, "POST", "payload"); res.StatusCode != 503 {
			t.Errorf("POST (non-idempotent allowed: %v): %d, want the service's 503", allow, res.StatusCode)
		}
		want := int64(1)
		if allow {
			want = 1 + 3
		}
		if got := bad.hits.Load(); got != want {
			t.Errorf("non-idempotent allowed: %v: the POST was tried %d times, want %d", allow, got, want)
		}
	}
	for range len(bad.bodies) {
		if b := <-bad.bodies; b != "payload" {
			t.Errorf("a try carried body %q, want every try to carry the whole body", b)
		}
	}
	// A body beyond the replay buffer is sent once.
	bad.hits.Store(0)
	bad.bodies = nil
	r := balanced(t, map[string]string{"retry.meshctl.io/http": "503", "retry.meshctl.io/non-idempotent": "true"}, Config{}, backend(t, bad))
	if res, _ := get(t, h1Client(), r, "PUT", strings.Repeat("x", 65<<10)); res.StatusCode != 503 || bad.hits.Load() != 1 {
		t.Errorf("a 65 KiB PUT: %d after %d tries, want 503 after 1", res.StatusCode, bad.hits.Load())
	}
}

func TestTimeoutsAnswer504AndDeadlineExceeded(t *testing.T) {
	slow := &counting{}
	slow.delay.Store(int64(2 * time.Second))
	r := balanced(t, map[string]string{"timeout.meshctl.io/request": "200ms"}, Config{}, backend(t, slow))
	c := h1Client()
	start := time.Now()
	res, _ := get(t, c, r, "GET", "")
	took := time.Since(start)
	if res.StatusCode != http.StatusGatewayTimeout || res.Header.Get("meshctl-proxy-error") != "request timeout" {
		t.Errorf("status %d (%q), want 504 request timeout", res.StatusCode, res.Header.Get("meshctl-proxy-error"))
	}
	if took >= 2*time.Second {
		t.Errorf("the 504 came after %v: the timeout did not cut the 2s request", took)
	}
	t.Logf("2 s endpoint behind a 200 ms timeout: %d after %v", res.StatusCode, took.Round(time.Millisecond))
	// gRPC clients get DEADLINE_EXCEEDED.
	res, _ = get(t, h2cClient(), r, "POST", "\x00\x00\x00\x00\x00", "Content-Type", "application/grpc", "Te", "trailers")
	if res.StatusCode != 200 || res.Header.Get("Grpc-Status") != "4" {
		t.Errorf("gRPC: %d grpc-status %q, want 200 and 4", res.StatusCode, res.Header.Get("Grpc-Status"))
	}
	if got := metricValue(scrape(t, r), "request_timeout_total", map[string]string{"kind": "request"}); got != 2 {
		t.Errorf("request_timeout_total{kind=request} = %v, want 2", got)
	}
}

func TestPerTryTimeoutRetriesAnotherEndpoint(t *testing.T) {
	slow, fast := &counting{}, &counting{}
	slow.delay.Store(int64(2 * time.Second))
	r := balanced(t, map[string]string{"retry.meshctl.io/http": "gateway-error", "retry.meshctl.io/timeout": "100ms", "retry.meshctl.io/limit": "2"},
		Config{}, backend(t, slow), backend(t, fast))
	c := h1Client()
	start := time.Now()
	var slowest time.Duration
	for i := range 20 {
		began := time.Now()
		if res, _ := get(t, c, r, "GET", ""); res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, res.StatusCode)
		}
		slowest = max(slowest, time.Since(began))
	}
	tries := slow.hits.Load()
	timedOut := metricValue(scrape(t, r), "request_timeout_total", map[string]string{"destination": serviceAddr, "kind": "try"})
	t.Logf("20 requests, slow endpoint tried %d times, %v tries timed out, slowest request %v, all in %v",
		tries, timedOut, slowest.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if tries == 0 {
		t.Fatal("the slow endpoint was never tried: nothing was tested")
	}
	// Every try on the slow endpoint ran out of its 100 ms and went on to
	// the fast one: no request waited for the slow answer (2 s).
	if timedOut != float64(tries) {
		t.Errorf("request_timeout_total{kind=\"try\"} = %v, want one per try on the slow endpoint (%d)", timedOut, tries)
	}
	if slowest > time.Second {
		t.Errorf("the slowest request took %v: a try on the slow endpoint was not cut at 100 ms", slowest)
	}
}

func TestFailureAccrualEjectsAndReadmits(t *testing.T) {
	sick, a, b := &counting{}, &counting{}, &counting{}
	sick.status.Store(500)
	// The healthy endpoints answer in 20 ms, the sick one at once: P2C
	// prefers it (fast failures attract traffic, which accrual is for).
	// With all three equally fast, one slow first answer from the sick
	// endpoint (a dial, a GC pause under -race) made the peak EWMA shun it
	// for seconds: it got 1 request of 300 and nothing was tested.
	a.delay.Store(int64(20 * time.Millisecond))
	b.delay.Store(int64(20 * time.Millisecond))
	r := balanced(t, map[string]string{
		"balancer.meshctl.io/failure-accrual":                          "consecutive",
		"balancer.meshctl.io/failure-accrual-consecutive-max-failures": "3",
		"balancer.meshctl.io/failure-accrual-consecutive-min-penalty":  "200ms",
		"balancer.meshctl.io/failure-accrual-consecutive-max-penalty":  "400ms",
	}, Config{}, backend(t, sick), backend(t, a), backend(t, b))
	c := h1Client()
	failures := 0
	start := time.Now()
	for range 60 {
		if res, _ := get(t, c, r, "GET", ""); res.StatusCode != 200 {
			failures++
		}
	}
	elapsed := time.Since(start)
	ejected := metricValue(scrape(t, r), "balancer_ejected_endpoints", map[string]string{"destination": serviceAddr})
	// After the 3 that eject it, the sick endpoint is probed at most once
	// per penalty (at least 200 ms): how many probes fit depends on how
	// long the 60 requests took, which a loaded machine stretches.
	probes := int(elapsed/(200*time.Millisecond)) + 1
	t.Logf("60 requests in %v: %d failed (the sick endpoint got %d), ejected gauge %v; at most %d probes fit", elapsed.Round(time.Millisecond), failures, sick.hits.Load(), ejected, probes)
	if ejected != 1 {
		t.Errorf("balancer_ejected_endpoints = %v, want 1", ejected)
	}
	if failures < 3 || failures > 3+probes {
		t.Errorf("%d failures: want the 3 that eject it and at most %d probes", failures, probes)
	}
	// Healed, it is readmitted at its next probe.
	sick.status.Store(0)
	before := sick.hits.Load()
	eventually(t, "the healed endpoint to take traffic again", 10*time.Second, func() bool {
		get(t, c, r, "GET", "")
		return sick.hits.Load() > before+5
	})
	if got := metricValue(scrape(t, r), "balancer_ejected_endpoints", nil); got != 0 {
		t.Errorf("ejected gauge %v after healing", got)
	}
}

func TestRequestsWaitForAnEndpointThenFailFast(t *testing.T) {
	// Both endpoints refuse connections: each is backed off after its first
	// failure, then requests wait QueueTimeout and get 503.
	r := balanced(t, nil, Config{QueueTimeout: 150 * time.Millisecond}, closedPort(t), closedPort(t))
	c := h1Client()
	statuses := map[int]int{}
	var waited time.Duration
	for range 4 {
		start := time.Now()
		res, _ := get(t, c, r, "GET", "")
		statuses[res.StatusCode]++
		if res.StatusCode == 503 {
			waited = time.Since(start)
			if !strings.Contains(res.Header.Get("meshctl-proxy-error"), "failing") {
				t.Errorf("503 with %q", res.Header.Get("meshctl-proxy-error"))
			}
		}
	}
	t.Logf("statuses %v; a 503 came after %v", statuses, waited.Round(time.Millisecond))
	if statuses[502] < 1 || statuses[503] < 1 || waited < 150*time.Millisecond {
		t.Errorf("statuses %v, 503 after %v: want 502s for the failed connections, then 503 after the 150ms wait", statuses, waited)
	}
	if got := metricValue(scrape(t, r), "balancer_unavailable_total", map[string]string{"reason": "all_failing"}); got < 1 {
		t.Errorf("balancer_unavailable_total{reason=all_failing} = %v", got)
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	addr := backend(t, http.NotFoundHandler())
	return addr[:strings.LastIndex(addr, ":")] + ":1"
}

func TestHTTP2CallsAreBalancedPerCallOnOneConnection(t *testing.T) {
	backends := []*counting{{}, {}, {}}
	r := balanced(t, nil, Config{}, backend(t, backends[0]), backend(t, backends[1]), backend(t, backends[2]))
	c := h2cClient()
	for range 300 {
		if res, _ := get(t, c, r, "GET", ""); res.StatusCode != 200 || res.ProtoMajor != 2 {
			t.Fatalf("status %d over HTTP/%d", res.StatusCode, res.ProtoMajor)
		}
	}
	fams := scrape(t, r)
	conns := metricValue(fams, "tcp_open_total", map[string]string{"direction": "outbound"})
	var got []int64
	for _, b := range backends {
		got = append(got, b.hits.Load())
	}
	t.Logf("300 HTTP/2 calls over %v client connection(s): %v", conns, got)
	if conns != 1 {
		t.Fatalf("%v client connections, want the one", conns)
	}
	// Balanced per connection, one endpoint would get all 300. Per call,
	// each gets some (P2C favours the faster ones, so not evenly).
	for i, n := range got {
		if n == 0 || n > 240 {
			t.Errorf("endpoint %d got %d of 300 calls on one connection: not balanced per call", i, n)
		}
	}
}
