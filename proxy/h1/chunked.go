package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MaxChunkLineBytes bounds a chunk-size line with its extensions, and each
// trailer field line.
const MaxChunkLineBytes = 4096

// MaxTrailerBytes bounds the trailer section of a chunked body.
const MaxTrailerBytes = 16 << 10

// ErrMalformedChunk is a chunked body that breaks the syntax: a size that
// is not hex or overflows, a line without CRLF, chunk data not followed by
// CRLF, a malformed or oversized trailer. The connection cannot be trusted
// after it.
var ErrMalformedChunk = errors.New("h1: malformed chunked body")

// ChunkedReader decodes a chunked body read from a buffered connection:
// Read returns the chunks' data, then io.EOF after the last chunk and the
// trailer section (its fields in Trailers). It reads nothing past the body,
// so the connection's next message starts where it stops.
type ChunkedReader struct {
	r *bufio.Reader
	// left is what remains of the current chunk's data; inChunk says a
	// chunk's data (and its CRLF) is being read.
	left    uint64
	inChunk bool
	err     error
	// excess is the overhead (size lines, extensions, CRLFs) beyond what
	// the data read so far allows: a body of many tiny chunks with long
	// extensions costs the proxy far more than it carries.
	excess int64
	// Trailers are the trailer fields, copied (they are rare).
	Trailers []Field
}

// NewChunkedReader reads a chunked body from r.
func NewChunkedReader(r *bufio.Reader) *ChunkedReader {
	c := &ChunkedReader{}
	c.Reset(r)
	return c
}

// Reset reads another body from r, keeping the Trailers' capacity.
func (c *ChunkedReader) Reset(r *bufio.Reader) {
	*c = ChunkedReader{r: r, Trailers: c.Trailers[:0]}
}

// Read reads body data.
func (c *ChunkedReader) Read(p []byte) (int, error) {
	for c.err == nil {
		if c.inChunk && c.left > 0 {
			if len(p) == 0 {
				return 0, nil
			}
			if uint64(len(p)) > c.left {
				p = p[:c.left]
			}
			n, err := c.r.Read(p)
			c.left -= uint64(n)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.err = err
			return n, nil
		}
		if c.inChunk { // the chunk's data is read: its CRLF
			c.err = c.expectCRLF()
			if c.err == nil {
				c.err = c.overhead(2)
			}
			c.inChunk = false
			continue
		}
		size, err := c.sizeLine()
		if err != nil {
			c.err = err
			break
		}
		if size == 0 {
			c.err = c.trailers()
			if c.err == nil {
				c.err = io.EOF
			}
			break
		}
		c.left, c.inChunk = size, true
		c.excess = max(c.excess-16-2*int64(min(size, 1<<40)), 0) // data earns an allowance of overhead
	}
	return 0, c.err
}

// sizeLine reads "hex-size [OWS] [; extensions] CRLF".
func (c *ChunkedReader) sizeLine() (uint64, error) {
	line, err := c.line()
	if err != nil {
		return 0, err
	}
	if err := c.overhead(len(line) + 2); err != nil {
		return 0, err
	}
	// As net/http: whitespace may end the line, not start it or sit
	// between the size and its extensions ("5 ;x" is refused: a hop that
	// stops at the space would read another size).
	line = bytes.TrimRight(line, " \t")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 16 {
		return 0, ErrMalformedChunk
	}
	var n uint64
	for _, h := range line {
		var d byte
		switch {
		case isDigit(h):
			d = h - '0'
		case 'a' <= h && h <= 'f':
			d = h - 'a' + 10
		case 'A' <= h && h <= 'F':
			d = h - 'A' + 10
		default:
			return 0, ErrMalformedChunk
		}
		n = n<<4 | uint64(d)
	}
	if n > 1<<63-1 {
		return 0, ErrMalformedChunk
	}
	return n, nil
}

// MaxChunkOverhead bounds the chunked encoding's overhead beyond an
// allowance earned by the data (16 bytes per chunk and 2 per data byte).
const MaxChunkOverhead = 16 << 10

func (c *ChunkedReader) overhead(n int) error {
	if c.excess += int64(n); c.excess > MaxChunkOverhead {
		return ErrMalformedChunk
	}
	return nil
}

// trailers reads the trailer section up to its empty line.
func (c *ChunkedReader) trailers() error {
	total := 0
	for {
		line, err := c.line()
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if total += len(line); total > MaxTrailerBytes {
			return ErrMalformedChunk
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' || !validName(line[:colon]) {
			return ErrMalformedChunk
		}
		value := trimOWS(line[colon+1:])
		if !validValue(value) || framingField(line[:colon]) {
			return ErrMalformedChunk
		}
		c.Trailers = append(c.Trailers, Field{Name: bytes.Clone(line[:colon]), Value: bytes.Clone(value)})
	}
}

// line reads a line ending in CRLF, without it; a bare LF, a CR inside, or
// a line over MaxChunkLineBytes is malformed.
func (c *ChunkedReader) line() ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull || len(line) > MaxChunkLineBytes:
		return nil, ErrMalformedChunk
	case err == io.EOF:
		return nil, io.ErrUnexpectedEOF
	case err != nil:
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, ErrMalformedChunk
	}
	line = line[:len(line)-2]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, ErrMalformedChunk
	}
	return line, nil
}

// expectCRLF reads the CRLF after a chunk's data.
func (c *ChunkedReader) expectCRLF() error {
	b, err := c.r.Peek(2)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if b[0] != '\r' || b[1] != '\n' {
		return ErrMalformedChunk
	}
	_, err = c.r.Discard(2)
	return err
}

// framingField: a field that frames the message or routes it, which a
// trailer must not carry (merged into the head on an HTTP/2 hop, it would
// change what the head said).
func framingField(name []byte) bool {
	return equalFold(name, "content-length") || equalFold(name, "transfer-encoding") || equalFold(name, "trailer") || equalFold(name, "host")
}
