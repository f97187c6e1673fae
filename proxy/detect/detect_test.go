package detect

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		in   string
		want Protocol
		done bool
	}{
		{"", Opaque, false},
		{"GET / HTTP/1.1\r\n", HTTP1, true},
		{"GE", Opaque, false},
		{"POST ", HTTP1, true},
		{"PROPFIND /dav HTTP/1.1\r\nHost: x\r\n", HTTP1, true},
		{"PROPFIND /dav", Opaque, false},
		{"PROPFIND /dav RTSP/1.0\r\n", Opaque, true},
		{Preface, HTTP2, true},
		{Preface[:10], Opaque, false},
		{"PRI * HTTP/1.1\r\n", HTTP1, true}, // not the preface: an (odd) HTTP/1 request
		{"\x16\x03\x01\x02\x00", TLS, true},
		{"\x16\x03", Opaque, false},
		{"\x16\x09\x01", Opaque, true},
		{"\x00\x00\x00\x08\x04\xd2\x16\x2f", Opaque, true}, // PostgreSQL SSLRequest
		{"SSH-2.0-OpenSSH_9.2\r\n", Opaque, true},
		{"*1\r\n$4\r\nPING\r\n", Opaque, true}, // Redis
	}
	for _, tt := range tests {
		p, done := Classify([]byte(tt.in))
		if p != tt.want || done != tt.done {
			t.Errorf("Classify(%q) = %v, %v; want %v, %v", tt.in, p, done, tt.want, tt.done)
		}
	}
}

// TestDetectGivesUpQuicklyOnSilentClients shows that a client that waits for
// the server to speak first (MySQL, SMTP) is called opaque after the timeout,
// not left hanging.
func TestDetectGivesUpQuicklyOnSilentClients(t *testing.T) {
	client, server := tcpPair(t)
	defer client.Close()
	start := time.Now()
	p, peeked, err := Detect(server, 100*time.Millisecond, nil)
	if err != nil || p != Opaque || len(peeked) != 0 {
		t.Fatalf("Detect = %v, %q, %v; want opaque with nothing read", p, peeked, err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("detection of a silent client took %s", waited)
	}
	// The deadline is cleared: the connection still works.
	go client.Write([]byte("late"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(server, buf); err != nil {
		t.Fatalf("read after detection: %v", err)
	}
}

func TestDetectReadsUntilDecidedAndReturnsThePeekedBytes(t *testing.T) {
	client, server := tcpPair(t)
	defer client.Close()
	go func() {
		for _, part := range []string{"PRI * HTTP/2", ".0\r\n\r\nSM\r\n", "\r\nrest"} {
			client.Write([]byte(part))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	p, peeked, err := Detect(server, 5*time.Second, make([]byte, 0, MaxPeek))
	if err != nil || p != HTTP2 {
		t.Fatalf("Detect = %v, %v; want h2c", p, err)
	}
	if !bytes.HasPrefix(peeked, []byte(Preface)) {
		t.Errorf("peeked %q does not start with the preface", peeked)
	}
}

// TestDetectForwardsWhatAHalfClosedClientSent: a client that sends a few
// bytes and half-closes is opaque, and its bytes are kept; one that sends
// nothing and closes is an error.
func TestDetectForwardsWhatAHalfClosedClientSent(t *testing.T) {
	client, server := tcpPair(t)
	client.Write([]byte("GE"))
	client.(*net.TCPConn).CloseWrite()
	p, peeked, err := Detect(server, 5*time.Second, nil)
	if p != Opaque || string(peeked) != "GE" || err != nil {
		t.Errorf("Detect = %v, %q, %v; want opaque, \"GE\", no error", p, peeked, err)
	}
	client, server = tcpPair(t)
	client.Close()
	if _, peeked, err := Detect(server, 5*time.Second, nil); err == nil || len(peeked) != 0 {
		t.Errorf("Detect on a silent close = %q, %v; want EOF", peeked, err)
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\n", Preface, "\x16\x03\x01", "PROPFIND / HTTP/1.0\r\n", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, done := Classify(b)
		if done {
			// A decision never changes with more bytes.
			if p2, done2 := Classify(append(b[:len(b):len(b)], "more bytes\r\n"...)); !done2 || p2 != p {
				t.Fatalf("Classify(%q) = %v, but with more bytes %v, %v", b, p, p2, done2)
			}
		}
		if p == HTTP2 && !bytes.HasPrefix(b, []byte(Preface)) {
			t.Fatalf("h2c without the preface: %q", b)
		}
	})
}

func BenchmarkClassifyHTTP1(b *testing.B) {
	in := []byte("GET /api/v1/items HTTP/1.1\r\nHost: web\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		Classify(in)
	}
}

func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// TestDetectGrowsItsBufferForALargeTLSRecord: the first buffer is small; a
// ClientHello record larger than it is still read whole.
func TestDetectGrowsItsBufferForALargeTLSRecord(t *testing.T) {
	client, server := tcpPair(t)
	defer client.Close()
	record := append([]byte{0x16, 0x03, 0x01, 0x07, 0xd0}, bytes.Repeat([]byte{1}, 2000)...)
	go client.Write(record)
	p, peeked, err := Detect(server, 5*time.Second, make([]byte, 0, 64))
	if err != nil || p != TLS || !bytes.Equal(peeked, record) {
		t.Errorf("Detect = %v, %d bytes, %v; want TLS with the whole %d-byte record", p, len(peeked), err, len(record))
	}
}
