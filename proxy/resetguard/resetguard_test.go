package resetguard

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// pair returns a guarded server end and the client's framer.
func pair(t *testing.T, cfg Config) (*Conn, *http2.Framer, net.Conn) {
	t.Helper()
	server, client := net.Pipe()
	t.Cleanup(func() { server.Close(); client.Close() })
	return New(server, cfg), http2.NewFramer(client, bufio.NewReader(client)), client
}

func headerBlock() []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	return hb.Bytes()
}

// serve reads everything the client sends, as the server's reader would.
func serve(c *Conn) chan error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, c)
		done <- err
	}()
	return done
}

func TestStreamsAnsweredBeforeTheirResetAreNotPremature(t *testing.T) {
	c, fr, client := pair(t, Config{MinResets: 10})
	go io.Copy(io.Discard, client) // the client reads what the server writes
	done := serve(c)
	respond := http2.NewFramer(c, nil) // the server answers on the guarded conn
	answered := make(chan struct{})
	go func() {
		_, _ = client.Write([]byte(http2.ClientPreface))
		for i := uint32(0); i < 100; i++ {
			_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: headerBlock(), EndHeaders: true})
		}
		<-answered
		for i := uint32(0); i < 100; i++ {
			_ = fr.WriteRSTStream(2*i+1, http2.ErrCodeCancel) // after their answers: a browser navigating away
		}
		client.Close()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for c.pendingStreams() < 100 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for i := uint32(0); i < 100; i++ {
		_ = respond.WriteHeaders(http2.HeadersFrameParam{StreamID: 2*i + 1, BlockFragment: headerBlock(), EndHeaders: true})
	}
	close(answered)
	<-done
	if c.Tripped() {
		t.Errorf("a client whose resets all came after the answers was cut off")
	}
}

func TestPrematureResetsGetGoAwayAtAFrameBoundary(t *testing.T) {
	trips := 0
	c, fr, client := pair(t, Config{MinResets: 10, OnTrip: func(int, int) { trips++ }})
	// The server is in the middle of writing a large frame when the limit
	// is hit: the GOAWAY must follow that frame, not cut into it.
	big := make([]byte, 9+20000)
	big[0], big[1], big[2] = 0, 0x4e, 0x20 // a 20,000-byte DATA frame
	big[8] = 1                             // stream 1
	go func() {
		_, _ = client.Write([]byte(http2.ClientPreface))
		for i := uint32(0); i < 50; i++ {
			id := 2*i + 1
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headerBlock(), EndHeaders: true}) != nil ||
				fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	// Half the big frame goes out before the trip, half after.
	got := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(client); got <- b }()
	if _, err := c.Write(big[:10000]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for !c.Tripped() {
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("read before the trip: %v", err)
		}
	}
	if _, err := c.Read(buf); err != ErrTooManyResets {
		t.Errorf("read after the trip: %v, want ErrTooManyResets", err)
	}
	// The rest of the frame comes in two writes: the GOAWAY must wait for
	// the second.
	if _, err := c.Write(big[10000:15000]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(big[15000:]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0, 3}); err != nil { // dropped
		t.Fatal(err)
	}
	c.Close()
	out := <-got
	if len(out) != len(big)+17 || !bytes.Equal(out[:len(big)], big) {
		t.Fatalf("the client read %d bytes, want the whole frame and a GOAWAY (%d)", len(out), len(big)+17)
	}
	f, err := http2.NewFramer(nil, bytes.NewReader(out[len(big):])).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	ga, ok := f.(*http2.GoAwayFrame)
	if !ok || ga.ErrCode != http2.ErrCodeEnhanceYourCalm || ga.LastStreamID == 0 {
		t.Errorf("after the frame: %v, want GOAWAY ENHANCE_YOUR_CALM naming the last stream", f)
	}
	if trips != 1 {
		t.Errorf("OnTrip called %d times, want 1", trips)
	}
}

