package h2client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/proxy/h2"
)

// stream is one request and its response. Every field but the immutable
// ones is guarded by its connection's mu.
type stream struct {
	c         *conn
	req       *http.Request
	head      []hpack.HeaderField
	endOnHead bool // the request has no body
	isHead    bool
	id        uint32 // assigned by the writer, in the order heads go out

	// Sending.
	sendWin     int64
	data        []byte // the body's chunk being sent
	off         int    // data[:off] is taken by the writer
	dataEnd     bool   // END_STREAM after data
	writing     int    // DATA frames of data taken and not yet written
	inReady     bool
	trailers    []hpack.HeaderField
	headSent    bool
	sentEnd     bool // END_STREAM sent, or sending given up
	sendStopped bool // the response ended first: send no more
	rstQueued   bool // RST_STREAM sent or received
	sendWake    chan struct{}
	closeBody   sync.Once

	// Receiving.
	res                  *http.Response
	size1xx              uint64
	recv                 h2.RecvBuf
	recvWin, recvUnacked int64
	declared, received   int64
	trailer              http.Header
	gotEnd               bool  // END_STREAM received
	endErr               error // returned at the body's end instead of io.EOF
	eofSeen, bodyClosed  bool
	resWake              chan struct{}

	err        error // the stream failed
	done       bool  // out of the connection's books
	stopCancel func() bool
}

var errBodyClosed = errors.New("h2client: read on a closed response body")

// roundTrip sends req on c, on the stream slot reserved for it, and waits
// for its response head.
func (c *conn) roundTrip(req *http.Request, fields []hpack.HeaderField, noBody bool) (*http.Response, error) {
	s := &stream{c: c, req: req, head: fields, endOnHead: noBody, isHead: req.Method == http.MethodHead,
		declared: -1, resWake: make(chan struct{}, 1)}
	if !noBody {
		s.sendWake = make(chan struct{}, 1)
	}
	ctx := req.Context()
	c.mu.Lock()
	if ctx.Done() != nil {
		// Under c.mu: a context already done runs the func at once, in a
		// goroutine of its own, which reads stopCancel under c.mu too.
		s.stopCancel = context.AfterFunc(ctx, func() { s.cancel(context.Cause(ctx)) })
	}
	if c.err != nil {
		err := fmt.Errorf("%w: %w", ErrUnprocessed, c.err)
		s.finishLocked()
		c.mu.Unlock()
		closeBody(req)
		return nil, err
	}
	if size := listSize(fields); size > uint64(c.peer.maxList) {
		s.finishLocked()
		c.mu.Unlock()
		closeBody(req)
		return nil, fmt.Errorf("h2client: request head of %d bytes over the server's limit of %d", size, c.peer.maxList)
	}
	s.sendWin, s.recvWin = c.peer.initWindow, int64(c.cl.cfg.StreamWindow)
	c.heads = append(c.heads, headItem{s: s})
	c.signal()
	c.mu.Unlock()
	if !noBody {
		go s.pump()
	}

	c.mu.Lock()
	for s.res == nil && s.err == nil {
		c.mu.Unlock()
		<-s.resWake
		c.mu.Lock()
	}
	res, err := s.res, s.err
	c.mu.Unlock()
	if res == nil {
		return nil, err
	}
	return res, nil
}

// cancel ends the stream because its request's context ended.
func (s *stream) cancel(cause error) {
	s.c.mu.Lock()
	s.resetLocked(http2.ErrCodeCancel, cause)
	s.c.mu.Unlock()
}

// resetLocked ends the stream with err and tells the server so.
func (s *stream) resetLocked(code http2.ErrCode, err error) {
	if s.done {
		return
	}
	if s.id != 0 && !s.rstQueued {
		s.rstQueued = true
		s.c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: s.id, Val: uint32(code)})
	}
	s.failLocked(err)
}

// failLocked ends the stream with err. A response already whole stays
// readable; anything else its reader gets err.
func (s *stream) failLocked(err error) {
	if s.done {
		return
	}
	if !s.gotEnd {
		s.err = err
		if n := s.recv.Len(); n > 0 {
			s.recv.Free()
			s.c.creditConn(int64(n))
		}
	}
	s.sentEnd = true
	s.finishLocked()
	if s.sendWake != nil && !s.endOnHead {
		// A copier blocked reading the body is unblocked by closing it, as
		// net/http does.
		go s.closeReqBody()
	}
}

// closeReqBody closes the request's body once.
func (s *stream) closeReqBody() {
	s.closeBody.Do(func() {
		if s.req.Body != nil {
			_ = s.req.Body.Close()
		}
	})
}

// finishLocked takes the stream out of the connection's books.
func (s *stream) finishLocked() {
	if s.done {
		return
	}
	c := s.c
	s.done = true
	if s.id != 0 {
		delete(c.streams, s.id)
		c.open--
		if len(c.heads) > 0 {
			c.signal()
		}
	}
	c.reserved--
	if c.reserved == 0 {
		c.idleSince = time.Now()
		if c.goAway {
			c.failLocked(errors.New("h2client: connection drained after GOAWAY"))
		}
	}
	if s.stopCancel != nil {
		s.stopCancel()
	}
	s.wakeReader()
	s.wakeSender()
}

