package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// TestHTTP2StreamsBothWaysAndKeepsTrailers: the upstream echoes each line of
// the request body as it arrives; the client sends the next line only after
// reading the echo of the last, which works only if both directions stream.
func TestHTTP2StreamsBothWaysAndKeepsTrailers(t *testing.T) {
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2 upstream, got "+r.Proto, 400)
			return
		}
		w.Header().Set("Trailer", "X-Lines")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		n := 0
		s := bufio.NewScanner(r.Body)
		for s.Scan() {
			n++
			fmt.Fprintf(w, "echo %s\n", s.Text())
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Lines", fmt.Sprint(n))
	}))
	p := outboundTo(t, up)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.outbound()+"/echo", pr)
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("client got %s, want HTTP/2", resp.Proto)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 5 {
		fmt.Fprintf(pw, "line%d\n", i)
		got, err := br.ReadString('\n')
		if err != nil || got != fmt.Sprintf("echo line%d\n", i) {
			t.Fatalf("round %d: %q, %v", i, got, err)
		}
	}
	pw.Close()
	io.Copy(io.Discard, br)
	if got := resp.Trailer.Get("X-Lines"); got != "5" {
		t.Errorf("trailer X-Lines = %q, want 5", got)
	}
}

// grpcServer is the interop test service: unary, server-streaming and
// full-duplex calls.
type grpcServer struct {
	testgrpc.UnimplementedTestServiceServer
}

func (grpcServer) UnaryCall(_ context.Context, in *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: in.GetPayload().GetBody()}}, nil
}

func (grpcServer) StreamingOutputCall(in *testgrpc.StreamingOutputCallRequest, s testgrpc.TestService_StreamingOutputCallServer) error {
	for _, p := range in.GetResponseParameters() {
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (grpcServer) FullDuplexCall(s testgrpc.TestService_FullDuplexCallServer) error {
	for {
		in, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testgrpc.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestGRPCThroughTwoProxies runs unary, server-streaming and bidi calls
// through an outbound proxy and an inbound proxy in a row.
func TestGRPCThroughTwoProxies(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, grpcServer{})
	go srv.Serve(ln)
	defer srv.Stop()
	in := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: ln.Addr().String()}})
	out := outboundTo(t, in.inbound())

	cc, err := grpc.NewClient(out.outbound(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	rsp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("ping")}})
	if err != nil || string(rsp.GetPayload().GetBody()) != "ping" {
		t.Fatalf("unary: %v, %v", rsp, err)
	}

	stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 100000}, {Size: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("server stream: %v", err)
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
	if fmt.Sprint(sizes) != "[10 100000 1]" {
		t.Errorf("server stream sizes %v", sizes)
	}

	bidi, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		msg := []byte(fmt.Sprintf("m%d", i))
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: msg}}); err != nil {
			t.Fatal(err)
		}
		got, err := bidi.Recv() // each reply before the next send: full duplex
		if err != nil || string(got.GetPayload().GetBody()) != string(msg) {
			t.Fatalf("bidi %d: %v, %v", i, got, err)
		}
	}
	bidi.CloseSend()
	if _, err := bidi.Recv(); err != io.EOF {
		t.Errorf("bidi end: %v, want EOF", err)
	}

	// A failing call is classified by its grpc-status.
	if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}); err == nil {
		t.Fatal("EmptyCall is unimplemented and must fail")
	}
	fams := scrape(t, out)
	if v := metricValue(fams, "response_total", map[string]string{"direction": "outbound", "classification": "failure"}); v != 1 {
		t.Errorf("outbound failures = %v, want 1 (the unimplemented call)", v)
	}
	if v := metricValue(fams, "response_total", map[string]string{"direction": "outbound", "classification": "success"}); v != 3 {
		t.Errorf("outbound successes = %v, want 3", v)
	}
}

// TestWebSocketThroughTwoProxies upgrades through two proxies and echoes.
func TestWebSocketThroughTwoProxies(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	in := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up.Listener.Addr().String()}})
	out := outboundTo(t, in.inbound())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+out.outbound()+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for i := range 5 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "done")
}

// TestOpaqueTCPWithHalfClose: a protocol that is not HTTP is forwarded as
// bytes; the client's half-close reaches the upstream, whose answer still
// comes back.
func TestOpaqueTCPWithHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c) // until the client's half-close
		c.Write([]byte("got:" + string(got)))
	}()
	p := outboundTo(t, ln.Addr().String())
	c, err := net.Dial("tcp", p.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("\x00\x01binary protocol"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readAll(t, c); got != "got:\x00\x01binary protocol" {
		t.Errorf("got %q", got)
	}
}

// TestServerSpeaksFirstProtocolsDoNotStall: on an opaque port the upstream's
// greeting arrives at once; on another port, after the short detection
// timeout, not Linkerd's 10 s.
func TestServerSpeaksFirstProtocolsDoNotStall(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("220 smtp.example ESMTP ready\r\n"))
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		name   string
		opaque []uint16
		within time.Duration
	}{
		{"opaque port", []uint16{port}, 300 * time.Millisecond},
		{"detection timeout", []uint16{}, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, Config{
				Outbound:      &SideConfig{Listen: "127.0.0.1:0", Upstream: ln.Addr().String()},
				OpaquePorts:   tc.opaque,
				DetectTimeout: 200 * time.Millisecond,
			})
			start := time.Now()
			c, err := net.Dial("tcp", p.outbound())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "220 smtp.example ESMTP ready\r\n" {
				t.Fatalf("greeting %q, %v", line, err)
			}
			if took := time.Since(start); took > tc.within {
				t.Errorf("greeting took %s, want under %s", took, tc.within)
			}
		})
	}
}

// TestTLSPassesThroughUntouched: TLS that is not the mesh's reaches the
// upstream as it was sent; the client still verifies the upstream's certificate.
func TestTLSPassesThroughUntouched(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secret")
	}))
	defer up.Close()
	p := outboundTo(t, up.Listener.Addr().String())
	pool := x509.NewCertPool()
	pool.AddCert(up.Certificate())
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", p.outbound())
		},
	}}
	resp, err := client.Get("https://example.com/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body := readAll(t, resp.Body); body != "secret" || resp.TLS == nil {
		t.Errorf("body %q, TLS %v", body, resp.TLS != nil)
	}
}
