package h1

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"slices"
	"testing"
)

func TestParseReadsResponses(t *testing.T) {
	for _, c := range []struct {
		name, head string
		head1      bool
		status     int
		reason     string
		framing    Framing
		length     int64
		keepAlive  bool
	}{
		{"a length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, 200, "OK", Length, 5, true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, 200, "OK", Chunked, -1, true},
		{"until close", "HTTP/1.1 200 OK\r\n\r\n", false, 200, "OK", UntilClose, -1, false},
		{"HTTP/1.0 until close", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", false, 200, "OK", UntilClose, -1, false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", false, 200, "OK", Length, 1, true},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", false, 204, "No Content", NoBody, 0, true},
		{"304 with a length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false, 304, "Not Modified", NoBody, 0, true},
		{"HEAD with a length", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", true, 200, "OK", NoBody, 0, true},
		{"100 Continue", "HTTP/1.1 100 Continue\r\n\r\n", false, 100, "Continue", NoBody, 0, true},
		{"no reason", "HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", false, 404, "", NoBody, 0, true},
		{"close", "HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 2\r\n\r\n", false, 503, "Busy", Length, 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Response
			n, err := r.Parse([]byte(c.head+"BODY"), c.head1)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(c.head) || r.Status != c.status || string(r.Reason) != c.reason || r.Framing != c.framing || r.ContentLength != c.length || r.KeepAlive != c.keepAlive {
				t.Errorf("n %d status %d %q framing %v length %d keep-alive %v", n, r.Status, r.Reason, r.Framing, r.ContentLength, r.KeepAlive)
			}
		})
	}
}

func TestDesyncingResponsesAreRefused(t *testing.T) {
	for _, c := range []struct {
		name, head string
		reason     Reason
	}{
		{"Content-Length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ReasonLengthAndTE},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", ReasonContentLength},
		{"a bare LF", "HTTP/1.1 200 OK\nContent-Length: 5\r\n\r\n", ReasonBareLF},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 5\r\n\r\n", ReasonObsFold},
		{"gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", ReasonTE},
		{"a two-digit code", "HTTP/1.1 20 OK\r\n\r\n", ReasonStatusLine},
		{"a code under 100", "HTTP/1.1 099 Odd\r\n\r\n", ReasonStatusForm},
		{"spaces before the code", "HTTP/1.1  200 OK\r\n\r\n", ReasonStatusForm},
		{"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n", ReasonResponseVersion},
		{"no version", "200 OK\r\n\r\n", ReasonStatusLine},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r Response
			_, err := r.Parse([]byte(c.head), false)
			var e *Error
			if !errors.As(err, &e) || e.Reason != c.reason {
				t.Errorf("%v, want a refusal for %q", err, c.reason)
			}
		})
	}
}

