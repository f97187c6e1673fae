package dashboard

// More tests of the dashboard's bounds and defences, each written against
// a one-line mutation that the other tests let pass: a tap page that stops
// reading, a cancelled request sharing the identity run, pods that are not
// running, a scrape right after another, the response headers.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
)

// floodSource taps without end, 8 KiB events as fast as they are taken.
type floodSource struct{ *fixtureSource }

func (f floodSource) Tap(ctx context.Context, pods []tapstream.Pod, _ tapstream.Filter, events chan<- tapstream.PodEvent, _ func(tapstream.Pod, error)) {
	path := "/" + strings.Repeat("x", 8<<10)
	for id := uint64(1); ; id++ {
		select {
		case events <- tapstream.PodEvent{Namespace: pods[0].Namespace, Pod: pods[0].Name, Event: api.TapEvent{Type: "start", ID: id, Path: path}}:
		case <-ctx.Done():
			return
		}
	}
}

func TestAStalledTapReaderLosesItsSlot(t *testing.T) {
	f := newFixture(t)
	s := &Server{Collector: f.c, Source: floodSource{f.src}, Namespace: "shop", TapWriteTimeout: 300 * time.Millisecond}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(host)
	s.SetHosts(LoopbackHosts(port))

	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
	fmt.Fprintf(conn, "GET /api/tap?namespace=shop&name=web HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	// The page reads the answer's head, then nothing more.
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, " 200 ") {
		t.Fatalf("the tap's answer: %q %v", line, err)
	}
	eventually(t, "the tap to hold its slot", 5*time.Second, func() bool { return len(s.taps) == 1 })
	// The buffers fill; a write then waits TapWriteTimeout and the stream
	// ends, though the connection is still open.
	eventually(t, "a page that stopped reading to lose its slot", 10*time.Second, func() bool { return len(s.taps) == 0 })
}

func TestCancelledIdentityRequestDoesNotCancelTheSharedRun(t *testing.T) {
	f := newFixture(t)
	src := &gatedSource{fixtureSource: f.src, gate: make(chan struct{})}
	s := &Server{Collector: f.c, Source: src, Namespace: "shop"}
	s.SetHosts(LoopbackHosts("50750"))
	h := s.Handler()
	get := func(ctx context.Context) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/api/identity", nil).WithContext(ctx)
		req.Host = "127.0.0.1:50750"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	first, cancelFirst := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { get(first) }) // the run is started by this one
	eventually(t, "the run to ask proxies", 5*time.Second, func() bool { return src.proxies.now.Load() > 0 })
	var second *httptest.ResponseRecorder
	var secondDone atomic.Bool
	wg.Go(func() { second = get(context.Background()); secondDone.Store(true) })
	cancelFirst()
	never(t, "the second request answered before the proxies were", 100*time.Millisecond, secondDone.Load)
	close(src.gate)
	wg.Wait()
	id := decode[Identity](t, second)
	if id.Proxies != 100 || len(id.Unread) != 0 || src.identityRuns.Load() != 1 {
		t.Errorf("the request left waiting: %d proxies, %d unread (%+v), %d runs; want 100, none and 1: the first request's cancellation ended the shared run",
			id.Proxies, len(id.Unread), firstOf(id.Unread), src.identityRuns.Load())
	}
}

func firstOf[T any](s []T) any {
	if len(s) == 0 {
		return nil
	}
	return s[0]
}

// podsSource is the shop fixture whose web has 10 pods that are not
// running (pending, or being deleted) before 50 running ones.
type podsSource struct {
	*fixtureSource
	asked sync.Map
}

func (p *podsSource) Workload(ctx context.Context, ns, name string) (*WorkloadObjects, error) {
	objs, err := p.fixtureSource.Workload(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	objs.Pods = nil
	now := metav1.Now()
	for i := range 60 {
		pod := corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%02d", name, i), Labels: map[string]string{meshnames.VersionLabel: "v1"}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		}
		switch {
		case i < 5:
			pod.Status.Phase = corev1.PodPending
		case i < 10:
			pod.DeletionTimestamp = &now
		}
		objs.Pods = append(objs.Pods, pod)
	}
	return objs, nil
}

func (p *podsSource) ProxyIdentity(_ context.Context, ns, pod string) (api.IdentityInfo, error) {
	p.asked.Store(pod, true)
	return api.IdentityInfo{SPIFFEID: "spiffe://cluster.local/ns/" + ns + "/sa/web"}, nil
}

func TestWorkloadAsksTheProxiesOfRunningPodsOnly(t *testing.T) {
	f := newFixture(t)
	src := &podsSource{fixtureSource: f.src}
	s := &Server{Collector: f.c, Source: src, Namespace: "shop"}
	s.SetHosts(LoopbackHosts("50750"))
	req := httptest.NewRequest(http.MethodGet, "/api/workload?namespace=shop&name=web", nil)
	req.Host = "127.0.0.1:50750"
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	w := decode[Workload](t, rec)
	if len(w.Pods) != 60 {
		t.Fatalf("%d pods listed, want 60", len(w.Pods))
	}
	for i, p := range w.Pods {
		_, asked := src.asked.Load(p.Name)
		switch {
		case i < 10 && (asked || p.Identity != nil):
			t.Errorf("pod %s (not running) had its proxy asked", p.Name)
		case i >= 10 && (!asked || p.Identity == nil):
			// The bound of 50 is for running pods: the 10 that are not
			// must not push the last running ones out.
			t.Errorf("running pod %s: proxy asked %v, identity %v, error %q; want its certificate read", p.Name, asked, p.Identity, p.IdentityError)
		}
	}
}

func TestRescrapeWithinHalfAnIntervalIsSkipped(t *testing.T) {
	src := newFixtureSource()
	clk := &clock{t: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}
	c := &Collector{Source: src, Now: clk.now, Interval: 4 * time.Second}
	v := c.watch("shop")
	scrapes := func() int { src.mu.Lock(); defer src.mu.Unlock(); return src.scrapes }
	for _, step := range []struct {
		advance time.Duration
		want    int
	}{{0, 1}, {time.Second, 1}, {900 * time.Millisecond, 1}, {200 * time.Millisecond, 2}, {0, 2}} {
		clk.advance(step.advance)
		if err := c.refresh(context.Background(), v); err != nil {
			t.Fatal(err)
		}
		if n := scrapes(); n != step.want {
			t.Fatalf("after %s more: %d scrapes, want %d (a scrape within half the interval of the last is skipped)", step.advance, n, step.want)
		}
	}
}

func TestResponsesCarryTheSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	want := map[string]string{
		"Content-Security-Policy":      contentSecurityPolicy,
		"X-Content-Type-Options":       "nosniff",
		"X-Frame-Options":              "DENY",
		"Referrer-Policy":              "no-referrer",
		"Cross-Origin-Resource-Policy": "same-origin",
	}
	for _, target := range []string{"/", "/main.js", "/api/graph", "/api/nothing"} {
		rec := f.get(t, target)
		for k, v := range want {
			if got := rec.Header().Get(k); got != v {
				t.Errorf("GET %s: %s %q, want %q", target, k, got, v)
			}
		}
		if strings.HasPrefix(target, "/api/") && rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q, want no-store", target, rec.Header().Get("Cache-Control"))
		}
	}
	if !strings.Contains(contentSecurityPolicy, "default-src 'self'") || !strings.Contains(contentSecurityPolicy, "frame-ancestors 'none'") ||
		strings.Contains(contentSecurityPolicy, "unsafe") {
		t.Errorf("the CSP %q: want default-src 'self', frame-ancestors 'none', nothing unsafe", contentSecurityPolicy)
	}
}
