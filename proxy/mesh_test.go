package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/meshtls"
)

const (
	clientSPIFFE = "spiffe://cluster.local/ns/shop/sa/frontend"
	serverSPIFFE = "spiffe://cluster.local/ns/shop/sa/backend"
)

// identityFiles writes a workload certificate and returns a Source reading it
// (re-read every 50ms, so tests can rotate it).
func identityFiles(t testing.TB, leaf *testpki.Leaf, roots ...*testpki.CA) (*certs.Files, testpki.Files) {
	t.Helper()
	dir := t.TempDir()
	files := leaf.Write(t, dir, roots...)
	src, err := certs.NewFiles(certs.FilesConfig{Cert: files.Cert, Key: files.Key, Roots: files.Roots, Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { src.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return src, files
}

// meshPair is a client proxy (outbound) and a server proxy (inbound) joined
// by the meshed hop, in front of an application.
type meshPair struct {
	client, server *running
	ca             *testpki.CA
}

// newMeshPair starts both proxies; expect is the identity the client requires.
func newMeshPair(t testing.TB, app string, expect string, serverLeaf *testpki.Leaf, ca *testpki.CA, mutate ...func(*Config)) *meshPair {
	t.Helper()
	clientSrc, _ := identityFiles(t, ca.Issue(t, clientSPIFFE, -time.Minute, time.Hour), ca)
	serverSrc, _ := identityFiles(t, serverLeaf, ca)
	serverCfg := Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, Identity: serverSrc}
	for _, m := range mutate {
		m(&serverCfg)
	}
	server := startProxy(t, serverCfg)
	want, err := spiffeid.Parse(expect)
	if err != nil {
		t.Fatal(err)
	}
	client := startProxy(t, Config{
		Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: server.inbound(), UpstreamIdentity: want},
		Identity: clientSrc,
	})
	return &meshPair{client: client, server: server, ca: ca}
}

// TestMeshedHopCarriesEveryProtocol: HTTP/1, HTTP/2, gRPC bidi, WebSocket
// and opaque TCP cross the mutual-TLS hop between two proxies; the server's
// proxy knows who the client is, and the application sees what its client sent.
func TestMeshedHopCarriesEveryProtocol(t *testing.T) {
	leakCheck(t)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			typ, msg, err := c.Read(r.Context())
			if err == nil {
				c.Write(r.Context(), typ, append([]byte("ws:"), msg...))
			}
			c.Close(websocket.StatusNormalClosure, "")
			return
		}
		fmt.Fprintf(w, "%s %s orig=%q", r.Proto, r.URL.Path, r.Header.Get("meshctl-orig-proto"))
	}))
	ca := testpki.NewRoot(t, "root")
	m := newMeshPair(t, app, serverSPIFFE, ca.NewIssuer(t, "issuer").Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)

	for name, tc := range map[string]struct {
		client *http.Client
		want   string
	}{
		"HTTP/1 stays HTTP/1 at the application": {h1Client(), `HTTP/1.1 /a orig=""`},
		"HTTP/2 stays HTTP/2":                    {h2cClient(), `HTTP/2.0 /a orig=""`},
	} {
		resp, err := tc.client.Get("http://" + m.client.outbound() + "/a")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if body := readAll(t, resp.Body); body != tc.want {
			t.Errorf("%s: application saw %q, want %q", name, body, tc.want)
		}
		resp.Body.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+m.client.outbound()+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	ws.Write(ctx, websocket.MessageText, []byte("hi"))
	if _, got, err := ws.Read(ctx); err != nil || string(got) != "ws:hi" {
		t.Errorf("websocket echo %q, %v", got, err)
	}
	ws.CloseNow()

	in := map[string]string{"direction": "inbound", "tls": "true", "client_id": clientSPIFFE}
	// The WebSocket's upgrade request counts too (once its stream ended):
	// the server's proxy serves it as HTTP, under its inbound policy,
	// before the stream is joined.
	eventually(t, "server proxy request_total{tls,client_id} = 3 (HTTP/1, HTTP/2, the WebSocket upgrade)", 5*time.Second, func() bool {
		return metricValue(scrape(t, m.server), "request_total", in) == 3
	})
	fams := scrape(t, m.server)
	if v := metricValue(fams, "tcp_open_total", in); v < 2 {
		t.Errorf("server proxy tcp_open_total{tls,client_id} = %v, want the HTTP/2 and the WebSocket connections", v)
	}
	out := map[string]string{"direction": "outbound", "tls": "true", "server_id": serverSPIFFE}
	if v := metricValue(scrape(t, m.client), "request_total", out); v != 3 {
		t.Errorf("client proxy request_total{tls,server_id} = %v, want 3", v)
	}
}

