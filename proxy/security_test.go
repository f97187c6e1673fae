package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/meshtls"
)

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func metricsSize(t *testing.T, r *running) int {
	t.Helper()
	resp, err := http.Get("http://" + r.admin() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return len(b)
}

// sendWithHosts sends n requests to addr, each with its own Host header,
// over a few keep-alive connections, and returns the status codes seen.
func sendWithHosts(t *testing.T, addr string, n int) map[int]int {
	t.Helper()
	const workers = 8
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := h1Client()
			defer c.CloseIdleConnections()
			for i := w; i < n; i += workers {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
				req.Host = fmt.Sprintf("host-%d.attacker.example", i)
				resp, err := c.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return statuses
}

// TestDistinctHostsDoNotGrowTheProxysMemory sends 100,000 requests, each
// with its own Host, through an outbound side and to an inbound side that
// refuses them: /metrics and the heap must not grow with them (once they
// grew by ~10 KB per Host: 5,000 Hosts made /metrics 49.5 MB). Under the
// race detector (make test) 20,000 of each, which old code would have
// turned into ~200 MB of /metrics.
func TestDistinctHostsDoNotGrowTheProxysMemory(t *testing.T) {
	n := 100_000
	if raceEnabled {
		n = 20_000
	}
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	out := outboundTo(t, up)
	deny := authz.New(meshnames.DefaultDeny)
	in := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}, InboundPolicy: deny})
	baseOut, baseIn := metricsSize(t, out), metricsSize(t, in)
	baseHeap := heapInUse()

	if got := sendWithHosts(t, out.outbound(), n); got[http.StatusOK] != n {
		t.Fatalf("outbound statuses %v, want %d × 200", got, n)
	}
	if got := sendWithHosts(t, in.inbound(), n); got[http.StatusForbidden] != n {
		t.Fatalf("inbound statuses %v, want %d × 403", got, n)
	}

	heap := heapInUse()
	sizeOut, sizeIn := metricsSize(t, out), metricsSize(t, in)
	t.Logf("/metrics: outbound %d → %d bytes, inbound %d → %d bytes; heap %d → %d KiB",
		baseOut, sizeOut, baseIn, sizeIn, baseHeap>>10, heap>>10)
	// The first requests add their own few series (one destination, one
	// status); nothing grows per Host.
	for name, sizes := range map[string][2]int{"outbound": {baseOut, sizeOut}, "inbound": {baseIn, sizeIn}} {
		if sizes[1] > sizes[0]+16<<10 {
			t.Errorf("%s /metrics grew from %d to %d bytes with %d distinct Hosts", name, sizes[0], sizes[1], n)
		}
	}
	if heap > baseHeap+16<<20 {
		t.Errorf("the heap grew from %d to %d KiB with %d distinct Hosts", baseHeap>>10, heap>>10, n)
	}
}

