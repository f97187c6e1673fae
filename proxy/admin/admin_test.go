package admin

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/netnstest"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/meshtls"
	"github.com/meshctl/meshctl/proxy/tap"
)

const (
	proxySPIFFE      = "spiffe://cluster.local/ns/app/sa/web"
	controllerSPIFFE = "spiffe://cluster.local/ns/meshctl/sa/mesh-controller"
	otherSPIFFE      = "spiffe://cluster.local/ns/app/sa/other"
)

type staticSource struct{ b *certs.Bundle }

func (s staticSource) Bundle() *certs.Bundle { return s.b }

// source makes an identity issued by issuer that trusts root.
func source(t *testing.T, issuer, root *testpki.CA, id string) staticSource {
	t.Helper()
	leaf := issuer.Issue(t, id, -time.Minute, time.Hour)
	b, err := certs.NewBundle(leaf.CertPEM(), leaf.KeyPEM(t), testpki.CertPEM(root.Cert))
	if err != nil {
		t.Fatal(err)
	}
	return staticSource{b}
}

func mustID(t *testing.T, s string) spiffeid.ID {
	t.Helper()
	id, err := spiffeid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

type noDestinations struct{}

func (noDestinations) List() map[string][]endpoints.Endpoint { return nil }

// adminServer is a running admin server listening on every address.
type adminServer struct {
	port    int
	hub     *tap.Hub
	renewed atomic.Int32
}

func startAdmin(t *testing.T, id certs.Source, controller string) *adminServer {
	t.Helper()
	a := &adminServer{hub: tap.NewHub()}
	cfg := Config{
		Metrics: func(w io.Writer) { _, _ = io.WriteString(w, "up 1\n") }, Identity: id, Tap: a.hub, Pprof: true,
		Renew: func() { a.renewed.Add(1) }, Destinations: noDestinations{},
		Policy: func() (api.InboundPolicy, bool) { return api.InboundPolicy{Default: "deny"}, true },
	}
	if controller != "" {
		cfg.ControllerID = mustID(t, controller)
	}
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	a.port = ln.Addr().(*net.TCPAddr).Port
	s := NewServer(cfg)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return a
}

// nodeAddress is one of this machine's non-loopback addresses: a client
// dialing from it is what a hostNetwork pod or the node looks like to a pod.
func nodeAddress(t *testing.T) net.IP {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	netnstest.SkipUnlessMustRun(t, "this machine has no non-loopback IPv4 address to connect from")
	return nil
}

// client reaches the admin server from a local address, in plaintext or,
// with id, over mutual TLS to a server that must prove serverID.
func client(t *testing.T, from net.IP, id certs.Source, serverID string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}
	if id != nil {
		md := &meshtls.Dialer{Source: id, Net: d.DialContext}
		want := mustID(t, serverID)
		tr.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			return md.Dial(ctx, addr, want, meshtls.ALPNAdmin)
		}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// status makes one request and returns its status; a /tap stream is
// closed once its headers came.
func status(t *testing.T, c *http.Client, method, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestSensitiveEndpointsAnswerOnlyLoopbackAndTheController: /identity, /tap,
// /destinations, /policy, POST /renew and pprof answer a plaintext client on
// loopback and the controller over mutual TLS, and refuse (403) a plaintext
// client from the node's address and another workload's valid mesh
// certificate; /metrics answers all of them.
func TestSensitiveEndpointsAnswerOnlyLoopbackAndTheController(t *testing.T) {
	root := testpki.NewRoot(t, "root")
	issuer := root.NewIssuer(t, "issuer")
	a := startAdmin(t, source(t, issuer, root, proxySPIFFE), controllerSPIFFE)
	node := nodeAddress(t)
	loopback := net.IPv4(127, 0, 0, 1)

	sensitive := []struct{ method, path string }{
		{"GET", "/identity"}, {"GET", "/tap"}, {"GET", "/destinations"}, {"GET", "/policy"}, {"POST", "/renew"}, {"GET", "/debug/pprof/"},
	}
	for _, tc := range []struct {
		name    string
		from    net.IP
		id      certs.Source
		allowed bool
	}{
		{"plaintext from loopback", loopback, nil, true},
		{"plaintext from the node's address", node, nil, false},
		{"the controller over mutual TLS", node, source(t, issuer, root, controllerSPIFFE), true},
		{"the controller over mutual TLS on loopback", loopback, source(t, issuer, root, controllerSPIFFE), true},
		{"another workload over mutual TLS", node, source(t, issuer, root, otherSPIFFE), false},
		{"another workload over mutual TLS on loopback", loopback, source(t, issuer, root, otherSPIFFE), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scheme := "http"
			if tc.id != nil {
				scheme = "https"
			}
			base := fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(node.String(), fmt.Sprint(a.port)))
			if tc.from.IsLoopback() {
				base = fmt.Sprintf("%s://127.0.0.1:%d", scheme, a.port)
			}
			c := client(t, tc.from, tc.id, proxySPIFFE)
			if got, err := status(t, c, "GET", base+"/metrics"); err != nil || got != 200 {
				t.Errorf("/metrics: %d, %v; want 200", got, err)
			}
			before := a.renewed.Load()
			for _, e := range sensitive {
				want := http.StatusForbidden
				if tc.allowed {
					want = http.StatusOK
					if e.path == "/renew" {
						want = http.StatusAccepted
					}
				}
				if got, err := status(t, c, e.method, base+e.path); err != nil || got != want {
					t.Errorf("%s %s: %d, %v; want %d", e.method, e.path, got, err, want)
				}
			}
			if renewed := a.renewed.Load() - before; renewed != map[bool]int32{true: 1, false: 0}[tc.allowed] {
				t.Errorf("POST /renew renewed %d times", renewed)
			}
		})
	}
}

