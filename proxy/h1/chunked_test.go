package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
)

func readChunked(in string) (string, *ChunkedReader, string, error) {
	br := bufio.NewReader(strings.NewReader(in))
	c := NewChunkedReader(br)
	body, err := io.ReadAll(c)
	rest, _ := io.ReadAll(br)
	return string(body), c, string(rest), err
}

func TestChunkedBodiesAreDecoded(t *testing.T) {
	for _, c := range []struct {
		name, in, body, trailer string
	}{
		{"two chunks", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", "hello world", ""},
		{"hex sizes, either case, leading zeros", "0A\r\n0123456789\r\n00b\r\nabcdefghijk\r\n0\r\n\r\n", "0123456789abcdefghijk", ""},
		{"extensions and whitespace at the end", "5;name=value \r\nhello\r\n5\t\r\nworld\r\n0;last\r\n\r\n", "helloworld", ""},
		{"trailers", "3\r\nabc\r\n0\r\nGrpc-Status: 0\r\nX-T:  v \r\n\r\n", "abc", "Grpc-Status=0,X-T=v"},
		{"empty", "0\r\n\r\n", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			body, r, rest, err := readChunked(c.in + "NEXT")
			if err != nil || body != c.body {
				t.Fatalf("read %q, %v; want %q", body, err, c.body)
			}
			if rest != "NEXT" {
				t.Errorf("left %q after the body, want the next message", rest)
			}
			var tr []string
			for _, f := range r.Trailers {
				tr = append(tr, string(f.Name)+"="+string(f.Value))
			}
			if strings.Join(tr, ",") != c.trailer {
				t.Errorf("trailers %q, want %q", tr, c.trailer)
			}
		})
	}
}

func TestMalformedChunkedBodiesAreRefused(t *testing.T) {
	for _, c := range []struct{ name, in string }{
		{"a bare LF after the size", "5\nhello\r\n0\r\n\r\n"},
		{"a bare LF after the data", "5\r\nhello\n0\r\n\r\n"},
		{"data longer than its size", "3\r\nhello\r\n0\r\n\r\n"},
		{"a size that is not hex", "g\r\nx\r\n0\r\n\r\n"},
		{"a signed size", "+5\r\nhello\r\n0\r\n\r\n"},
		{"a 0x size", "0x5\r\nhello\r\n0\r\n\r\n"},
		{"an empty size", "\r\nhello\r\n0\r\n\r\n"},
		{"an overflowing size", "10000000000000000\r\n"},
		{"a size over 2^63", "8000000000000000\r\n"},
		{"a CR inside the size line", "5\r;x\r\nhello\r\n0\r\n\r\n"},
		{"a size line over the limit", "5;" + strings.Repeat("x", MaxChunkLineBytes) + "\r\nhello\r\n0\r\n\r\n"},
		{"whitespace before the size", " 5\r\nhello\r\n0\r\n\r\n"},
		{"whitespace between the size and its extension", "5 ;x\r\nhello\r\n0\r\n\r\n"},
		{"no CRLF after the data", "5\r\nhello0\r\n\r\n"},
		{"junk where the data's CRLF belongs", "5\r\nhelloXX0\r\n\r\n"},
		{"a CR inside an extension", "5;a\rb\r\nhello\r\n0\r\n\r\n"},
		{"extensions that outweigh the data", strings.Repeat("1;"+strings.Repeat("x", 4000)+"\r\na\r\n", 6) + "0\r\n\r\n"},
		{"a Content-Length trailer", "0\r\nContent-Length: 5\r\n\r\n"},
		{"a Transfer-Encoding trailer", "0\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"a Host trailer", "0\r\nHost: evil\r\n\r\n"},
		{"a trailer without a colon", "0\r\nbad trailer\r\n\r\n"},
		{"a folded trailer", "0\r\nX: a\r\n b\r\n\r\n"},
		{"a trailer with a space before its colon", "0\r\nX : a\r\n\r\n"},
		{"trailers over the limit", "0\r\n" + strings.Repeat("X: "+strings.Repeat("y", 1000)+"\r\n", 17) + "\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, _, _, err := readChunked(c.in); !errors.Is(err, ErrMalformedChunk) {
				t.Errorf("%v, want ErrMalformedChunk", err)
			}
		})
	}
	for _, in := range []string{"5\r\nhel", "5\r\nhello", "5\r\nhello\r\n", "0\r\n", "0\r\nX: y\r\n"} {
		if _, _, _, err := readChunked(in); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q cut short: %v, want io.ErrUnexpectedEOF", in, err)
		}
	}
}

// FuzzChunkedAgainstNetHTTP decodes the same bytes with ChunkedReader and
// net/http's chunked reader (httputil.NewChunkedReader): when this one
// reads a body, net/http reads the same data; the two may only disagree
// where this one refuses and net/http reads on.
func FuzzChunkedAgainstNetHTTP(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n", "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n", "5\nhello\r\n0\r\n\r\n", "0\r\n\r\n",
		"1\r\nx\r\n1 \r\ny\r\n0\r\n\r\n", "ffffffffffffffff\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := NewChunkedReader(bufio.NewReader(bytes.NewReader(in)))
		ours, err := io.ReadAll(c)
		if err != nil {
			return
		}
		theirs, goErr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in)))
		if goErr != nil {
			t.Fatalf("ChunkedReader read %q from %q; net/http refuses it: %v", ours, in, goErr)
		}
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("ChunkedReader read %q, net/http %q, from %q", ours, theirs, in)
		}
	})
}

func TestChunkedReaderAllocatesNothingWithoutTrailers(t *testing.T) {
	in := []byte("400\r\n" + strings.Repeat("x", 1024) + "\r\n400\r\n" + strings.Repeat("y", 1024) + "\r\n0\r\n\r\n")
	src := bytes.NewReader(in)
	br := bufio.NewReaderSize(src, 4096)
	var c ChunkedReader
	buf := make([]byte, 512)
	n := testing.AllocsPerRun(100, func() {
		src.Reset(in)
		br.Reset(src)
		c.Reset(br)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	})
	if n != 0 {
		t.Errorf("a chunked body allocates %v times, want 0", n)
	}
}