// TestPlaintextIntoTheClusterIsCounted: an outbound connection to an
// unmeshed address in the cluster's networks counts once per connection.
func TestPlaintextIntoTheClusterIsCounted(t *testing.T) {
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	out := startProxy(t, Config{
		Outbound:        &SideConfig{Listen: "127.0.0.1:0", Upstream: up},
		ClusterNetworks: endpoints.Networks{netip.MustParsePrefix("127.0.0.0/8")},
	})
	c := h1Client()
	for range 3 {
		resp, err := c.Get("http://" + out.outbound() + "/")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := metricValue(scrape(t, out), "plaintext_connections_total", map[string]string{"direction": "outbound", "reason": "not_in_mesh"})
		if got == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("plaintext_connections_total{reason=not_in_mesh} = %v, want 1 (three requests on one connection)", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pipelined writes n HTTP/1 GETs at once and reads the answers it gets
// until the connection ends, returning their status codes.
func pipelined(t *testing.T, c net.Conn, n int) map[int]int {
	t.Helper()
	var req strings.Builder
	for range n {
		req.WriteString("GET / HTTP/1.1\r\nHost: app\r\n\r\n")
	}
	if _, err := io.WriteString(c, req.String()); err != nil {
		return map[int]int{}
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	got := map[int]int{}
	for range n {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		got[res.StatusCode]++
	}
	return got
}

// TestOpaqueConnectionsCannotSkipPerRequestPolicy: on a port whose policy
// is enforced per request (here a rate limit of 5/s), a plaintext client
// that stays silent past detection, or a meshed client that asks for an
// opaque stream, must not be admitted once and then pipeline requests past
// the limit. Only the server declares a port opaque.
func TestOpaqueConnectionsCannotSkipPerRequestPolicy(t *testing.T) {
	app := &counting{}
	addr := backend(t, app)
	ca := testpki.NewRoot(t, "root")
	serverSrc, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	clientSrc, _ := identityFiles(t, ca.Issue(t, clientSPIFFE, -time.Minute, time.Hour), ca)
	g := authz.New(meshnames.DefaultAllUnauthenticated)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, RateLimit: 5})
	server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: addr}, Identity: serverSrc,
		InboundPolicy: g, DetectTimeout: 200 * time.Millisecond})

	// Plaintext, silent past detection, then 20 requests at once: refused.
	c, err := net.Dial("tcp", server.inbound())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if got := pipelined(t, c, 20); len(got) != 0 {
		t.Errorf("an undetected plaintext connection got answers %v; want it closed", got)
	}
	c.Close()
	if n := app.hits.Load(); n != 0 {
		t.Fatalf("the application saw %d requests through an undetected connection", n)
	}

	d := &meshtls.Dialer{Source: clientSrc, Net: (&net.Dialer{}).DialContext}
	// Meshed opaque with bytes that are not HTTP: refused on this port.
	tc, err := d.Dial(context.Background(), server.inbound(), serverSrc.Bundle().ID, meshtls.ALPNOpaque)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tc.Write([]byte("\x00\x01not http at all"))
	_ = tc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := tc.Read(make([]byte, 16)); err == nil || isTimeout(err) {
		t.Errorf("a non-HTTP meshed opaque stream read %d bytes, %v; want it closed", n, err)
	}
	tc.Close()
	// Meshed, asking for an opaque stream, then 20 requests at once: served
	// as HTTP, each under the limit.
	tc, err = d.Dial(context.Background(), server.inbound(), serverSrc.Bundle().ID, meshtls.ALPNOpaque)
	if err != nil {
		t.Fatal(err)
	}
	got := pipelined(t, tc, 20)
	tc.Close()
	if got[200] > 6 || got[429] < 14 {
		t.Errorf("20 pipelined requests on a meshed opaque stream: %v; want at most 6 × 200 (5/s), the rest 429", got)
	}
	if n := app.hits.Load(); n > 6 {
		t.Errorf("the application saw %d requests; the limit lets 5 (or 6) through", n)
	}

	if v := metricValue(scrape(t, server), "inbound_policy_decisions_total", map[string]string{"decision": "deny", "rule": "http-only"}); v < 2 {
		t.Errorf("http-only refusals counted %v, want 2", v)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// TestNoPolicyYetMeansUnreadyAndClosed: a pod's proxy that has not heard
// its inbound policy stays unready and lets nothing in, however long the
// controller takes (once, after 15 s, it let everyone in).
func TestNoPolicyYetMeansUnreadyAndClosed(t *testing.T) {
	app := &counting{}
	addr := backend(t, app)
	g := authz.NewPending()
	p, err := New(Config{Admin: "127.0.0.1:0", Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: addr},
		InboundPolicy: g, ReadyWhen: g.Ready(), ReadyWhenWhat: "the test's policy"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	get := func(url string) int {
		res, err := h1Client().Get(url)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	admin, inbound := "http://"+p.Addr("admin").String(), "http://"+p.Addr("inbound").String()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if got := get(admin + "/ready"); got != http.StatusServiceUnavailable {
			t.Fatalf("/ready before the policy: %d, want 503", got)
		}
		if got := get(inbound + "/"); got != http.StatusForbidden {
			t.Fatalf("a request before the policy: %d, want 403", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := app.hits.Load(); n != 0 {
		t.Fatalf("the application saw %d requests before the policy", n)
	}
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated})
	eventually(t, "ready once the policy arrived", 5*time.Second, func() bool { return get(admin+"/ready") == http.StatusOK })
	if got := get(inbound + "/"); got != http.StatusOK {
		t.Errorf("a request after the policy: %d, want 200", got)
	}
}

// TestResetClientsCancelTheirUpstreamRequests: 50 HTTP/1 clients send a
// request to a slow application and reset their connections; every request
// the application holds is cancelled (once, all 50 waited there).
func TestResetClientsCancelTheirUpstreamRequests(t *testing.T) {
	const n = 50
	var started, cancelled sync.WaitGroup
	started.Add(n)
	cancelled.Add(n)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		select {
		case <-r.Context().Done():
			cancelled.Done()
		case <-time.After(30 * time.Second):
		}
	}))
	p := outboundTo(t, app)
	conns := make([]*net.TCPConn, n)
	for i := range conns {
		c, err := net.Dial("tcp", p.outbound())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.TCPConn)
		if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitGroup(t, &started, "every request to reach the application")
	for _, c := range conns {
		_ = c.SetLinger(0) // close with a reset
		c.Close()
	}
	waitGroup(t, &cancelled, "every request at the application to be cancelled")
}

