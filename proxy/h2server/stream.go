package h2server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"

	"github.com/meshctl/meshctl/proxy/h2"
)

// stream is one request and its response. Every field but the immutable
// ones is guarded by its connection's mu.
type stream struct {
	c      *conn
	id     uint32
	req    *http.Request
	cancel context.CancelFunc

	// Receiving the request's body.
	recv                 h2.RecvBuf
	recvWin, recvUnacked int64
	declared, received   int64
	recvDone             bool // END_STREAM received, or the stream reset
	bodyErr              error
	bodyClosed           bool
	bodyWake             chan struct{}
	// trailer is what the client sent after the body; its declared keys
	// are copied into the request's Trailer when the body's reader meets
	// its end (the handler's goroutine), never by the connection's reader.
	trailer http.Header
	// needsContinue: the client asked for 100 (Continue) before it sends
	// the body; the first read of the body sends it, as net/http's server
	// does, unless the final answer went first.
	needsContinue bool

	// Sending the response.
	finalHead   bool // the final head is queued
	sendWin     int64
	data        []byte
	off         int
	dataEnd     bool
	writing     int
	inReady     bool
	ownBuf      *[]byte // the last chunk's buffer, freed once written
	sentEnd     bool    // END_STREAM taken by the writer, or sending given up
	reset       bool    // RST_STREAM sent or received
	sendWake    chan struct{}
	handlerDone bool
	done        bool
}

var (
	errStreamClosed = errors.New("h2server: stream closed")
	errBodyClosed   = errors.New("h2server: read on a closed request body")
)

// onHeaders opens a stream with a request's head, or ends one with its
// trailers. The caller holds c.mu.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) (http2.ErrCode, error) {
	cfg := &c.srv.cfg
	id := f.StreamID
	if id%2 == 0 {
		cfg.CountError("headers_even")
		return http2.ErrCodeProtocol, errors.New("h2server: HEADERS on an even stream")
	}
	if id <= c.maxPeerID {
		s := c.streams[id]
		if s == nil || s.reset {
			return 0, nil // a stream ended or reset meanwhile (its block is decoded: the table stays right)
		}
		if s.recvDone {
			cfg.CountError("headers_half_closed")
			s.resetLocked(http2.ErrCodeStreamClosed)
			return 0, nil
		}
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
			cfg.CountError("trailers_not_ended")
			s.resetLocked(http2.ErrCodeProtocol)
			return 0, nil
		}
		for _, hf := range f.RegularFields() {
			k := h2.Canonical(hf.Name)
			if !httpguts.ValidTrailerHeader(k) {
				cfg.CountError("bad_trailer")
				s.resetLocked(http2.ErrCodeProtocol)
				return 0, nil
			}
			if s.trailer == nil {
				s.trailer = http.Header{}
			}
			s.trailer[k] = append(s.trailer[k], hf.Value)
		}
		s.onEnd()
		return 0, nil
	}
	c.maxPeerID = id
	switch {
	case f.HasPriority() && f.Priority.StreamDep == id:
		cfg.CountError("priority_on_itself")
		c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: id, Val: uint32(http2.ErrCodeProtocol)})
		return 0, nil
	case c.goingAway:
		c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: id, Val: uint32(http2.ErrCodeRefusedStream)})
		return 0, nil
	case len(c.streams) >= int(cfg.MaxConcurrentStreams):
		cfg.CountError("over_max_streams")
		code := http2.ErrCodeProtocol
		if !c.settingsAcked {
			code = http2.ErrCodeRefusedStream // it may not know the limit yet
		}
		c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: id, Val: uint32(code)})
		return 0, nil
	}
	s := &stream{c: c, id: id, declared: -1, recvWin: int64(cfg.StreamWindow), sendWin: c.peer.initWindow,
		recvDone: f.StreamEnded(), bodyWake: make(chan struct{}, 1), sendWake: make(chan struct{}, 1)}
	if f.Truncated {
		cfg.CountError("request_header_list_too_large")
		c.streams[id] = s
		s.handlerDone, s.bodyClosed = true, true // no request: what follows of it is dropped
		c.heads = append(c.heads, headItem{s: s, kind: headFinal, end: true,
			fields: statusFields(http.StatusRequestHeaderFieldsTooLarge)})
		c.signal()
		return 0, nil
	}
	req, err := c.newRequest(f, s)
	if err != nil {
		cfg.CountError("bad_request")
		c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: id, Val: uint32(http2.ErrCodeProtocol)})
		return 0, nil
	}
	s.req = req
	c.streams[id] = s
	c.srv.workers.run(s)
	return 0, nil
}

