package h1

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func parse(t *testing.T, head string) (*Request, int, error) {
	t.Helper()
	var r Request
	n, err := r.Parse([]byte(head))
	return &r, n, err
}

func TestParseReadsRequests(t *testing.T) {
	for _, c := range []struct {
		name, head           string
		method, target, host string
		minor                int
		framing              Framing
		length               int64
		keepAlive, expect    bool
		upgrade              string
		fields               int
	}{
		{"simple GET", "GET /a?b=c HTTP/1.1\r\nHost: web\r\n\r\n", "GET", "/a?b=c", "web", 1, NoBody, 0, true, false, "", 1},
		{"a body by length", "POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 12\r\n\r\n", "POST", "/p", "web", 1, Length, 12, true, false, "", 2},
		{"an empty body", "POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 0\r\n\r\n", "POST", "/p", "web", 1, NoBody, 0, true, false, "", 2},
		{"chunked", "POST /p HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: Chunked\r\n\r\n", "POST", "/p", "web", 1, Chunked, -1, true, false, "", 2},
		{"close", "GET / HTTP/1.1\r\nHost: web\r\nConnection: keep-alive, Close\r\n\r\n", "GET", "/", "web", 1, NoBody, 0, false, false, "", 2},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", "GET", "/", "", 0, NoBody, 0, false, false, "", 0},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "GET", "/", "", 0, NoBody, 0, true, false, "", 1},
		{"HTTP/1.2 is 1.1", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", "GET", "/", "h", 2, NoBody, 0, true, false, "", 1},
		{"100-continue", "PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n", "PUT", "/u", "h", 1, Length, 5, true, true, "", 3},
		{"upgrade", "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", "GET", "/ws", "h", 1, NoBody, 0, true, false, "websocket", 3},
		{"absolute form wins over Host", "GET http://api.shop:8080/x HTTP/1.1\r\nHost: other\r\n\r\n", "GET", "http://api.shop:8080/x", "api.shop:8080", 1, NoBody, 0, true, false, "", 1},
		{"IPv6 authority", "GET http://[fd00::1]:80 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", "http://[fd00::1]:80", "[fd00::1]:80", 1, NoBody, 0, true, false, "", 1},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", "OPTIONS", "*", "h", 1, NoBody, 0, true, false, "", 1},
		{"whitespace around values, obs-text", "GET / HTTP/1.1\r\nHost:\th \r\nX-A:  caf\xc3\xa9 \t\r\n\r\n", "GET", "/", "h", 1, NoBody, 0, true, false, "", 2},
		{"leading zeros in Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 00000000000000000005\r\n\r\n", "POST", "/", "h", 1, Length, 5, true, false, "", 2},
		{"only the first Expect counts", "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nExpect: other\r\nContent-Length: 1\r\n\r\n", "PUT", "/", "h", 1, Length, 1, true, true, "", 4},
		{"an empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "GET", "/", "", 1, NoBody, 0, true, false, "", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, n, err := parse(t, c.head+"NEXT")
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if n != len(c.head) {
				t.Errorf("head length %d, want %d", n, len(c.head))
			}
			if string(r.Method) != c.method || string(r.Target) != c.target || string(r.Host) != c.host || r.Minor != c.minor {
				t.Errorf("read %q %q host %q minor %d", r.Method, r.Target, r.Host, r.Minor)
			}
			if r.Framing != c.framing || r.Framing != Chunked && r.ContentLength != c.length || r.KeepAlive != c.keepAlive || r.ExpectContinue != c.expect || string(r.Upgrade) != c.upgrade {
				t.Errorf("framing %v length %d keep-alive %v expect %v upgrade %q", r.Framing, r.ContentLength, r.KeepAlive, r.ExpectContinue, r.Upgrade)
			}
			if len(r.Fields) != c.fields {
				t.Errorf("%d fields, want %d", len(r.Fields), c.fields)
			}
		})
	}
	r, _, _ := parse(t, "GET / HTTP/1.1\r\nHost:\th \r\nX-A:  caf\xc3\xa9 \t\r\n\r\n")
	if v := string(r.Fields[1].Value); v != "caf\xc3\xa9" {
		t.Errorf("value %q, want it without the whitespace around it", v)
	}
}

func TestIncompleteHeadsAskForMore(t *testing.T) {
	full := "POST /p HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\n"
	for i := range len(full) {
		if _, _, err := parse(t, full[:i]); !errors.Is(err, ErrIncomplete) {
			t.Fatalf("the first %d bytes: %v, want ErrIncomplete", i, err)
		}
	}
}

