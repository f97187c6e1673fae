package h1server

// Each test in this file was written (by an adversarial review) against a
// defect it demonstrated: the comment above a test describes the defect it
// fails on.
import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshctl/meshctl/proxy/h1"
)

// pieceConn serves s on one end of a net.Pipe and writes the pieces to the
// other with a pause between, so each arrives as its own read.
func writePieces(t *testing.T, s *Server, pieces []string) (string, time.Duration) {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	go s.ServeConn(server, nil)
	start := time.Now()
	go func() {
		for _, p := range pieces {
			client.Write([]byte(p))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	client.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(client)
	line, err := br.ReadString('\n')
	if err != nil {
		return "no answer: " + err.Error(), time.Since(start)
	}
	return line, time.Since(start)
}

// Every way of splitting a head (in 2 and 3 pieces) is answered at once.
func TestHeadEndSplitEveryWay(t *testing.T) {
	s := &Server{ReadHeaderTimeout: 2 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	defer s.Close()
	for _, head := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\nHost: a\n\n", "GET / HTTP/1.0\r\n\r\n"} {
		n := len(head)
		for i := 1; i < n; i++ {
			for j := i; j < n; j++ {
				pieces := []string{head[:i], head[i:j], head[j:]}
				if i == j {
					pieces = []string{head[:i], head[i:]}
				}
				got, took := writePieces(t, s, pieces)
				if !strings.HasPrefix(got, "HTTP/1.1 ") || took > time.Second {
					t.Errorf("%q: %q after %s", pieces, got, took)
				}
			}
		}
	}
}

// A head h1 refuses line by line (bare LF) is refused in one piece; in
// two (the second filling the buffer) it is handed to net/http instead.
func TestATrickledLargeHeadIsStillRefusedStrictly(t *testing.T) {
	rest := "Host: a\nX-Pad: " + strings.Repeat("a", BufferSize) + "\r\n\r\n"
	for _, pieces := range [][]string{{"GET / HTTP/1.1\r\n" + rest}, {"GET / HTTP/1.1\r\n", rest}} {
		h := &handOffs{got: make(chan string, 1)}
		s := &Server{Handler: echo, HandOff: h.take}
		got, _ := writePieces(t, s, pieces)
		select {
		case b := <-h.got:
			t.Errorf("%d piece(s): a bare-LF head handed off (%d bytes) instead of refused", len(pieces), len(b))
		default:
			if !strings.HasPrefix(got, "HTTP/1.1 400") {
				t.Errorf("%d piece(s): %q", len(pieces), got)
			}
		}
		s.Close()
	}
}

// CONNECT's authority form is refused by h1 at the request line, before
// any field is looked at: every field-level refusal is skipped.
func TestConnectAuthorityFormFieldsAreCheckedStrictly(t *testing.T) {
	for name, head := range map[string]string{
		"length and chunked": "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"two Hosts":          "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nHost: b:443\r\n\r\n",
		"bare LF":            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\nX: y\n\n",
		"obs-fold":           "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nX: y\r\n z\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			h := &handOffs{got: make(chan string, 1)}
			var refused []h1.Reason
			s := &Server{Handler: echo, HandOff: h.take, Refused: func(c net.Conn, st int, r h1.Reason) { refused = append(refused, r) }}
			defer s.Close()
			got, _ := writePieces(t, s, []string{head})
			select {
			case <-h.got:
				t.Errorf("handed off to net/http; want 400 (refused: %v)", refused)
			default:
				if !strings.HasPrefix(got, "HTTP/1.1 400") {
					t.Errorf("%q", got)
				}
			}
		})
	}
}

// A keep-alive answer to a request whose body the handler did not read
// and the client does not finish: the drain has no deadline at all, so the
// connection (and its buffer) is held past IdleTimeout and ReadHeaderTimeout.
func TestTheDrainHasADeadline(t *testing.T) {
	s := &Server{IdleTimeout: 200 * time.Millisecond, ReadHeaderTimeout: 200 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "no") })}
	addr, _ := serve(t, s)
	c, br := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789")
	res, _ := readResponse(t, br, "POST")
	if res.Close {
		t.Skip("answered close")
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	start := time.Now()
	_, err := br.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("connection still held after %s (idle and header timeouts 200ms)", time.Since(start).Round(time.Millisecond))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// A client uploading fast while the answer (large) is still in flight: the
// graceful close reads its 256 KiB in a few milliseconds and closes with
// unread bytes, the reset destroys the rest of the answer.
func TestAGracefulCloseOutlastsAFastUploader(t *testing.T) {
	answer := strings.Repeat("x", 8<<20)
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(answer)))
		io.WriteString(w, answer)
	})})
	c, br := dial(t, addr)
	go func() {
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000\r\n\r\n")
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a client busy for a moment
	b, err := io.ReadAll(res.Body)
	if err != nil || len(b) != len(answer) {
		t.Errorf("read %d of %d bytes of the answer: %v", len(b), len(answer), err)
	}
}

// The answer promises keep-alive (the body's reader was between reads when
// it was committed), then the cut-off read makes the body unusable and the
// connection is closed under the client's next request.
func TestAPromisedKeepAliveIsKept(t *testing.T) {
	addr, _ := serve(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			go func() { time.Sleep(30 * time.Millisecond); io.Copy(io.Discard, r.Body) }()
			io.WriteString(w, "answer")
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
			return
		}
		io.WriteString(w, "answer")
	})})
	c, br := dial(t, addr)
	io.WriteString(c, "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234")
	res, _ := readResponse(t, br, "POST")
	if res.Close {
		return
	}
	io.WriteString(c, "56789GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Errorf("the first answer kept the connection alive; the next request got %v", err)
	}
}