// TestClosedClientsCancelTheirUpstreamRequests: clients that close their
// connection normally (FIN, no reset) while their request is at a slow
// application are gone too.
func TestClosedClientsCancelTheirUpstreamRequests(t *testing.T) {
	const n = 20
	var started, cancelled sync.WaitGroup
	started.Add(n)
	cancelled.Add(n)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Done()
		select {
		case <-r.Context().Done():
			cancelled.Done()
		case <-time.After(30 * time.Second):
		}
	}))
	p := outboundTo(t, app)
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", p.outbound())
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: app\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	waitGroup(t, &started, "every request to reach the application")
	for _, c := range conns {
		c.Close()
	}
	waitGroup(t, &cancelled, "every request at the application to be cancelled")
}

// TestHalfClosedClientsStillGetTheirAnswer: with AllowHalfClose, a client
// that half-closes after its request (shutdown of its write side) still
// gets the response.
func TestHalfClosedClientsStillGetTheirAnswer(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		_, _ = io.WriteString(w, "answer")
	}))
	p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, AllowHalfClose: true})
	c, err := net.Dial("tcp", p.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if body, _ := io.ReadAll(res.Body); res.StatusCode != 200 || string(body) != "answer" {
		t.Errorf("half-closed client got %d %q, want 200 answer", res.StatusCode, body)
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestOnlyMeshedPeersChooseTheOriginalProtocol: a plaintext client's
// meshctl-orig-proto header is not honoured (it downgraded HTTP/2 to 1.1),
// and upgrades other than WebSocket are not carried.
func TestOnlyMeshedPeersChooseTheOriginalProtocol(t *testing.T) {
	seen := make(chan string, 4)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- fmt.Sprintf("%s upgrade=%q orig=%q", r.Proto, r.Header.Get("Upgrade"), r.Header.Get(meshtls.OrigProtoHeader))
	}))
	in := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}})
	req, _ := http.NewRequest(http.MethodGet, "http://"+in.inbound()+"/", nil)
	req.Header.Set(meshtls.OrigProtoHeader, "HTTP/1.1")
	res, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := <-seen; got != `HTTP/2.0 upgrade="" orig=""` {
		t.Errorf("a plaintext h2 request claiming HTTP/1.1 reached the app as %s; want HTTP/2, the header gone", got)
	}
	req, _ = http.NewRequest(http.MethodGet, "http://"+in.inbound()+"/", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "h2c")
	res, err = h1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := <-seen; res.StatusCode != 200 || got != `HTTP/1.1 upgrade="" orig=""` {
		t.Errorf("an Upgrade: h2c request: %d, reached the app as %s; want a plain request", res.StatusCode, got)
	}
}