// FuzzResponseHeadAgainstNetHTTP: Parse against http.ReadResponse, as
// FuzzRequestHeadAgainstNetHTTP does for requests (the first byte chooses
// whether the response answers a HEAD).
func FuzzResponseHeadAgainstNetHTTP(f *testing.F) {
	for _, s := range []string{
		"\x00HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"\x00HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"\x01HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"\x00HTTP/1.0 204 No Content\r\nConnection: keep-alive\r\n\r\n",
		"\x00HTTP/1.1 200 OK\r\n\r\nrest",
		"\x00HTTP/1.1  200 OK\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		head, in := in[0]&1 == 1, in[1:]
		var r Response
		n, err := r.Parse(in, head)
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		br := bufio.NewReaderSize(bytes.NewReader(in), len(in)+16)
		goResp, goErr := http.ReadResponse(br, &http.Request{Method: method})
		var refusal *Error
		switch {
		case errors.Is(err, ErrIncomplete):
			if goErr == nil {
				t.Fatalf("Parse wants more bytes; net/http read %d from %q", goResp.StatusCode, in)
			}
			return
		case errors.As(err, &refusal):
			if goErr == nil && !refusal.Reason.StrictOnly() {
				t.Fatalf("Parse refused %q (%s); net/http accepts it", in, refusal.Reason)
			}
			return
		case err != nil:
			t.Fatalf("Parse: %v", err)
		}
		if goErr != nil {
			t.Fatalf("Parse accepted %q; net/http refuses it: %v", in, goErr)
		}
		if goN := len(in) - br.Buffered(); n != goN {
			t.Errorf("head length %d, net/http %d", n, goN)
		}
		if r.Status != goResp.StatusCode || r.Minor != goResp.ProtoMinor {
			t.Errorf("status %d HTTP/1.%d; net/http %d HTTP/1.%d", r.Status, r.Minor, goResp.StatusCode, goResp.ProtoMinor)
		}
		goLength := goResp.ContentLength
		bodyless := head || goResp.StatusCode < 200 || goResp.StatusCode == 204 || goResp.StatusCode == 304
		if head {
			goLength = 0 // net/http gives the GET's length; there is no body
		}
		// A response that cannot have a body has none, whatever its fields
		// say: net/http still reports their Transfer-Encoding (its Body is
		// NoBody), Parse reports NoBody.
		goChunked := slices.Equal(goResp.TransferEncoding, []string{"chunked"}) && !bodyless
		if bodyless && r.Framing != NoBody {
			t.Errorf("a response without a body (status %d, HEAD %v) framed %v", r.Status, head, r.Framing)
		}
		if r.ContentLength != goLength || (r.Framing == Chunked) != goChunked {
			t.Errorf("framing %v length %d; net/http length %d, transfer encoding %q", r.Framing, r.ContentLength, goResp.ContentLength, goResp.TransferEncoding)
		}
		if r.KeepAlive == goResp.Close {
			t.Errorf("keep-alive %v; net/http close %v", r.KeepAlive, goResp.Close)
		}
	})
}

// TestResponseStrictReasonsAreAcceptedByNetHTTP keeps the strict reasons
// honest for responses, whose reader in net/http is laxer than its server.
func TestResponseStrictReasonsAreAcceptedByNetHTTP(t *testing.T) {
	for _, head := range []string{
		"HTTP/1.1  200 OK\r\n\r\n",
		"HTTP/1.1 +99 Odd\r\n\r\n",
		"HTTP/1.1 200 O\rK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.0 100 \r\n0 :\r\n\r\n",
		"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 -12 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX/Y: z\r\n\r\n",
	} {
		var r Response
		_, err := r.Parse([]byte(head), false)
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%q: %v, want a refusal", head, err)
			continue
		}
		if e.Status != http.StatusBadGateway {
			t.Errorf("%q: status %d, want 502 (the upstream is at fault)", head, e.Status)
		}
		_, goErr := http.ReadResponse(bufio.NewReader(bytes.NewReader([]byte(head))), &http.Request{Method: http.MethodGet})
		if goAccepts := goErr == nil; goAccepts && !e.Reason.StrictOnly() {
			t.Errorf("%q: refused for %q (not strict); net/http accepts it", head, e.Reason)
		}
	}
}

func TestRefusalsAllocateNothing(t *testing.T) {
	var req Request
	var resp Response
	for _, head := range []string{"GET http://[zz]/ HTTP/1.1\r\nHost: h\r\n\r\n", "GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n"} {
		b := []byte(head)
		if n := testing.AllocsPerRun(50, func() { _, _ = req.Parse(b) }); n != 0 {
			t.Errorf("%q: %v allocations", head, n)
		}
	}
	for _, head := range []string{"HTTP/1.1 abc OK\r\n\r\n", "HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n"} {
		b := []byte(head)
		if n := testing.AllocsPerRun(50, func() { _, _ = resp.Parse(b, false) }); n != 0 {
			t.Errorf("%q: %v allocations", head, n)
		}
	}
}
