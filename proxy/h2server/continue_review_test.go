package h2server

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// heads reads stream id's frames until its END_STREAM (or a reset) and
// returns the :status of each of its heads, in order.
func heads(t *testing.T, nc net.Conn, fr *http2.Framer, id uint32) []string {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer nc.SetReadDeadline(time.Time{})
	var got []string
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("heads %v, then %v", got, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				got = append(got, f.PseudoValue("status"))
				if f.StreamEnded() {
					return got
				}
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return got
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return append(got, "RST_STREAM "+f.ErrCode.String())
			}
		}
	}
}

// synced sends a PING and reads until its ACK: the server has read every
// frame sent before it. It fails on a head for stream id meanwhile.
func synced(t *testing.T, nc net.Conn, fr *http2.Framer, id uint32) {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer nc.SetReadDeadline(time.Time{})
	data := [8]byte{'s', 'y', 'n', 'c'}
	if err := fr.WritePing(false, data); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				t.Fatalf("head %q on stream %d before the handler read anything", f.PseudoValue("status"), id)
			}
		case *http2.PingFrame:
			if f.IsAck() && f.Data == data {
				return
			}
		}
	}
}

func expectHead(t *testing.T, fr *http2.Framer, id uint32) {
	t.Helper()
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, EndHeaders: true, BlockFragment: block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/", "expect", "100-continue")}); err != nil {
		t.Fatal(err)
	}
}

// TestNo100AfterTheFinalHead: a handler that sends its head (Flush)
// before it reads the body sends no 100 after it (a 1xx after the final
// head is a protocol error; net/http drops it, golang.org/issue/14030). The
// client sends its body once it has the final head.
func TestNo100AfterTheFinalHead(t *testing.T) {
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	}))
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	expectHead(t, fr, 1)
	// The final head comes first; then the body goes.
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 1 {
			if st := h.PseudoValue("status"); st != "200" {
				t.Fatalf("first head %q, want 200", st)
			}
			break
		}
	}
	_ = fr.WriteData(1, true, []byte("hello"))
	if got := heads(t, nc, fr, 1); len(got) != 0 {
		t.Errorf("heads after the final one: %v, want none", got)
	}
}

// TestNo100ForABodyAlreadySent: a client that sent (some of) its
// body without waiting gets no 100; one 100 at most, however many reads.
func TestNo100ForABodyAlreadySent(t *testing.T) {
	arrived := make(chan struct{})
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("wait") != "" {
			<-arrived
		}
		var b [1]byte
		n := 0
		for {
			k, err := r.Body.Read(b[:]) // a byte at a time: many reads
			n += k
			if err != nil {
				break
			}
		}
		w.WriteHeader(200 + n)
	}))
	nc, fr := rawClient(t, addr)
	defer nc.Close()

	// Part of the body already in: no 100.
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/?wait=1", "expect", "100-continue")})
	_ = fr.WriteData(1, false, []byte("ab"))
	synced(t, nc, fr, 1)
	arrived <- struct{}{}
	_ = fr.WriteData(1, true, []byte("c"))
	if got := heads(t, nc, fr, 1); len(got) != 1 || got[0] != "203" {
		t.Errorf("body partly sent ahead: heads %v, want [203]", got)
	}

	// The whole body already in: no 100.
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true, BlockFragment: block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/?wait=1", "expect", "100-continue")})
	_ = fr.WriteData(3, true, []byte("abcd"))
	synced(t, nc, fr, 3)
	arrived <- struct{}{}
	if got := heads(t, nc, fr, 3); len(got) != 1 || got[0] != "204" {
		t.Errorf("body whole ahead: heads %v, want [204]", got)
	}

	// An empty body ended by an empty DATA frame before the first read: no 100.
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 7, EndHeaders: true, BlockFragment: block(
		":method", "POST", ":scheme", "http", ":authority", "x", ":path", "/?wait=1", "expect", "100-continue")})
	_ = fr.WriteData(7, true, nil)
	synced(t, nc, fr, 7)
	arrived <- struct{}{}
	if got := heads(t, nc, fr, 7); len(got) != 1 || got[0] != "200" {
		t.Errorf("empty body ended ahead: heads %v, want [200]", got)
	}

	// Waiting for the 100: exactly one, then the body read a byte at a time.
	expectHead(t, fr, 9)
	if got := headOrReset(t, nc, fr, 9, 5*time.Second); got != "100" {
		t.Fatalf("first head %q, want 100", got)
	}
	_ = fr.WriteData(9, false, []byte("ab"))
	_ = fr.WriteData(9, true, []byte("cde"))
	if got := heads(t, nc, fr, 9); len(got) != 1 || got[0] != "205" {
		t.Errorf("after the 100: heads %v, want [205]", got)
	}
}

// TestNo100ForAResetStream: a stream the client reset before the
// handler's first read gets no 100 (nor anything else).
func TestNo100ForAResetStream(t *testing.T) {
	reset, read := make(chan struct{}), make(chan struct{})
	addr, _, _ := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			return
		}
		<-reset
		<-r.Context().Done()
		_, _ = io.ReadAll(r.Body)
		close(read)
	}))
	nc, fr := rawClient(t, addr)
	defer nc.Close()
	expectHead(t, fr, 1)
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	synced(t, nc, fr, 1)
	close(reset)
	<-read
	// Heads leave in the order they are queued: a 100 queued by the read
	// would come before the next request's answer.
	writeRequest(t, fr, 3)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			if h.StreamID == 1 {
				t.Fatalf("head %q on a stream the client reset", h.PseudoValue("status"))
			}
			if h.StreamID == 3 {
				return
			}
		}
	}
}
