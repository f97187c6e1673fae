package h2server

import (
	"io"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestExpectContinue: a client that asks for 100 (Continue) gets it when
// the handler first reads the body, before it sends the body, and the
// handler does not see the Expect field (net/http's server does the same);
// a handler that answers without reading sends no 100.
func TestExpectContinue(t *testing.T) {
	expect := make(chan string, 2)
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		expect <- r.Header.Get("Expect")
		if r.URL.Path == "/refuse" {
			w.WriteHeader(http.StatusExpectationFailed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))

	head := func(id uint32, path string) {
		t.Helper()
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: block(
			":method", "POST", ":scheme", "http", ":authority", "x", ":path", path, "expect", "100-continue")}); err != nil {
			t.Fatal(err)
		}
	}
	// next reads frames until a head on stream id, answering the
	// server's SETTINGS.
	next := func(id uint32) (status string, end bool) {
		t.Helper()
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatalf("waiting for a head on stream %d: %v", id, err)
			}
			if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == id {
				return h.PseudoValue("status"), h.StreamEnded()
			}
		}
	}

	head(1, "/")
	if st, _ := next(1); st != "100" {
		t.Fatalf("first head %q before the body was sent, want 100", st)
	}
	if got := <-expect; got != "" {
		t.Errorf("the handler saw Expect: %q", got)
	}
	if err := fr.WriteData(1, true, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if st, _ := next(1); st != "200" {
		t.Fatalf("final status %q, want 200", st)
	}

	head(3, "/refuse")
	if st, end := next(3); st != "417" || !end {
		t.Fatalf("head %q (end %v) for a handler that does not read, want 417 and the stream's end", st, end)
	}
	<-expect
}
