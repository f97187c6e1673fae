package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/netnstest"
	"github.com/meshctl/meshctl/internal/testpki"
)

// TestIdentityEndpointAndExpiryMetric: /identity describes the certificate
// in use, and the expiry is a metric.
func TestIdentityEndpointAndExpiryMetric(t *testing.T) {
	ca := testpki.NewRoot(t, "root")
	issuer := ca.NewIssuer(t, "issuer")
	leaf := issuer.Issue(t, serverSPIFFE, -time.Minute, 24*time.Hour)
	src, _ := identityFiles(t, leaf, ca)
	p := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"}, Identity: src})
	info := identityOf(t, p)
	if info.SPIFFEID != serverSPIFFE || info.IssuerFingerprint != certs.Fingerprint(issuer.Cert) ||
		len(info.TrustRootFingerprints) != 1 || info.TrustRootFingerprints[0] != certs.Fingerprint(ca.Cert) ||
		!info.NotAfter.Equal(leaf.Cert.NotAfter.UTC().Truncate(time.Second)) || info.Serial == "" {
		t.Errorf("/identity = %+v", info)
	}
	if v := metricValue(scrape(t, p), "identity_cert_expiration_timestamp_seconds", nil); v != float64(leaf.Cert.NotAfter.Unix()) {
		t.Errorf("expiry metric %v, want %d", v, leaf.Cert.NotAfter.Unix())
	}
}

// TestTapStreamsFilteredEventsAndSaysWhatItDropped.
func TestTapStreamsFilteredEventsAndSaysWhatItDropped(t *testing.T) {
	leakCheck(t)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	ca := testpki.NewRoot(t, "root")
	m := newMeshPair(t, app, serverSPIFFE, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := openTap(t, ctx, m.server, "path=/tapped&method=GET")
	c := h1Client()
	get := func(path string) {
		resp, err := c.Get("http://" + m.client.outbound() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get("/other") // filtered out
	get("/tapped/one")
	var got []api.TapEvent
	for len(got) < 3 {
		select {
		case e := <-events:
			got = append(got, e)
		case <-time.After(10 * time.Second):
			t.Fatalf("tap gave %d events, want start, headers, end", len(got))
		}
	}
	if got[0].Type != api.TapStart || got[0].Path != "/tapped/one" || got[0].Method != "GET" || got[0].ClientID != clientSPIFFE || got[0].Direction != "inbound" {
		t.Errorf("start event %+v", got[0])
	}
	if ap, err := netip.ParseAddrPort(got[0].ClientAddr); err != nil || !ap.Addr().IsLoopback() {
		t.Errorf("inbound start event's client address %q: want the client proxy's, on loopback", got[0].ClientAddr)
	}
	if got[1].Type != api.TapHeaders || got[1].Status != 200 {
		t.Errorf("headers event %+v", got[1])
	}
	if got[2].Type != api.TapEnd || got[2].Status != 200 || got[2].Bytes != 5 || got[2].LatencyMs <= 0 || got[2].ID != got[0].ID {
		t.Errorf("end event %+v", got[2])
	}
	cancel()

	// A slow tap: at most 2 requests a second; the rest is reported dropped.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	events = openTap(t, ctx2, m.server, "max_rps=2")
	for range 30 {
		get("/burst")
	}
	deadline := time.After(10 * time.Second)
	var dropped uint64
	for dropped < 20 {
		select {
		case e := <-events:
			if e.Type == api.TapDropped {
				dropped += e.Count
			}
		case <-deadline:
			t.Fatalf("the tap reported %d dropped requests of 30 with max_rps=2, want most", dropped)
		}
	}
}

// openTap streams a proxy's /tap into a channel until ctx ends.
func openTap(t *testing.T, ctx context.Context, r *running, query string) <-chan api.TapEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.admin()+"/tap?"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("/tap: %s", resp.Status)
	}
	// The tap is registered once the proxy flushed the response headers.
	out := make(chan api.TapEvent, 1024)
	go func() {
		defer resp.Body.Close()
		s := bufio.NewScanner(resp.Body)
		for s.Scan() {
			var e api.TapEvent
			if json.Unmarshal(s.Bytes(), &e) == nil {
				out <- e
			}
		}
	}()
	return out
}

// TestTapAndIdentityRefuseTheNodeInPlaintext: the node's address (where
// hostNetwork pods and NodePort traffic SNATed to the node come from, and
// which still exempts the kubelet's probes from RequireTLSPorts) gets 403 from
// /tap and /identity in plaintext, as another pod does; /metrics stays open
// to both. Only loopback and the controller over mutual TLS may use them
// (package admin's tests).
func TestTapAndIdentityRefuseTheNodeInPlaintext(t *testing.T) {
	pod := netnstest.New(t, "pod")
	node := netnstest.New(t, "node")
	other := netnstest.New(t, "otherpod")
	netnstest.Link(t, pod, "10.79.0.1/24", node, "10.79.0.2/24")
	netnstest.Link(t, pod, "10.79.1.1/24", other, "10.79.1.2/24")
	ca := testpki.NewRoot(t, "root")
	src, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	var p *Proxy
	err := pod.Do(func() (err error) {
		p, err = New(Config{
			Admin:      "0.0.0.0:4191",
			Inbound:    &SideConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"},
			Identity:   src,
			AdminAllow: []netip.Prefix{netip.MustParsePrefix("10.79.0.2/32")},
		})
		if err != nil {
			return err
		}
		return p.Listen() // accept-only sockets: they stay in the pod namespace
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	for who, c := range map[string]struct {
		ns   *netnstest.NS
		addr string
	}{"the node": {node, "10.79.0.1"}, "another pod": {other, "10.79.1.1"}} {
		for _, path := range []string{"/identity", "/tap"} {
			if body, err := c.ns.HTTPGet("http://" + c.addr + ":4191" + path); err == nil || !strings.Contains(err.Error(), "403") {
				t.Errorf("%s → %s: %q, %v; want 403", who, path, body, err)
			}
		}
		if body, err := c.ns.HTTPGet("http://" + c.addr + ":4191/metrics"); err != nil || !strings.Contains(body, "identity_cert_expiration_timestamp_seconds") {
			t.Errorf("%s → /metrics: %v", who, err)
		}
	}
}