// TestRapidResetGetsGoAway: 20,000 HEADERS + RST_STREAM pairs (the rapid
// reset attack), on a plaintext HTTP/2 connection and on a meshed one, get
// a GOAWAY with ENHANCE_YOUR_CALM and the connection closed, with few
// requests reaching the application (once 3,095 did, and no GOAWAY came).
func TestRapidResetGetsGoAway(t *testing.T) {
	app := &counting{}
	app.delay.Store(int64(50 * time.Millisecond))
	up := backend(t, app)
	t.Run("plaintext", func(t *testing.T) {
		p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}})
		c, err := net.Dial("tcp", p.outbound())
		if err != nil {
			t.Fatal(err)
		}
		rapidReset(t, p, app, c)
	})
	t.Run("meshed", func(t *testing.T) {
		ca := testpki.NewRoot(t, "root")
		serverSrc, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
		clientSrc, _ := identityFiles(t, ca.Issue(t, clientSPIFFE, -time.Minute, time.Hour), ca)
		server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}, Identity: serverSrc})
		d := &meshtls.Dialer{Source: clientSrc, Net: (&net.Dialer{}).DialContext}
		tc, err := d.Dial(context.Background(), server.inbound(), serverSrc.Bundle().ID, meshtls.ALPNHTTP2)
		if err != nil {
			t.Fatal(err)
		}
		rapidReset(t, server, app, tc)
	})
}

// rapidReset floods c with HEADERS + RST_STREAM pairs and checks the proxy
// p answers with GOAWAY (ENHANCE_YOUR_CALM), closes, and spares app.
func rapidReset(t *testing.T, p *running, app *counting, c net.Conn) {
	t.Helper()
	defer c.Close()
	before := app.hits.Load()
	_, _ = c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, bufio.NewReader(c))
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hb.Bytes()
	go func() {
		for i := uint32(0); i < 20_000; i++ {
			id := 2*i + 1
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true, EndStream: true}) != nil ||
				fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return // cut off
			}
		}
	}()
	// Read without writing: the flood owns the framer's writing side.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	var goAway *http2.GoAwayFrame
	for goAway == nil {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY before %v", err)
		}
		goAway, _ = f.(*http2.GoAwayFrame)
	}
	if goAway.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY %v, want ENHANCE_YOUR_CALM", goAway.ErrCode)
	}
	if f, err := fr.ReadFrame(); err == nil {
		t.Errorf("read %v after the GOAWAY; want the connection closed", f)
	}
	if n := app.hits.Load() - before; n > 500 {
		t.Errorf("%d requests reached the application", n)
	} else {
		t.Logf("the application saw %d requests", n)
	}
	if v := metricValue(scrape(t, p), "protocol_error_total", map[string]string{"protocol": "h2", "error": "rapid_reset"}); v != 1 {
		t.Errorf("protocol_error_total{error=rapid_reset} = %v, want 1", v)
	}
}

// TestContinuationFloodIsCutOff: HEADERS without END_HEADERS followed by an
// endless run of CONTINUATION frames must end the connection, not grow
// memory (CVE-2023-45288).
func TestContinuationFloodIsCutOff(t *testing.T) {
	p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: backend(t, &counting{})}})
	c, fr := h2Conn(t, p.outbound())
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	before := heapInUse()
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true})
	chunk := bytes.Repeat([]byte{0x40, 0x01, 'x', 0x01, 'y'}, 200) // literal headers, 1 KB a frame
	sent := 0
	for ; sent < 100_000; sent++ {
		if fr.WriteContinuation(1, false, chunk) != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if f := readUntil(t, fr, func(http2.Frame) bool { return false }); f != nil {
		t.Errorf("read %v; want the connection ended", f)
	}
	if sent == 100_000 {
		t.Errorf("100 MB of CONTINUATION frames were all accepted")
	}
	if after := heapInUse(); after > before+32<<20 {
		t.Errorf("heap grew from %d to %d KiB during the flood", before>>10, after>>10)
	}
	t.Logf("cut off after %d CONTINUATION frames", sent)
}

