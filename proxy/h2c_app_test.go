package proxy

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestH2CExpectContinueListThroughTheProxy: an h2c client that
// sends its Expect: 100-continue as two fields waits for 100 (Continue)
// before its body, and gets it through the proxy at the first read of the
// body (as through net/http's h2c server before stop 35), not a stall.
func TestH2CExpectContinueListThroughTheProxy(t *testing.T) {
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	p := outboundTo(t, up)
	for _, expect := range [][]string{
		{"expect", "100-continue"}, // control: passes
		{"expect", "100-continue", "expect", "100-continue"},
	} {
		nc, err := net.Dial("tcp", p.outbound())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = nc.Write([]byte(http2.ClientPreface))
		fr := http2.NewFramer(nc, nc)
		fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
		_ = fr.WriteSettings()
		var hb bytes.Buffer
		enc := hpack.NewEncoder(&hb)
		fields := append([]string{":method", "POST", ":scheme", "http", ":authority", "up", ":path", "/", "content-length", "5"}, expect...)
		for i := 0; i < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
		_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		status := ""
		for status == "" {
			f, err := fr.ReadFrame()
			if err != nil {
				break
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					_ = fr.WriteSettingsAck()
				}
			case *http2.MetaHeadersFrame:
				status = f.PseudoValue("status")
			}
		}
		if status != "100" {
			t.Errorf("%d Expect field(s): first answer %q within 3 s, want 100 (Continue)", len(expect)/2, status)
		}
		nc.Close()
	}
}

// TestIdleH2CClientConnectionsAreClosed: an application's h2c
// connection that carries no stream for IdleTimeout gets GOAWAY and is
// closed, as its HTTP/1 connections are (and as net/http's server did).
func TestIdleH2CClientConnectionsAreClosed(t *testing.T) {
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}, IdleTimeout: 200 * time.Millisecond})
	nc, err := net.Dial("tcp", p.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, _ = nc.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(nc, nc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	fields := []string{":method", "GET", ":scheme", "http", ":authority", "up", ":path", "/"}
	for i := 0; i < len(fields); i += 2 {
		_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true})
	start := time.Now()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var goAway bool
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("idle h2c connection still open after 10 s; IdleTimeout is 200ms")
			}
			break
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.GoAwayFrame:
			goAway = true
		}
	}
	if !goAway {
		t.Error("closed without GOAWAY")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
}