// TestMeshedHopCarriesGRPCAndOpaqueTCP covers the rest: a gRPC bidi stream
// and an opaque protocol with half-close.
func TestMeshedHopCarriesGRPCAndOpaqueTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, grpcServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	ca := testpki.NewRoot(t, "root")
	m := newMeshPair(t, ln.Addr().String(), serverSPIFFE, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	cc, err := grpc.NewClient(m.client.outbound(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bidi, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		msg := []byte(fmt.Sprint("m", i))
		bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: msg}})
		if got, err := bidi.Recv(); err != nil || string(got.GetPayload().GetBody()) != string(msg) {
			t.Fatalf("bidi %d: %v, %v", i, got, err)
		}
	}
	bidi.CloseSend()

	// Opaque: a second pair whose application echoes after the client's half-close.
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c)
		c.Write(append([]byte("echo:"), got...))
	}()
	m2 := newMeshPair(t, echo.Addr().String(), serverSPIFFE, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	c, err := net.Dial("tcp", m2.client.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("\x00raw bytes"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readAll(t, c); got != "echo:\x00raw bytes" {
		t.Errorf("opaque over the mesh: %q", got)
	}
}

// TestMeshedHopRefusesTheWrongPeers: a server proving another identity, a
// client certificate from another CA, an expired one: each fails with 502,
// never plaintext, and is counted on the side that noticed.
func TestMeshedHopRefusesTheWrongPeers(t *testing.T) {
	leakCheck(t)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") }))
	ca := testpki.NewRoot(t, "root")
	get502 := func(t *testing.T, m *meshPair) {
		t.Helper()
		resp, err := h1Client().Get("http://" + m.client.outbound() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway || strings.Contains(body, "secret") {
			t.Errorf("status %d body %q, want 502 without the application's answer", resp.StatusCode, body)
		}
	}
	t.Run("server with another identity", func(t *testing.T) {
		m := newMeshPair(t, app, "spiffe://cluster.local/ns/shop/sa/payments", ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
		get502(t, m)
		if v := metricValue(scrape(t, m.client), "tls_error_total", map[string]string{"direction": "outbound", "reason": "identity_mismatch"}); v != 1 {
			t.Errorf("tls_error_total{identity_mismatch} = %v, want 1", v)
		}
	})
	t.Run("client certificate from another CA", func(t *testing.T) {
		other := testpki.NewRoot(t, "other")
		clientSrc, _ := identityFiles(t, other.Issue(t, clientSPIFFE, -time.Minute, time.Hour), ca)
		serverSrc, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
		server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, Identity: serverSrc})
		client := startProxy(t, Config{
			Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: server.inbound(), UpstreamIdentity: spiffeid.ID{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "backend"}},
			Identity: clientSrc,
		})
		get502(t, &meshPair{client: client, server: server})
		eventually(t, "the server to count the untrusted client", 5*time.Second, func() bool {
			return metricValue(scrape(t, server), "tls_error_total", map[string]string{"direction": "inbound", "reason": "untrusted"}) == 1
		})
	})
	t.Run("expired server certificate", func(t *testing.T) {
		m := newMeshPair(t, app, serverSPIFFE, ca.Issue(t, serverSPIFFE, -2*time.Hour, -time.Hour), ca)
		get502(t, m)
		if v := metricValue(scrape(t, m.client), "tls_error_total", map[string]string{"direction": "outbound", "reason": "expired"}); v != 1 {
			t.Errorf("tls_error_total{expired} = %v, want 1", v)
		}
	})
}

// TestPlaintextIsRefusedWhereMutualTLSIsRequired: on a port that requires
// mutual TLS, plaintext HTTP gets 403 and plaintext TCP is closed; both counted.
func TestPlaintextIsRefusedWhereMutualTLSIsRequired(t *testing.T) {
	leakCheck(t)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") }))
	ca := testpki.NewRoot(t, "root")
	src, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	_, port, _ := net.SplitHostPort(app)
	var p16 uint16
	fmt.Sscan(port, &p16)
	server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, Identity: src, RequireTLSPorts: []uint16{p16}, DetectTimeout: 100 * time.Millisecond})
	resp, err := h1Client().Get("http://" + server.inbound() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "secret") {
		t.Errorf("plaintext HTTP: %d %q, want 403", resp.StatusCode, body)
	}
	if got := rawExchange(t, server.inbound(), []byte("\x00opaque"), true); got != "" {
		t.Errorf("plaintext TCP got %q, want the connection closed", got)
	}
	eventually(t, "both refusals counted", 5*time.Second, func() bool {
		return metricValue(scrape(t, server), "tls_error_total", map[string]string{"reason": "plaintext_refused"}) == 2
	})
}

// TestHandshakeThatNeverFinishesIsCutOff: a client that sends a mesh
// ClientHello and then nothing is dropped after the handshake timeout.
func TestHandshakeThatNeverFinishesIsCutOff(t *testing.T) {
	leakCheck(t)
	ca := testpki.NewRoot(t, "root")
	src, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: "127.0.0.1:1"}, Identity: src, TLSHandshakeTimeout: 300 * time.Millisecond})
	hello := meshClientHello(t)
	start := time.Now()
	if got := rawExchange(t, server.inbound(), hello, false); strings.Contains(got, "HTTP") {
		t.Errorf("got %q", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stalled handshake held for %s", took)
	}
	eventually(t, "the timeout counted", 5*time.Second, func() bool {
		return metricValue(scrape(t, server), "tls_error_total", map[string]string{"direction": "inbound", "reason": "handshake_timeout"}) == 1
	})
}