// newRequest builds a stream's request from its head.
func (c *conn) newRequest(f *http2.MetaHeadersFrame, s *stream) (*http.Request, error) {
	method, scheme := f.PseudoValue("method"), f.PseudoValue("scheme")
	authority, path := f.PseudoValue("authority"), f.PseudoValue("path")
	connect := method == http.MethodConnect
	if connect {
		if scheme != "" || path != "" || authority == "" {
			return nil, errors.New("bad CONNECT")
		}
	} else if method == "" || path == "" || scheme == "" {
		return nil, errors.New("missing pseudo-header")
	} else if scheme != "http" && scheme != "https" {
		return nil, errors.New(":scheme neither http nor https")
	}
	if f.PseudoValue("protocol") != "" {
		// Extended CONNECT (RFC 8441) needs SETTINGS_ENABLE_CONNECT_PROTOCOL,
		// which this server does not send.
		return nil, errors.New(":protocol without extended CONNECT")
	}
	if strings.Contains(authority, "@") {
		// RFC 9113, 8.3.1: no userinfo in :authority.
		return nil, errors.New("userinfo in :authority")
	}
	fields := f.RegularFields()
	header := make(http.Header, len(fields))
	for _, hf := range fields {
		k := h2.Canonical(hf.Name)
		switch k {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
			return nil, errors.New("connection-specific header")
		case "Te":
			if hf.Value != "trailers" {
				return nil, errors.New("TE other than trailers")
			}
		}
		header[k] = append(header[k], hf.Value)
	}
	if cookies := header["Cookie"]; len(cookies) > 1 {
		header["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	if authority == "" {
		authority = header.Get("Host")
	}
	length := int64(-1)
	if s.recvDone {
		length = 0
	} else if cl := header["Content-Length"]; len(cl) > 0 {
		n, err := strconv.ParseUint(cl[0], 10, 63)
		for _, v := range cl[1:] {
			if v != cl[0] {
				err = errors.New("conflicting Content-Length")
			}
		}
		if err != nil {
			return nil, err
		}
		length = int64(n)
		s.declared = length
	}
	if httpguts.HeaderValuesContainsToken(header["Expect"], "100-continue") {
		s.needsContinue = !s.recvDone
		delete(header, "Expect")
	}
	var trailer http.Header
	if vv, ok := header["Trailer"]; ok {
		for _, v := range vv {
			for _, k := range strings.Split(v, ",") {
				if k = http.CanonicalHeaderKey(strings.TrimSpace(k)); k != "" && httpguts.ValidTrailerHeader(k) {
					if trailer == nil {
						trailer = http.Header{}
					}
					trailer[k] = nil
				}
			}
		}
		delete(header, "Trailer")
	}
	u := &url.URL{Host: authority}
	uri := authority
	if !connect {
		var err error
		if u, err = url.ParseRequestURI(path); err != nil {
			return nil, err
		}
		uri = path
	}
	ctx, cancel := context.WithCancel(c.ctx)
	s.cancel = cancel
	req := (&http.Request{Method: method, URL: u, Proto: "HTTP/2.0", ProtoMajor: 2, Header: header,
		ContentLength: length, Host: authority, RemoteAddr: c.remote, RequestURI: uri, Trailer: trailer}).WithContext(ctx)
	if s.recvDone {
		req.Body = http.NoBody
	} else {
		req.Body = requestBody{s}
	}
	return req, nil
}

// onEnd notes the request's END_STREAM.
func (s *stream) onEnd() {
	s.recvDone = true
	if s.declared >= 0 && s.received != s.declared {
		s.c.srv.cfg.CountError("data_length_mismatch")
		s.bodyErr = fmt.Errorf("h2server: request body of %d bytes where Content-Length said %d: %w", s.received, s.declared, io.ErrUnexpectedEOF)
		s.resetLocked(http2.ErrCodeProtocol)
		return
	}
	s.wakeBody()
}

// onReset ends the stream: the client reset it, or the connection ended.
func (s *stream) onReset() {
	if s.reset {
		return
	}
	s.reset = true
	if !s.recvDone {
		s.recvDone = true
		s.bodyErr = errStreamClosed
	}
	if n := s.recv.Len(); n > 0 {
		s.recv.Free()
		s.c.refund(int64(n))
	}
	s.sentEnd = true
	if s.cancel != nil {
		s.cancel()
	}
	s.wakeBody()
	s.wakeSend()
	s.maybeFinish()
}

// resetLocked resets the stream with code.
func (s *stream) resetLocked(code http2.ErrCode) {
	if s.reset {
		return
	}
	s.c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: s.id, Val: uint32(code)})
	s.onReset()
}