// TestTheNodeGetsOnlyItsProbesWhereMutualTLSIsRequired: plaintext from the
// node (hostNetwork pods, NodePort traffic SNATed to it) reaches only the
// kubelet's declared probe paths and ports on a port that requires mutual
// TLS; once it reached everything there.
func TestTheNodeGetsOnlyItsProbesWhereMutualTLSIsRequired(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "secret") }))
	port := portOf(t, app)
	g := authz.New(meshnames.DefaultAllUnauthenticated)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, Probes: []api.Probe{{Port: int(port), Path: "/healthz"}}})
	server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, RequireTLSPorts: []uint16{port},
		InboundPolicy: g, AdminAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, DetectTimeout: 100 * time.Millisecond})
	for path, want := range map[string]int{"/healthz": 200, "/": 403, "/healthz/../admin": 403} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+server.inbound()+path, nil)
		req.URL.Opaque = path // as sent, dot segments included
		res, err := h1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("plaintext from the node to %s: %d, want %d", path, res.StatusCode, want)
		}
	}
}

// TestAPodCallingItselfThroughItsServiceReachesItsApplication: discovery
// names the pod's own address, meshed, as the endpoint; the request must
// reach the application there (once it got a TLS ClientHello, 502, and the
// pod was ejected from its own Service's endpoints).
func TestAPodCallingItselfThroughItsServiceReachesItsApplication(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "myself") }))
	ca := testpki.NewRoot(t, "root")
	src, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	service := "10.96.0.77:80"
	tab, err := endpoints.Parse([]byte(fmt.Sprintf(`{%q: [{"addr": %q, "identity": %q}]}`, service, app, serverSPIFFE)))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, Config{Endpoints: tab, Identity: src, Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: service},
		LocalAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, ClusterNetworks: endpoints.Networks{netip.MustParsePrefix("127.0.0.0/8")}})
	c := h1Client()
	for range 20 {
		res, err := c.Get("http://" + p.outbound() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || body != "myself" {
			t.Fatalf("calling itself: %d %q, want 200 myself", res.StatusCode, body)
		}
	}
	fams := scrape(t, p)
	if v := metricValue(fams, "plaintext_connections_total", nil); v != 0 {
		t.Errorf("a call that never left the pod was counted as %v plaintext connections into the cluster", v)
	}
	if v := metricValue(fams, "tls_error_total", nil); v != 0 {
		t.Errorf("%v meshed handshakes failed", v)
	}
}