// meshClientHello captures the first record a meshed client sends.
func meshClientHello(t *testing.T) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Client(c, &tls.Config{NextProtos: []string{"meshctl/h2"}, InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(2 * time.Second))
		tc.Handshake()
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 0, 16<<10)
	for {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) >= 5 && len(buf) >= 5+int(buf[3])<<8+int(buf[4]) {
			return buf
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestMeshedClientOpeningThousandsOfStreamsIsRefusedBeyondTheLimit: a peer
// with a valid certificate that ignores SETTINGS_MAX_CONCURRENT_STREAMS gets
// streams refused (or the connection closed), is counted, and leaks nothing.
func TestMeshedClientOpeningThousandsOfStreamsIsRefusedBeyondTheLimit(t *testing.T) {
	leakCheck(t)
	block := make(chan struct{})
	var inflight, peak atomic.Int64
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	ca := testpki.NewRoot(t, "root")
	serverSrc, _ := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	clientSrc, _ := identityFiles(t, ca.Issue(t, clientSPIFFE, -time.Minute, time.Hour), ca)
	const limit = 100
	server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: app}, Identity: serverSrc, MaxConcurrentStreams: limit, DrainTimeout: time.Second})
	d := &meshtls.Dialer{Source: clientSrc, Net: (&net.Dialer{}).DialContext}
	tc, err := d.Dial(context.Background(), server.inbound(), serverSrc.Bundle().ID, meshtls.ALPNHTTP2)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(tc, bufio.NewReader(tc))
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := uint32(0); i < 2000; i++ {
		hb.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "backend"}, {":path", "/"}} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true}); err != nil {
			break // the server may close the connection on us
		}
	}
	// Refusals: RST_STREAM(REFUSED_STREAM) frames, or the connection
	// closed (GOAWAY, EOF). Our own read deadline running out is neither.
	refused, closed := 0, false
	tc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for refused < 1000 && !closed {
		f, err := fr.ReadFrame()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
		case err != nil || isGoAway(f):
			closed = true
			continue
		}
		if err != nil {
			break
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.ErrCode == http2.ErrCodeRefusedStream {
			refused++
		}
	}
	t.Logf("2000 streams over a limit of %d: %d refused, connection closed %v, at most %d at the app at once", limit, refused, closed, peak.Load())
	if refused == 0 && !closed {
		t.Error("2000 concurrent streams over a limit of 100 were neither refused nor cut off")
	}
	// The streams within the limit reach the app, unless the rapid-reset
	// guard cut the client off first: 2000 streams opened at once leave
	// more unanswered than it allows when the server's writer falls behind
	// (a loaded machine), and it sends GOAWAY before any handler got there.
	tripped := metricValue(scrape(t, server), "protocol_error_total", map[string]string{"protocol": "h2", "error": "rapid_reset"}) > 0
	if p := peak.Load(); p > limit || p == 0 && !tripped {
		t.Errorf("the app had at most %d requests at once, want between 1 and the limit %d (the guard tripped: %v)", p, limit, tripped)
	}
	if v := metricValue(scrape(t, server), "protocol_error_total", map[string]string{"direction": "inbound", "protocol": "h2"}); v == 0 {
		t.Error("the refused streams were not counted")
	}
	close(block)
	tc.Close()
	eventually(t, "the server proxy to close the connection", 5*time.Second, func() bool {
		return metricValue(scrape(t, server), "tcp_open_connections", nil) == 0
	})
}

// TestRequestMetricsNameTheEndpointEachRequestWentTo: discovery may turn a
// destination meshed under a live keep-alive connection; each request's
// metrics say where it went (tls, server_id), not what the connection first saw.
func TestRequestMetricsNameTheEndpointEachRequestWentTo(t *testing.T) {
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	ca := testpki.NewRoot(t, "root")
	m := newMeshPair(t, app, serverSPIFFE, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	set := m.client.p.sides[0].fixed
	meshed := set.Endpoints()
	meshed[0].Workload = "backend"
	set.Update([]endpoints.Endpoint{{Addr: app}}) // not meshed yet: straight to the app

	client := h1Client()
	get := func() {
		t.Helper()
		res, err := client.Get("http://" + m.client.outbound() + "/")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, res.Body); body != "ok" {
			t.Fatalf("body %q", body)
		}
		res.Body.Close()
	}
	get()
	set.Update(meshed) // the server became meshed
	get()
	fams := scrape(t, m.client)
	plain := metricValue(fams, "response_total", map[string]string{"direction": "outbound", "tls": "false", "server_id": ""})
	mtls := metricValue(fams, "response_total", map[string]string{"direction": "outbound", "tls": "true", "server_id": serverSPIFFE, "dst_workload": "backend"})
	if plain != 1 || mtls != 1 {
		t.Errorf("response_total: %v plaintext, %v meshed; want 1 and 1", plain, mtls)
	}
	if opened := metricValue(fams, "tcp_open_total", map[string]string{"direction": "outbound"}); opened != 1 {
		t.Errorf("%v client connections, want the one keep-alive connection", opened)
	}
}