// TestTLSClientsMustChainToTheTrustRoots: a certificate from another root,
// or none at all, fails the handshake; the proxy never answers them.
func TestTLSClientsMustChainToTheTrustRoots(t *testing.T) {
	root := testpki.NewRoot(t, "root")
	a := startAdmin(t, source(t, root, root, proxySPIFFE), controllerSPIFFE)
	url := fmt.Sprintf("https://127.0.0.1:%d/identity", a.port)
	elsewhere := testpki.NewRoot(t, "another mesh")
	impostor := source(t, elsewhere, root, controllerSPIFFE) // the right name, the wrong signer
	if got, err := status(t, client(t, net.IPv4(127, 0, 0, 1), impostor, proxySPIFFE), "GET", url); err == nil {
		t.Errorf("a controller certificate from another root got %d, want a failed handshake", got)
	}
	// No client certificate at all.
	d := &net.Dialer{Timeout: 5 * time.Second}
	cfg := meshtls.ClientConfig(source(t, root, root, controllerSPIFFE), mustID(t, proxySPIFFE), meshtls.ALPNAdmin, nil)
	cfg.GetClientCertificate = nil
	noCert := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return tc, nil
		},
	}}
	if got, err := status(t, noCert, "GET", url); err == nil {
		t.Errorf("a TLS client without a certificate got %d, want a failed handshake", got)
	}
}

// TestTapStreamsToTheControllerOverMutualTLS: the controller's /tap is a
// live stream, flushed as requests happen.
func TestTapStreamsToTheControllerOverMutualTLS(t *testing.T) {
	root := testpki.NewRoot(t, "root")
	a := startAdmin(t, source(t, root, root, proxySPIFFE), controllerSPIFFE)
	c := client(t, net.IPv4(127, 0, 0, 1), source(t, root, root, controllerSPIFFE), proxySPIFFE)
	c.Timeout = 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://127.0.0.1:%d/tap?path=/api", a.port), nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/tap: %s", resp.Status)
	}
	lines := bufio.NewScanner(resp.Body)
	for i := range 3 {
		a.hub.Publish(api.TapEvent{Type: api.TapStart, ID: uint64(i + 1), Method: "GET", Path: "/api/" + fmt.Sprint(i)})
		if !lines.Scan() {
			t.Fatalf("the stream ended after %d events: %v", i, lines.Err())
		}
		var e api.TapEvent
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil || e.Path != "/api/"+fmt.Sprint(i) {
			t.Fatalf("event %d: %s (%v)", i, lines.Bytes(), err)
		}
	}
}