// TestATCPProbesExemptionIsNoTunnel: the node's bare connection on a TCP
// probe's port is let in only to connect; bytes it sends after waiting out
// detection must not reach the application (once 50 of 50 pipelined
// requests did, past a 5/s limit and past a default deny), on a port that
// requires mutual TLS as well as on one with a rate limit.
func TestATCPProbesExemptionIsNoTunnel(t *testing.T) {
	app := &counting{}
	addr := backend(t, app)
	port := portOf(t, addr)
	for name, pol := range map[string]api.InboundPolicy{
		"rate limited":        {Default: meshnames.DefaultAllUnauthenticated, RateLimit: 5, Probes: []api.Probe{{Port: int(port)}}},
		"default deny":        {Default: meshnames.DefaultDeny, Probes: []api.Probe{{Port: int(port)}}},
		"mutual TLS required": {Default: meshnames.DefaultAllUnauthenticated, Probes: []api.Probe{{Port: int(port)}}},
	} {
		t.Run(name, func(t *testing.T) {
			g := authz.New(meshnames.DefaultAllUnauthenticated)
			g.Update(pol)
			cfg := Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: addr}, InboundPolicy: g,
				AdminAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, DetectTimeout: 100 * time.Millisecond}
			if name == "mutual TLS required" {
				cfg.RequireTLSPorts = []uint16{port}
			}
			server := startProxy(t, cfg)
			before := app.hits.Load()
			c, err := net.Dial("tcp", server.inbound())
			if err != nil {
				t.Fatal(err) // the probe itself: the connection is made
			}
			defer c.Close()
			time.Sleep(300 * time.Millisecond) // past detection: a "bare connection"
			if got := pipelined(t, c, 20); len(got) != 0 {
				t.Errorf("the probe's connection carried requests: %v", got)
			}
			if n := app.hits.Load() - before; n != 0 {
				t.Errorf("the application saw %d requests through a TCP probe's exemption", n)
			}
		})
	}
}

// TestInboundSeriesNameOnlyPortsTheApplicationAnswers: a client scanning a
// pod's ports (each a series once) or refused by its policy shares one
// series; only what the application answered is labelled with its port.
func TestInboundSeriesNameOnlyPortsTheApplicationAnswers(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	nothing := closedPort(t)
	g := authz.New(meshnames.DefaultAllUnauthenticated)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, RateLimit: 0.01}) // one request, then 429
	answered := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, InboundPolicy: g})
	scanned := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: nothing}})
	for _, c := range []struct {
		addr string
		want int
	}{{answered.inbound() + "/", 200}, {answered.inbound() + "/again", 429}, {scanned.inbound() + "/", 502}} {
		addr, want := c.addr, c.want
		res, err := h1Client().Get("http://" + addr)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", addr, res.StatusCode, want)
		}
	}
	labels := func(r *running) map[string]string {
		out := map[string]string{}
		for _, m := range scrape(t, r)["response_total"].GetMetric() {
			var authority, status string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "authority":
					authority = l.GetValue()
				case "status_code":
					status = l.GetValue()
				}
			}
			out[status] = authority
		}
		return out
	}
	if got := labels(answered); got["200"] != app || got["429"] != "" {
		t.Errorf("answered proxy: authority by status %v; want 200 labelled %s, the refusal unlabelled", got, app)
	}
	if got := labels(scanned); got["502"] != "" {
		t.Errorf("a port where nothing listens got its own series: %v", got)
	}
}

// TestTheNodesOtherConnectionsAreRefusedWhereMutualTLSIsRequired: a bare
// connection from the node on a port that requires mutual TLS and has no
// TCP probe is closed.
func TestTheNodesOtherConnectionsAreRefusedWhereMutualTLSIsRequired(t *testing.T) {
	app := &counting{}
	addr := backend(t, app)
	port := portOf(t, addr)
	g := authz.New(meshnames.DefaultAllUnauthenticated)
	g.Update(api.InboundPolicy{Default: meshnames.DefaultAllUnauthenticated, Probes: []api.Probe{{Port: int(port), Path: "/healthz"}}})
	server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: addr}, RequireTLSPorts: []uint16{port},
		InboundPolicy: g, AdminAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, DetectTimeout: 100 * time.Millisecond})
	c, err := net.Dial("tcp", server.inbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(300 * time.Millisecond) // past detection
	if got := pipelined(t, c, 5); len(got) != 0 || app.hits.Load() != 0 {
		t.Errorf("the node's bare connection carried %v (%d at the application)", got, app.hits.Load())
	}
	if v := metricValue(scrape(t, server), "tls_error_total", map[string]string{"reason": "plaintext_refused"}); v != 1 {
		t.Errorf("tls_error_total{plaintext_refused} = %v, want 1", v)
	}
}

// portOf is the port of a "host:port" address.
func portOf(t *testing.T, addr string) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port()
}