func TestFrameScannerFollowsFramesCutAnywhere(t *testing.T) {
	var stream bytes.Buffer
	fr := http2.NewFramer(&stream, nil)
	var want []uint32
	for i := uint32(1); i < 40; i += 2 {
		_ = fr.WriteData(i, false, bytes.Repeat([]byte{'x'}, int(i)*7))
		_ = fr.WriteRSTStream(i, http2.ErrCodeCancel)
		want = append(want, i)
	}
	b := stream.Bytes()
	for size := 1; size < 50; size++ {
		var s frameScanner
		var got []uint32
		for off := 0; off < len(b); off += size {
			s.feed(b[off:min(off+size, len(b))], func(typ byte, id uint32) {
				if typ == frameRSTStream {
					got = append(got, id)
				}
			})
		}
		if !s.atBoundary() || len(got) != len(want) {
			t.Fatalf("pieces of %d bytes: resets %v, at boundary %v", size, got, s.atBoundary())
		}
	}
}

// pendingStreams is for tests: the streams awaiting an answer.
func (c *Conn) pendingStreams() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// FuzzFrameScanner: however a byte stream is cut into pieces, the scanner
// reports the same frames as when it gets it whole, and untilBoundary ends
// exactly where the frame in progress ends.
func FuzzFrameScanner(f *testing.F) {
	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	_ = fr.WriteData(1, false, []byte("hello"))
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	f.Add(seed.Bytes(), uint8(3))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0, 1}, uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		type frame struct {
			typ byte
			id  uint32
		}
		var whole, pieces []frame
		var a frameScanner
		a.feed(b, func(typ byte, id uint32) { whole = append(whole, frame{typ, id}) })
		var s frameScanner
		size := int(cut%32) + 1
		for off := 0; off < len(b); off += size {
			piece := b[off:min(off+size, len(b))]
			k := s.untilBoundary(piece)
			if k > len(piece) {
				t.Fatalf("untilBoundary %d beyond the piece (%d)", k, len(piece))
			}
			var probe frameScanner = s
			probe.feed(piece[:k], nil)
			if k < len(piece) && !probe.atBoundary() {
				t.Fatalf("untilBoundary stopped at %d, not at a boundary", k)
			}
			s.feed(piece, func(typ byte, id uint32) { pieces = append(pieces, frame{typ, id}) })
		}
		if len(whole) != len(pieces) {
			t.Fatalf("whole: %d frames, in pieces of %d: %d", len(whole), size, len(pieces))
		}
		for i := range whole {
			if whole[i] != pieces[i] {
				t.Fatalf("frame %d: %v vs %v", i, whole[i], pieces[i])
			}
		}
	})
}

// drive feeds frame headers to the guard as its reader and writer would.
func open(c *Conn, id uint32)   { c.clientFrame(frameHeaders, id) }
func reset(c *Conn, id uint32)  { c.clientFrame(frameRSTStream, id) }
func answer(c *Conn, id uint32) { c.serverFrame(frameHeaders, id) }

func TestAnsweredStreamsBankNoResets(t *testing.T) {
	// Each premature reset paired with a stream answered at once (a 403
	// will do): judged over the connection's life the ratio stays at one
	// half; judged over time it is a flood.
	c := New(pipeEnd(t), Config{})
	for i := uint32(0); i < 20_000 && !c.Tripped(); i++ {
		open(c, 4*i+1)
		answer(c, 4*i+1)
		open(c, 4*i+3)
		reset(c, 4*i+3)
	}
	if !c.Tripped() {
		t.Errorf("20,000 premature resets interleaved with answered streams were never stopped")
	}
	if c.resets > 200 {
		t.Errorf("tripped only after %d premature resets; the burst is 100", c.resets)
	}
}

func TestCallsThatGaveUpOnASlowServerAreNotAnAttack(t *testing.T) {
	// 150 calls waited past their deadline on a slow server and were
	// cancelled before any answer: no rapid reset.
	c := New(pipeEnd(t), Config{})
	for i := uint32(0); i < 150; i++ {
		open(c, 2*i+1)
	}
	c.mu.Lock()
	for id := range c.pending {
		c.pending[id] = time.Now().Add(-2 * time.Second)
	}
	c.mu.Unlock()
	for i := uint32(0); i < 150; i++ {
		reset(c, 2*i+1)
	}
	if c.Tripped() {
		t.Error("a client whose calls timed out on a slow server was cut off")
	}
	// A client cancelling a batch of young calls at once stays within the burst.
	for i := uint32(150); i < 240; i++ {
		open(c, 2*i+1)
		reset(c, 2*i+1)
	}
	if c.Tripped() {
		t.Error("90 cancelled calls at once were taken for an attack")
	}
}

// pipeEnd is a connection for tests that drive the guard by hand (closed
// when they end; a tripped guard closes it too).
func pipeEnd(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}