// TestASilentClientDoesNotHoldUpOthers: deciding between TLS and plaintext
// waits for a client's first byte on that client's own connection, never in
// Accept.
func TestASilentClientDoesNotHoldUpOthers(t *testing.T) {
	root := testpki.NewRoot(t, "root")
	a := startAdmin(t, source(t, root, root, proxySPIFFE), controllerSPIFFE)
	silent, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", a.port))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(50 * time.Millisecond)
	c := client(t, net.IPv4(127, 0, 0, 1), nil, "")
	c.Timeout = 2 * time.Second
	if got, err := status(t, c, "GET", fmt.Sprintf("http://127.0.0.1:%d/live", a.port)); err != nil || got != 200 {
		t.Fatalf("/live behind a silent client: %d, %v", got, err)
	}
	body, err := get(c, fmt.Sprintf("http://127.0.0.1:%d/identity", a.port))
	if err != nil || !strings.Contains(body, proxySPIFFE) {
		t.Errorf("/identity: %q, %v", body, err)
	}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestMetricsAreTextAndGzippedOnRequest: /metrics says it is the text
// format, and is gzipped for a client that takes gzip (Prometheus).
func TestMetricsAreTextAndGzippedOnRequest(t *testing.T) {
	h := Handler(Config{Metrics: func(w io.Writer) { _, _ = io.WriteString(w, "up 1\n") }})
	for _, gz := range []bool{false, true} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if gz {
			req.Header.Set("Accept-Encoding", "deflate, gzip;q=1.0")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Errorf("Content-Type %q", ct)
		}
		body := io.Reader(rec.Body)
		if gz {
			if rec.Header().Get("Content-Encoding") != "gzip" {
				t.Fatal("not gzipped for a client that takes gzip")
			}
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		} else if rec.Header().Get("Content-Encoding") != "" {
			t.Error("gzipped for a client that did not ask")
		}
		if b, err := io.ReadAll(body); err != nil || string(b) != "up 1\n" {
			t.Errorf("gzip=%v: body %q, %v", gz, b, err) // a gzip stream cut short fails here
		}
		if gz && !slices.Contains(rec.Header().Values("Vary"), "Accept-Encoding") {
			t.Error("a gzipped answer without Vary: Accept-Encoding")
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"gzip": true, "GZIP": true, "br, gzip": true, "gzip;q=0.5": true, "gzip; q=1": true,
		"gzip;q=0": false, "gzip;q=0.0": false, "gzip;Q=0": false, "gzip; Q=0.7": true, "identity": false, "": false, "xgzip": false,
	} {
		if got := acceptsGzip([]string{v}); got != want {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", v, got, want)
		}
	}
}

// TestMetricsWindowIsAskedForWithADuration: /metrics?window= answers the
// windowed exposition; a window that is no duration, or over an hour, is
// 400; without the parameter, the cumulative one.
func TestMetricsWindowIsAskedForWithADuration(t *testing.T) {
	var asked time.Duration
	h := Handler(Config{
		Metrics:       func(w io.Writer) { _, _ = io.WriteString(w, "all 1\n") },
		MetricsWindow: func(w io.Writer, d time.Duration) { asked = d; _, _ = io.WriteString(w, "window 1\n") },
	})
	for _, tc := range []struct {
		query  string
		status int
		body   string
	}{
		{"", 200, "all 1\n"},
		{"?window=60s", 200, "window 1\n"},
		{"?window=1m30s", 200, "window 1\n"},
		{"?window=soon", 400, ""},
		{"?window=-1s", 400, ""},
		{"?window=2h", 400, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics"+tc.query, nil))
		if rec.Code != tc.status || (tc.body != "" && rec.Body.String() != tc.body) {
			t.Errorf("/metrics%s: %d %q, want %d %q", tc.query, rec.Code, rec.Body.String(), tc.status, tc.body)
		}
	}
	if asked != 90*time.Second {
		t.Errorf("the last window asked for was %s, want 1m30s", asked)
	}
}