// maybeFinish takes the stream out of the connection's books once its
// handler returned and its response is written; a request body not
// received whole by then is refused with RST_STREAM(NO_ERROR).
func (s *stream) maybeFinish() {
	if s.done || !s.handlerDone || !s.sentEnd || s.writing > 0 {
		return
	}
	c := s.c
	if !s.recvDone && !s.reset {
		s.reset = true
		c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: s.id, Val: uint32(http2.ErrCodeNo)})
	}
	if n := s.recv.Len(); n > 0 {
		s.recv.Free()
		c.refund(int64(n))
	}
	s.done = true
	delete(c.streams, s.id)
	if s.ownBuf != nil {
		h2.PutBuf(s.ownBuf)
		s.ownBuf, s.data = nil, nil
	}
	if len(c.streams) == 0 {
		c.idleSince = time.Now()
		if c.goingAway {
			c.closeWhenDone = true
			c.signal()
		}
	}
}

func (s *stream) wakeBody() {
	select {
	case s.bodyWake <- struct{}{}:
	default:
	}
}

func (s *stream) wakeSend() {
	select {
	case s.sendWake <- struct{}{}:
	default:
	}
}

// requeueLocked puts the stream in the writer's turn when it has DATA to
// send and the window for it.
func (s *stream) requeueLocked() {
	if s.inReady || s.reset || s.sentEnd {
		return
	}
	if (s.off < len(s.data) && s.sendWin > 0) || (s.dataEnd && s.off == len(s.data)) {
		s.inReady = true
		s.c.ready = append(s.c.ready, s)
		s.c.signal()
	}
}

// credit gives n bytes of the request body read back to the stream's
// window, with a WINDOW_UPDATE once a quarter of it is due.
func (s *stream) credit(n int64) {
	s.recvWin += n
	s.recvUnacked += n
	if !s.recvDone && s.recvUnacked >= int64(s.c.srv.cfg.StreamWindow)/4 {
		s.c.queueCtrl(h2.Ctrl{Type: http2.FrameWindowUpdate, Stream: s.id, Val: uint32(s.recvUnacked)})
		s.recvUnacked = 0
	}
}

// requestBody is a request's Body: it reads the stream's buffer.
type requestBody struct{ s *stream }

func (b requestBody) Read(p []byte) (int, error) {
	s := b.s
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.needsContinue {
		s.needsContinue = false
		if !s.finalHead && !s.reset && !s.recvDone && s.recv.Len() == 0 {
			c.heads = append(c.heads, headItem{s: s, kind: headInfo, fields: statusFields(http.StatusContinue)})
			c.signal()
		}
	}
	for {
		switch {
		case s.bodyClosed:
			return 0, errBodyClosed
		case s.recv.Len() > 0:
			n := s.recv.Read(p)
			c.refund(int64(n))
			s.credit(int64(n))
			return n, nil
		case s.bodyErr != nil:
			return 0, s.bodyErr
		case s.recvDone:
			for k := range s.req.Trailer { // the declared keys only, as net/http
				if vv, ok := s.trailer[k]; ok {
					s.req.Trailer[k] = vv
				}
			}
			s.trailer = nil
			return 0, io.EOF
		}
		c.mu.Unlock()
		<-s.bodyWake
		c.mu.Lock()
	}
}

func (b requestBody) Close() error {
	s := b.s
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	s.closeBodyLocked()
	return nil
}

// closeBodyLocked discards the request body's unread bytes and those to
// come.
func (s *stream) closeBodyLocked() {
	if s.bodyClosed {
		return
	}
	s.bodyClosed = true
	if n := s.recv.Len(); n > 0 {
		s.recv.Free()
		s.c.refund(int64(n))
	}
	s.wakeBody()
}
