package h2client

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/meshctl/meshctl/proxy/h2"
)

// onHeaders handles a response head or its trailers. The caller holds c.mu.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	s := c.streams[f.StreamID]
	if s == nil {
		if f.StreamID >= c.nextID {
			return fmt.Errorf("h2client: HEADERS on idle stream %d", f.StreamID)
		}
		return nil // a stream that ended or was reset meanwhile
	}
	if f.Truncated {
		s.resetLocked(http2.ErrCodeProtocol, fmt.Errorf("h2client: response head over %d bytes", c.cl.cfg.MaxHeaderListSize))
		return nil
	}
	if s.res != nil {
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 || s.gotEnd {
			return errors.New("h2client: HEADERS after the response head that are no trailers")
		}
		for _, hf := range f.RegularFields() {
			if s.trailer == nil {
				s.trailer = http.Header{}
			}
			k := h2.Canonical(hf.Name)
			s.trailer[k] = append(s.trailer[k], hf.Value)
		}
		s.onEnd()
		s.wakeReader()
		return nil
	}
	res, err := response(f)
	if err != nil {
		s.resetLocked(http2.ErrCodeProtocol, err)
		return nil
	}
	if res.StatusCode < 200 {
		// 1xx heads are skipped; what they add up to is bounded by the
		// size of one head, as net/http's HTTP/2 client does (not by
		// their number: 102 heartbeats may be many).
		s.size1xx += listSize(f.Fields)
		switch {
		case f.StreamEnded():
			s.resetLocked(http2.ErrCodeProtocol, errors.New("h2client: 1xx response with END_STREAM"))
		case res.StatusCode == http.StatusSwitchingProtocols:
			s.resetLocked(http2.ErrCodeProtocol, errors.New("h2client: 101 Switching Protocols over HTTP/2"))
		case s.size1xx > uint64(c.fr.MaxHeaderListSize):
			s.resetLocked(http2.ErrCodeProtocol, errors.New("h2client: 1xx responses over the header list size"))
		}
		return nil
	}
	res.Request = s.req
	if !s.isHead {
		s.declared = res.ContentLength
	}
	if res.ContentLength < 0 && f.StreamEnded() && !s.isHead {
		res.ContentLength = 0
	}
	s.res = res
	switch {
	case s.isHead:
		res.Body = http.NoBody
		s.bodyClosed = true
	case f.StreamEnded() && res.ContentLength <= 0:
		res.Body = http.NoBody
		s.eofSeen = true
	default:
		res.Body = responseBody{s}
	}
	if f.StreamEnded() {
		s.onEnd()
	}
	s.wakeReader()
	return nil
}

// response builds a response from its head's fields.
func response(f *http2.MetaHeadersFrame) (*http.Response, error) {
	status := f.PseudoValue("status")
	code, err := strconv.Atoi(status)
	if len(status) != 3 || err != nil || code < 100 {
		return nil, fmt.Errorf("h2client: malformed :status %q", status)
	}
	fields := f.RegularFields()
	header := make(http.Header, len(fields))
	res := &http.Response{Proto: "HTTP/2.0", ProtoMajor: 2, Header: header, StatusCode: code,
		Status: status + " " + http.StatusText(code), ContentLength: -1}
	for _, hf := range fields {
		k := h2.Canonical(hf.Name)
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
			continue // connection-specific: no place in HTTP/2 (RFC 9113 §8.2.2)
		case "Trailer":
			if res.Trailer == nil {
				res.Trailer = http.Header{}
			}
			for _, v := range strings.Split(hf.Value, ",") {
				if v = strings.TrimSpace(v); v != "" && httpguts.ValidHeaderFieldName(v) {
					res.Trailer[h2.Canonical(strings.ToLower(v))] = nil
				}
			}
			continue
		}
		header[k] = append(header[k], hf.Value)
	}
	if cl, ok := header["Content-Length"]; ok {
		n, err := strconv.ParseUint(cl[0], 10, 63)
		if err != nil || slices.ContainsFunc(cl[1:], func(v string) bool { return v != cl[0] }) {
			delete(header, "Content-Length")
		} else {
			header["Content-Length"] = cl[:1]
			res.ContentLength = int64(n)
		}
	}
	return res, nil
}

// responseBody is a response's Body: it reads the stream's buffer.
type responseBody struct{ s *stream }

func (b responseBody) Read(p []byte) (int, error) {
	s := b.s
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		switch {
		case s.bodyClosed:
			return 0, errBodyClosed
		case s.recv.Len() > 0:
			n := s.recv.Read(p)
			c.creditConn(int64(n))
			if !s.done {
				s.credit(int64(n))
			}
			return n, nil
		case s.gotEnd:
			if !s.eofSeen {
				s.eofSeen = true
				for k, vv := range s.trailer {
					if s.res.Trailer == nil {
						s.res.Trailer = http.Header{}
					}
					s.res.Trailer[k] = vv
				}
				s.maybeFinish()
			}
			if s.endErr != nil {
				return 0, s.endErr
			}
			return 0, io.EOF
		case s.err != nil:
			return 0, s.err
		}
		c.mu.Unlock()
		<-s.resWake
		c.mu.Lock()
	}
}

func (b responseBody) Close() error {
	s := b.s
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.bodyClosed {
		return nil
	}
	s.bodyClosed = true
	if n := s.recv.Len(); n > 0 {
		s.recv.Free()
		c.creditConn(int64(n))
	}
	if !s.gotEnd {
		s.resetLocked(http2.ErrCodeCancel, errBodyClosed)
	}
	s.maybeFinish()
	return nil
}
