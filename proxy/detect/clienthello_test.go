package detect

import (
	"crypto/tls"
	"net"
	"slices"
	"testing"
	"time"
)

// clientHello captures the first record a crypto/tls client sends.
func clientHello(t testing.TB, protos []string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, &tls.Config{NextProtos: protos, InsecureSkipVerify: true})
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Handshake() // fails when the server end closes
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 0, MaxPeek)
	for {
		n, err := server.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if l, ok := TLSRecordLen(buf); ok && len(buf) >= l {
			return buf[:l]
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestClientHelloALPNReadsWhatCryptoTLSOffers(t *testing.T) {
	for _, protos := range [][]string{{"meshctl/h2"}, {"meshctl/opaque"}, {"h2", "http/1.1"}, nil} {
		got, err := ClientHelloALPN(clientHello(t, protos))
		if err != nil {
			t.Fatalf("%v: %v", protos, err)
		}
		if !slices.Equal(got, protos) {
			t.Errorf("ALPN = %q, want %q", got, protos)
		}
	}
}

func TestClientHelloALPNRejectsOtherRecords(t *testing.T) {
	hello := clientHello(t, []string{"h2"})
	for name, b := range map[string][]byte{
		"truncated":   hello[:len(hello)-10],
		"alert":       {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28},
		"server side": append([]byte{0x16, 0x03, 0x03, 0x00, 0x04, 0x02}, 0, 0, 0),
	} {
		if _, err := ClientHelloALPN(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzClientHelloALPN(f *testing.F) {
	f.Add(clientHello(f, []string{"meshctl/h2"}))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		protos, err := ClientHelloALPN(b)
		if err != nil {
			return
		}
		for _, p := range protos {
			if p == "" {
				t.Fatal("empty protocol name accepted")
			}
		}
	})
}
