package httpproxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/discovery"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// mirrored is a route to v1 mirrored to the mirror at addr, taking
// perMillion parts per million of the requests (0: all).
func mirrored(v1, mirror string, perMillion int) []endpoints.RouteSpec {
	return []endpoints.RouteSpec{{
		Name: "shop/web", RequestHeaders: &api.HeaderEdit{Set: []api.Header{{Name: "X-Route", Value: "edited"}}},
		Mirrors:  []endpoints.MirrorSpec{{Backend: endpoints.BackendSpec{Name: "mirror.shop:80", Endpoints: []endpoints.Endpoint{{Addr: mirror}}}, PerMillion: perMillion}},
		Backends: []endpoints.BackendSpec{{Name: "v1.shop:80", Weight: 1, Endpoints: []endpoints.Endpoint{{Addr: v1}}, RequestHeaders: &api.HeaderEdit{Set: []api.Header{{Name: "X-Backend-Only", Value: "1"}}}}},
	}}
}

func TestMirrorsGetACopyOfEachRequest(t *testing.T) {
	v1, mirror := newEcho(t, "v1", nil), newEcho(t, "mirror", nil)
	tp := serve(t, destination(t, "web.shop:80", nil, mirrored(v1.addr, mirror.addr, 0), v1.addr), Config{})
	res, body := get(t, tp.url+"/mirror?x=1", "X-Client", "c")
	if res.StatusCode != 200 || decode(t, body).Backend != "v1" {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	select {
	case e := <-mirror.seen:
		if e.Path != "/mirror" || e.Query != "x=1" || e.Header.Get("X-Client") != "c" || e.Header.Get("X-Route") != "edited" || e.Header.Get("X-Backend-Only") != "" {
			t.Errorf("the mirror saw %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the mirror got no copy")
	}
	tp.WaitMirrors()
	if n := tp.counter(t, "mirror_requests_total", map[string]string{"destination": "mirror.shop:80", "result": metrics.MirrorSent}); n != 1 {
		t.Errorf("mirror sent count %v, want 1", n)
	}
	// A request with a body is not copied (see Proxy.mirror), and counted.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, tp.url+"/post", strings.NewReader("payload"))
	if res, _ := do(t, h1(), req); res.StatusCode != 200 {
		t.Errorf("POST: %d", res.StatusCode)
	}
	tp.WaitMirrors()
	if n := mirror.count.Load(); n != 1 {
		t.Errorf("the mirror got %d requests, want 1 (the POST has a body)", n)
	}
	if n := tp.counter(t, "mirror_requests_total", map[string]string{"destination": "mirror.shop:80", "result": metrics.MirrorDropped}); n != 1 {
		t.Errorf("mirror dropped count %v, want 1", n)
	}
}

func TestAMirrorNeverChangesTheCallersRequest(t *testing.T) {
	v1 := newEcho(t, "v1", nil)
	release := make(chan struct{})
	hang := newEcho(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	broken := newEcho(t, "broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "mirror failure", http.StatusInternalServerError)
	})
	const hangFor = 1500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		mirror string
	}{
		{"hanging", hang.addr},
		{"answering 500", broken.addr},
		{"unreachable", unreachable(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := serve(t, destination(t, "web.shop:80", nil, mirrored(v1.addr, tc.mirror, api.PerMillionAll), v1.addr), Config{MirrorTimeout: hangFor})
			for range 5 {
				start := time.Now()
				res, body := get(t, tp.url+"/x")
				if took := time.Since(start); took > hangFor/3 {
					t.Errorf("the request took %v: the mirror delayed it", took)
				}
				if res.StatusCode != 200 || decode(t, body).Backend != "v1" || res.Header.Get(proxyErrorHeader) != "" {
					t.Errorf("the caller got %d %q %s", res.StatusCode, res.Header.Get(proxyErrorHeader), body)
				}
			}
			tp.WaitMirrors() // a hanging mirror's copies time out
			if n := tp.counter(t, "mirror_requests_total", map[string]string{"destination": "mirror.shop:80", "result": metrics.MirrorFailed}); n != 5 {
				t.Errorf("mirror failures counted %v, want 5", n)
			}
		})
	}
}

func TestMirrorsInFlightAreBoundedAndTheRestDropped(t *testing.T) {
	v1 := newEcho(t, "v1", nil)
	release := make(chan struct{})
	hang := newEcho(t, "hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	tp := serve(t, destination(t, "web.shop:80", nil, mirrored(v1.addr, hang.addr, api.PerMillionAll), v1.addr), Config{MaxMirrors: 2})
	for range 5 {
		if res, _ := get(t, tp.url+"/x"); res.StatusCode != 200 {
			t.Fatalf("%d", res.StatusCode)
		}
	}
	close(release)
	tp.WaitMirrors()
	sent := tp.counter(t, "mirror_requests_total", map[string]string{"destination": "mirror.shop:80", "result": metrics.MirrorSent})
	dropped := tp.counter(t, "mirror_requests_total", map[string]string{"destination": "mirror.shop:80", "result": metrics.MirrorDropped})
	if sent != 2 || dropped != 3 {
		t.Errorf("sent %v, dropped %v; want 2 in flight at most, 3 dropped", sent, dropped)
	}
}

func TestMirrorPercent(t *testing.T) {
	v1, mirror := newEcho(t, "v1", nil), newEcho(t, "mirror", nil)
	tp := serve(t, destination(t, "web.shop:80", nil, mirrored(v1.addr, mirror.addr, 200_000), v1.addr), Config{})
	const n = 300
	for range n {
		get(t, tp.url+"/x")
	}
	tp.WaitMirrors()
	got := mirror.count.Load()
	// 20% of 300 is 60; binomial sd ≈ 6.9: ±5 sd.
	if got < 25 || got > 95 {
		t.Errorf("the mirror got %d of %d requests, want about 20%%", got, n)
	}
}

// TestMirrorSharesUnderOnePercent: a share in parts per million mirrors
// what it says, 0.5 % being neither none nor all. The proxy's draw is
// replaced by one that cycles through 200 evenly spaced values, so exactly
// one request in 200 is copied.
func TestMirrorSharesUnderOnePercent(t *testing.T) {
	v1, mirror := newEcho(t, "v1", nil), newEcho(t, "mirror", nil)
	tp := serve(t, destination(t, "web.shop:80", nil, mirrored(v1.addr, mirror.addr, 5_000), v1.addr), Config{})
	var draws atomic.Int64
	tp.mirrorDraw = func(n int) int { return int((draws.Add(1)-1)%200) * (n / 200) }
	const n = 600
	for range n {
		if res, _ := get(t, tp.url+"/x"); res.StatusCode != 200 {
			t.Fatalf("%d", res.StatusCode)
		}
	}
	tp.WaitMirrors()
	if got := mirror.count.Load(); got != n/200 {
		t.Errorf("the mirror got %d of %d requests, want %d (0.5 %%)", got, n, n/200)
	}
}

// TestMirrorShareAcrossVersions: during a rolling upgrade a proxy may get
// its routes from a controller of the previous release, which sends a
// mirror's share only as the legacy "percent": the proxy mirrors that share
// (percent × 10,000 per million), not every request. When "per_million"
// is set (this release's controller, which sends both) it is the one read.
// The routes come as JSON through discovery, as from the controller; the
// proxy's draw cycles through 200 evenly spaced values, so a share of
// 1 % copies exactly one request in 100, and one of 0.5 % one in 200.
func TestMirrorShareAcrossVersions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mirror string // the wire mirror, without its backend
		every  int    // one request in every copied
	}{
		{"an old controller: percent only", `"percent": 1`, 100},
		{"a new controller: per_million and the rounded percent", `"per_million": 5000, "percent": 1`, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v1, mirror := newEcho(t, "v1", nil), newEcho(t, "mirror", nil)
			wire := `[{"name": "shop/web", "match": {}, "backends": [{"service": "v1.shop:80", "weight": 1, "endpoints": [{"addr": "` + v1.addr + `"}]}],
				"mirrors": [{"backend": {"service": "mirror.shop:80", "weight": 0, "endpoints": [{"addr": "` + mirror.addr + `"}]}, ` + tc.mirror + `}]}]`
			var routes []api.Route
			if err := json.Unmarshal([]byte(wire), &routes); err != nil {
				t.Fatal(err)
			}
			specs := discovery.TranslateRoutes(netip.MustParseAddrPort("10.0.0.1:80"), routes, "shop", slog.New(slog.NewTextHandler(io.Discard, nil)))
			tp := serve(t, destination(t, "web.shop:80", nil, specs, v1.addr), Config{})
			var draws atomic.Int64
			tp.mirrorDraw = func(n int) int { return int((draws.Add(1)-1)%200) * (n / 200) }
			const n = 600
			for range n {
				if res, _ := get(t, tp.url+"/x"); res.StatusCode != 200 {
					t.Fatalf("%d", res.StatusCode)
				}
			}
			tp.WaitMirrors()
			if got := mirror.count.Load(); got != int64(n/tc.every) {
				t.Errorf("the mirror got %d of %d requests, want %d (one in %d)", got, n, n/tc.every, tc.every)
			}
		})
	}
}

// TestSampledTakesItsShare checks the sampling with the real random
// source: over 200,000 requests a share of 5,000 per million (0.5 %)
// expects 1,000 copies (binomial sd ≈ 31.5: ±200 is over 6 sd), a share of
// 1,000 per million (0.1 %) 200 (sd ≈ 14.1: 100–300 is over 7 sd); 0 takes
// none and api.PerMillionAll every one.
func TestSampledTakesItsShare(t *testing.T) {
	const n = 200_000
	for _, tc := range []struct {
		perMillion int
		lo, hi     int
	}{
		{5_000, 800, 1_200},
		{1_000, 100, 300},
		{0, 0, 0},
		{api.PerMillionAll, n, n},
	} {
		got := 0
		for range n {
			if sampled(tc.perMillion, rand.IntN) {
				got++
			}
		}
		if got < tc.lo || got > tc.hi {
			t.Errorf("%d per million: %d of %d sampled, want %d–%d", tc.perMillion, got, n, tc.lo, tc.hi)
		}
	}
}