// maybeFinish finishes the stream once both directions are over.
func (s *stream) maybeFinish() {
	if !s.done && s.sentEnd && s.writing == 0 && s.gotEnd && (s.eofSeen || s.bodyClosed) {
		s.finishLocked()
	}
}

func (s *stream) wakeReader() {
	select {
	case s.resWake <- struct{}{}:
	default:
	}
}

func (s *stream) wakeSender() {
	if s.sendWake == nil {
		return
	}
	select {
	case s.sendWake <- struct{}{}:
	default:
	}
}

// requeueLocked puts the stream back in the writer's turn when it has DATA
// to send and the window for it.
func (s *stream) requeueLocked() {
	if s.inReady || s.done || s.sentEnd {
		return
	}
	if (s.off < len(s.data) && s.sendWin > 0) || (s.dataEnd && s.off == len(s.data)) {
		s.inReady = true
		s.c.ready = append(s.c.ready, s)
		s.c.signal()
	}
}

// onReset handles the server's RST_STREAM.
func (s *stream) onReset(code http2.ErrCode) {
	s.rstQueued = true // never answer a reset with one
	switch {
	case code == http2.ErrCodeNo && s.gotEnd:
		s.stopSending() // the whole response came: the rest of the body is not wanted
		s.maybeFinish()
	case code == http2.ErrCodeRefusedStream:
		s.failLocked(fmt.Errorf("%w: the server refused the stream", ErrUnprocessed))
	default:
		s.failLocked(fmt.Errorf("h2client: the server reset the stream: %w", http2.StreamError{StreamID: s.id, Code: code}))
	}
}

// onEnd notes the response's END_STREAM.
func (s *stream) onEnd() {
	s.gotEnd = true
	if s.declared >= 0 && s.received != s.declared {
		s.endErr = fmt.Errorf("h2client: response body of %d bytes where Content-Length said %d: %w", s.received, s.declared, io.ErrUnexpectedEOF)
	}
	if !s.sentEnd {
		s.stopSending()
		if s.id != 0 && !s.rstQueued {
			s.rstQueued = true
			s.c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: s.id, Val: uint32(http2.ErrCodeCancel)})
		}
	}
	s.maybeFinish()
}

// stopSending gives up sending the request's body.
func (s *stream) stopSending() {
	if !s.sentEnd {
		s.sendStopped, s.sentEnd = true, true
		s.wakeSender()
		if !s.endOnHead {
			go s.closeReqBody() // unblocks a copier waiting for the body
		}
	}
}

// credit gives n bytes read (or not to be read) back to the stream's
// window, with a WINDOW_UPDATE once a quarter of it is due.
func (s *stream) credit(n int64) {
	s.recvWin += n
	s.recvUnacked += n
	if !s.gotEnd && s.recvUnacked >= int64(s.c.cl.cfg.StreamWindow)/4 {
		s.c.queueCtrl(h2.Ctrl{Type: http2.FrameWindowUpdate, Stream: s.id, Val: uint32(s.recvUnacked)})
		s.recvUnacked = 0
	}
}

// creditConn gives n bytes back to the connection's window.
func (c *conn) creditConn(n int64) { c.refund(n) }

// pump copies the request's body to the stream, a chunk at a time, each
// sent before the next is read, and then its trailers.
func (s *stream) pump() {
	c, req := s.c, s.req
	bufp := h2.GetBuf()
	buf := (*bufp)[:maxData]
	defer func() {
		h2.PutBuf(bufp)
		s.closeReqBody()
	}()
	want := req.ContentLength
	var sent int64
	for {
		n, rerr := req.Body.Read(buf)
		sent += int64(n)
		eof := errors.Is(rerr, io.EOF)
		switch {
		case want > 0 && sent > want:
			rerr, eof = fmt.Errorf("h2client: request body longer than its ContentLength of %d", want), false
		case eof && want > 0 && sent < want:
			rerr, eof = fmt.Errorf("h2client: request body of %d bytes where its ContentLength said %d: %w", sent, want, io.ErrUnexpectedEOF), false
		}
		c.mu.Lock()
		if rerr != nil && !eof {
			s.resetLocked(http2.ErrCodeCancel, fmt.Errorf("h2client: reading the request body: %w", rerr))
		}
		if s.sentEnd {
			c.mu.Unlock()
			return
		}
		trailers := eof && len(req.Trailer) > 0
		s.data, s.off, s.dataEnd = buf[:n], 0, eof && !trailers
		s.requeueLocked()
		for !s.sentEnd && (s.off < len(s.data) || s.writing > 0) {
			c.mu.Unlock()
			<-s.sendWake
			c.mu.Lock()
		}
		for s.writing > 0 { // the writer may still read buf
			c.mu.Unlock()
			<-s.sendWake
			c.mu.Lock()
		}
		s.data, s.off = nil, 0
		if trailers && !s.sentEnd {
			fields, err := trailerFields(req.Trailer)
			if err != nil {
				s.resetLocked(http2.ErrCodeInternal, err)
			} else {
				s.trailers = fields
				c.heads = append(c.heads, headItem{s: s, trailers: true})
				c.signal()
			}
		}
		stop := eof || s.sentEnd
		c.mu.Unlock()
		if stop {
			return
		}
	}
}