// TestSmugglingAndMalformedHeadsAreRefused: every way a head can make two
// hops disagree on where a request ends, or that no server should accept,
// is refused with its status; those net/http accepts are marked strict.
func TestSmugglingAndMalformedHeadsAreRefused(t *testing.T) {
	for _, c := range []struct {
		name, head string
		status     int
		reason     Reason
	}{
		{"Content-Length and Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ReasonLengthAndTE},
		{"Transfer-Encoding then Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n", 400, ReasonLengthAndTE},
		{"two equal Content-Lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n", 400, ReasonTwoLengths},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n", 400, ReasonContentLength},
		{"a Content-Length list", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 4\r\n\r\n", 400, ReasonContentLength},
		{"a signed Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +4\r\n\r\n", 400, ReasonContentLength},
		{"a hex Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x4\r\n\r\n", 400, ReasonContentLength},
		{"an empty Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", 400, ReasonContentLength},
		{"a 20-digit Content-Length that wraps to 5", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551621\r\n\r\n", 400, ReasonContentLength},
		{"Content-Lengths equal as numbers, not as text", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 04\r\n\r\n", 400, ReasonContentLength},
		{"a Trailer naming Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n", 400, ReasonTrailer},
		{"a Trailer naming Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X, transfer-encoding\r\n\r\n", 400, ReasonTrailer},
		{"a scheme starting with a digit", "GET 1:x HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonTarget},
		{"an overflowing Content-Length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n", 400, ReasonContentLength},
		{"chunked, identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 501, ReasonTE},
		{"identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 501, ReasonTE},
		{"gzip, chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, ReasonTE},
		{"two Transfer-Encodings", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 501, ReasonTE},
		{"a chunked look-alike", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 501, ReasonTE},
		{"Transfer-Encoding in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, ReasonTEInHTTP10},
		{"a space before the colon", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400, ReasonFieldName},
		{"a tab before the colon", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 4\r\n\r\n", 400, ReasonFieldName},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400, ReasonObsFold},
		{"obs-fold of Transfer-Encoding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", 400, ReasonObsFold},
		{"a folded first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400, ReasonFieldLine},
		{"a bare LF ending a field", "GET / HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400, ReasonBareLF},
		{"a bare LF ending the head", "GET / HTTP/1.1\r\nHost: h\r\n\n", 400, ReasonBareLF},
		{"a bare LF ending the request line", "GET / HTTP/1.1\nHost: h\r\n\r\n", 400, ReasonBareLF},
		{"a bare CR in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400, ReasonBareCR},
		{"a NUL in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400, ReasonFieldValue},
		{"DEL in a value", "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n", 400, ReasonFieldValue},
		{"a name with a slash", "GET / HTTP/1.1\r\nHost: h\r\nX/Y: z\r\n\r\n", 400, ReasonFieldName},
		{"an empty name", "GET / HTTP/1.1\r\nHost: h\r\n: z\r\n\r\n", 400, ReasonFieldName},
		{"a line without a colon", "GET / HTTP/1.1\r\nHost: h\r\nno colon\r\n\r\n", 400, ReasonFieldLine},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, ReasonHost},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, ReasonHost},
		{"an invalid Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, ReasonHost},
		{"a leading empty line", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonRequestLine},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonVersion},
		{"a space in the target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonVersion},
		{"a lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", 400, ReasonVersion},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, ReasonVersionSupport},
		{"the HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, ReasonPreface},
		{"a bad escape", "GET /a%zz HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonTarget},
		{"a cut escape", "GET /a%4 HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonTarget},
		{"a control byte in the target", "GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonTarget},
		{"a relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 400, ReasonTarget},
		{"CONNECT authority-form", "CONNECT api:443 HTTP/1.1\r\nHost: api:443\r\n\r\n", 400, ReasonTargetForm},
		{"userinfo", "GET http://u@api/ HTTP/1.1\r\nHost: api\r\n\r\n", 400, ReasonTargetForm},
		{"another scheme", "GET ftp://api/ HTTP/1.1\r\nHost: api\r\n\r\n", 400, ReasonTargetForm},
		{"an unknown Expect", "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417, ReasonExpect},
		{"too many fields", "GET / HTTP/1.1\r\nHost: h\r\n" + strings.Repeat("X: y\r\n", DefaultMaxFields) + "\r\n", 431, ReasonTooManyFields},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := parse(t, c.head)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%v, want a refusal (%d, %s)", err, c.status, c.reason)
			}
			if e.Status != c.status || e.Reason != c.reason {
				t.Errorf("refused %d %q, want %d %q", e.Status, e.Reason, c.status, c.reason)
			}
			if e.Error() == "" || http.StatusText(e.Status) == "" {
				t.Errorf("refusal %#v has no text", e)
			}
		})
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	head := []byte("POST /api/v1/orders?id=7 HTTP/1.1\r\nHost: api.shop.svc.cluster.local:8080\r\nUser-Agent: load/1.0\r\n" +
		"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: 128\r\nX-Request-Id: 5f0c\r\n\r\n")
	var r Request
	if _, err := r.Parse(head); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Parse(head) }); n != 0 {
		t.Errorf("Parse allocates %v times per request, want 0", n)
	}
	bad := []byte("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Parse(bad) }); n != 0 {
		t.Errorf("a refusal allocates %v times, want 0", n)
	}
}
