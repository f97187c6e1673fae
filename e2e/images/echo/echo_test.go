package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
)

// section is one answer as the conformance suite's parser reads it
// (utils/echo/parse.go: first match of each field, every header line).
type section struct {
	code, hostname, host string
	requestHeaders       http.Header
	responseHeaders      http.Header
}

var (
	codeRe     = regexp.MustCompile("StatusCode=(.*)")
	hostnameRe = regexp.MustCompile("Hostname=(.*)")
	hostRe     = regexp.MustCompile("Host=(.*)")
	reqHdrRe   = regexp.MustCompile("RequestHeader=(.*)")
	resHdrRe   = regexp.MustCompile("ResponseHeader=(.*)")
)

// parseSections splits output as the suite does (on blank lines) and keeps
// sections with a status code or a hostname.
func parseSections(out string) []section {
	var secs []section
	for s := range strings.SplitSeq(out, "\n\n") {
		s = strings.TrimSpace(s)
		sec := section{requestHeaders: http.Header{}, responseHeaders: http.Header{}}
		if m := codeRe.FindStringSubmatch(s); m != nil {
			sec.code = m[1]
		}
		if m := hostnameRe.FindStringSubmatch(s); m != nil {
			sec.hostname = m[1]
		}
		if m := hostRe.FindStringSubmatch(s); m != nil {
			sec.host = m[1]
		}
		for _, m := range reqHdrRe.FindAllStringSubmatch(s, -1) {
			if k, v, ok := strings.Cut(m[1], ":"); ok {
				sec.requestHeaders.Add(k, v)
			}
		}
		for _, m := range resHdrRe.FindAllStringSubmatch(s, -1) {
			if k, v, ok := strings.Cut(m[1], ":"); ok {
				sec.responseHeaders.Set(k, v)
			}
		}
		if sec.code != "" || sec.hostname != "" {
			secs = append(secs, sec)
		}
	}
	return secs
}

func TestHTTPClientAndServerSpeakTheSuitesFormat(t *testing.T) {
	srv := httptest.NewServer(&echoHandler{port: 8080, hostname: "echo-v1-abc-def"})
	defer srv.Close()
	var out strings.Builder
	err := client(context.Background(), []string{srv.URL + "/path?q=1", "--method=GET", "-H", "Host:echo-v2",
		"-H", "X-Header-Add:one", "-H", "X-Header-Add:two", "--count=45"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	secs := parseSections(out.String())
	if len(secs) != 45 {
		t.Fatalf("%d answers parsed, want 45:\n%s", len(secs), out.String())
	}
	for _, s := range secs {
		if s.code != "200" || s.hostname != "echo-v1-abc-def" || s.host != "echo-v2" {
			t.Fatalf("parsed %+v", s)
		}
		if got := strings.Join(s.requestHeaders.Values("X-Header-Add"), ","); got != "one,two" {
			t.Fatalf("X-Header-Add %q, want one,two", got)
		}
		if s.responseHeaders.Get("Content-Type") != "text/plain" {
			t.Fatalf("response headers %v", s.responseHeaders)
		}
	}
}

func TestClientNeitherFollowsRedirectsNorReusesConnections(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusMovedPermanently)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	var out strings.Builder
	if err := client(context.Background(), []string{srv.URL, "--count=5"}, &out); err != nil {
		t.Fatal(err)
	}
	secs := parseSections(out.String())
	if len(secs) != 5 || secs[0].code != "301" || secs[0].responseHeaders.Get("Location") != "http://elsewhere.invalid/" {
		t.Fatalf("parsed %+v", secs)
	}
	srv.Close()
	if n := conns.Load(); n != 5 {
		t.Errorf("%d connections for 5 requests, want one each", n)
	}
}

func TestClientFailsWhenARequestGetsNoAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var out strings.Builder
	if err := client(context.Background(), []string{"http://" + addr + "/", "--timeout=2s"}, &out); err == nil {
		t.Fatalf("no error for a closed port; printed %q", out.String())
	}
	for _, bad := range [][]string{{}, {"ftp://x/"}, {"http://x/", "-H", "nocolon"}, {"http://x/", "--count=0"}} {
		if err := client(context.Background(), bad, &out); err == nil {
			t.Errorf("client %q: no error", bad)
		}
	}
}

func TestGRPCClientAndServerOnOneConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}))
	srv.RegisterService(echoServiceDesc(&grpcEcho{port: 7070, hostname: "echo-v2-x-y"}), nil)
	go func() { _ = srv.Serve(countingListener{ln, &conns}) }()
	defer srv.Stop()
	var out strings.Builder
	if err := client(context.Background(), []string{"grpc://" + ln.Addr().String(), "-H", "X-Id:7", "--count=60"}, &out); err != nil {
		t.Fatal(err)
	}
	secs := parseSections(out.String())
	if len(secs) != 60 {
		t.Fatalf("%d answers, want 60:\n%s", len(secs), out.String())
	}
	for _, s := range secs {
		if s.code != "200" || s.hostname != "echo-v2-x-y" || s.requestHeaders.Get("X-Id") != "7" {
			t.Fatalf("parsed %+v", s)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func TestServerFlags(t *testing.T) {
	c, err := parseServerFlags([]string{"--tcp=9090", "--port=8080", "--grpc=7070", "--port=8443", "--tls=8443", "--crt=/cert.crt", "--key=/cert.key"})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.httpPorts) != 2 || c.tlsPorts[0] != 8443 || c.grpcPorts[0] != 7070 {
		t.Errorf("parsed %+v", c)
	}
	if c, err := parseServerFlags(nil); err != nil || c.httpPorts[0] != 8080 || c.grpcPorts[0] != 7070 || c.tcpPorts[0] != 9090 {
		t.Errorf("defaults %+v, %v", c, err)
	}
	if _, err := parseServerFlags([]string{"--tls=8443"}); err == nil {
		t.Error("--tls on a port that is not served: no error")
	}
}
