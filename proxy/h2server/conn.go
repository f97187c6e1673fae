package h2server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/proxy/h2"
)

// conn is one client connection.
type conn struct {
	srv    *Server
	nc     net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	remote string
	fr     *http2.Framer
	out    h2.OutBuf

	// Writer only.
	henc *hpack.Encoder
	hbuf bytes.Buffer

	wake chan struct{} // cap 1: something to write
	done chan struct{} // closed when the connection ends

	// mu guards everything below.
	mu        sync.Mutex
	streams   map[uint32]*stream
	maxPeerID uint32
	ctrl      []h2.Ctrl
	heads     []headItem
	ready     []*stream
	sendConn  int64
	// recvConn is what the client may still send on the connection;
	// recvUnacked is what was consumed and not yet given back.
	recvConn, recvUnacked int64
	peer                  struct {
		initWindow   int64
		tableSize    uint32
		tableChanged bool
	}
	settingsAcked bool // the client acknowledged our SETTINGS
	goingAway     bool // GOAWAY queued: no new streams
	goAwayID      uint32
	closeWhenDone bool // close once the writer has flushed and no stream is left
	lingering     bool // GOAWAY written; the reader closes the connection (see linger)
	err           error
	closed        bool
	idleSince     time.Time
	idleTimer     *time.Timer
}

// headKind is what a queued HEADERS frame carries.
type headKind uint8

const (
	headFinal headKind = iota // the response's head
	headInfo                  // a 1xx response
	headTrailers
)

type headItem struct {
	s      *stream
	kind   headKind
	fields []hpack.HeaderField
	end    bool
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// queueCtrl queues a control frame. The caller holds c.mu.
func (c *conn) queueCtrl(f h2.Ctrl) {
	if len(c.ctrl) >= maxCtrl {
		c.srv.cfg.CountError("ctrl_flood")
		c.failLocked(errors.New("h2server: the client sends control frames faster than it reads ours"))
		return
	}
	c.ctrl = append(c.ctrl, f)
	c.signal()
}

// readLoop reads and dispatches the client's frames until the connection
// ends, and returns why.
func (c *conn) readLoop() error {
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.srv.cfg.CountError("stream_" + se.Code.String())
				c.mu.Lock()
				c.resetStream(se.StreamID, se.Code)
				c.mu.Unlock()
				continue
			}
			var ce http2.ConnectionError
			if errors.As(err, &ce) {
				c.srv.cfg.CountError("conn_" + http2.ErrCode(ce).String())
				c.goAway(http2.ErrCode(ce), err)
				c.waitClosed(false)
			}
			return err
		}
		if first {
			first = false
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				c.srv.cfg.CountError("first_frame")
				err := errors.New("h2server: the client's first frame is not SETTINGS")
				c.goAway(http2.ErrCodeProtocol, err)
				c.waitClosed(true)
				return err
			}
			c.mu.Lock()
			if !c.lingering { // the deadline is the linger's now
				_ = c.nc.SetReadDeadline(time.Time{})
			}
			c.mu.Unlock()
		}
		code, err, failed := c.handle(f)
		if err != nil {
			c.goAway(code, err)
			c.waitClosed(true)
			return err
		}
		if failed != nil {
			return failed
		}
	}
}

// handle dispatches one frame under c.mu. A panic (a defect here, which a
// peer's frames reached) ends this connection only, not the process.
func (c *conn) handle(f http2.Frame) (code http2.ErrCode, err, failed error) {
	c.mu.Lock()
	defer func() {
		if p := recover(); p != nil {
			c.srv.cfg.Log.Error("h2server: panic handling a frame; closing the connection", "panic", p, "stack", string(debug.Stack()))
			c.failLocked(fmt.Errorf("h2server: panic handling a frame: %v", p))
			failed = c.err
		}
		c.mu.Unlock()
	}()
	if c.err == nil {
		code, err = c.dispatch(f)
	}
	return code, err, c.err
}

// waitClosed leaves time for a connection error's GOAWAY to reach the
// client before the connection is closed, GoAwayTimeout at most: closing
// at once, with the client's bytes unread, resets the connection and can
// lose the GOAWAY (golang.org/issue/18701). With drain, what the client
// sends meanwhile is read and dropped (up to maxDrain; beyond, it waits
// unread), so that the close finds nothing unread. Without (the framing
// itself failed, e.g. a CONTINUATION flood), nothing more is read, as
// net/http's server does: a flooding client fills the socket's buffers
// and stalls. The wait ends early when the connection closes.
func (c *conn) waitClosed(drain bool) {
	deadline := time.Now().Add(c.srv.cfg.GoAwayTimeout)
	c.mu.Lock()
	c.lingering = true
	_ = c.nc.SetReadDeadline(deadline)
	c.mu.Unlock()
	if drain {
		if _, err := io.CopyN(io.Discard, c.nc, maxDrain); err != nil {
			return // the client closed, or the deadline passed
		}
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
	}
}

// maxDrain bounds what waitClosed reads after a GOAWAY.
const maxDrain = 1 << 20

// linger, once the writer has written the GOAWAY of a connection to
// close, leaves it to the reader, which goes on reading (and dropping what
// new streams come) until the client closes it or GoAwayTimeout passes.
// False when there was no GOAWAY, or the connection is closed already.
func (c *conn) linger() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.goingAway || c.closed {
		return false
	}
	if !c.lingering {
		c.lingering = true
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.GoAwayTimeout))
	}
	return true
}

// dispatch handles one frame; a connection error comes back with its code.
// The caller holds c.mu.
func (c *conn) dispatch(f http2.Frame) (http2.ErrCode, error) {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		if f.IsAck() {
			c.settingsAcked = true
			return 0, nil
		}
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		if f.StreamID > c.maxPeerID {
			c.srv.cfg.CountError("reset_idle_stream")
			return http2.ErrCodeProtocol, errors.New("h2server: RST_STREAM on an idle stream")
		}
		if s := c.streams[f.StreamID]; s != nil {
			s.onReset()
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			c.queueCtrl(h2.Ctrl{Type: http2.FramePing, Data: f.Data, Ack: true})
		}
	case *http2.PushPromiseFrame:
		c.srv.cfg.CountError("push_promise")
		return http2.ErrCodeProtocol, errors.New("h2server: PUSH_PROMISE from a client")
	case *http2.PriorityFrame:
		// Priorities are ignored, but a stream cannot depend on itself
		// (RFC 9113, 5.3.1).
		if f.StreamDep == f.StreamID {
			c.srv.cfg.CountError("priority_on_itself")
			c.resetStream(f.StreamID, http2.ErrCodeProtocol)
		}
	default:
		// GOAWAY (the client opens no more streams: nothing to do) and
		// unknown frame types are ignored.
	}
	return 0, nil
}

// onSettings applies the client's settings and acknowledges them.
func (c *conn) onSettings(f *http2.SettingsFrame) (http2.ErrCode, error) {
	err := f.ForeachSetting(func(st http2.Setting) error {
		if err := st.Valid(); err != nil {
			return err
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(st.Val) - c.peer.initWindow
			c.peer.initWindow = int64(st.Val)
			for _, s := range c.streams {
				s.sendWin += delta
				if s.sendWin > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				s.requeueLocked()
			}
		case http2.SettingHeaderTableSize:
			c.peer.tableSize, c.peer.tableChanged = st.Val, true
		}
		return nil
	})
	if err != nil {
		c.srv.cfg.CountError("settings")
		var ce http2.ConnectionError
		if errors.As(err, &ce) {
			return http2.ErrCode(ce), err
		}
		return http2.ErrCodeProtocol, err
	}
	c.queueCtrl(h2.Ctrl{Type: http2.FrameSettings, Ack: true})
	return 0, nil
}

// onWindowUpdate widens a send window.
func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) (http2.ErrCode, error) {
	if f.StreamID == 0 {
		c.sendConn += int64(f.Increment)
		if c.sendConn > 1<<31-1 {
			c.srv.cfg.CountError("window_overflow")
			return http2.ErrCodeFlowControl, errors.New("h2server: the connection's send window overflowed")
		}
		if len(c.ready) > 0 {
			c.signal()
		}
		return 0, nil
	}
	if f.StreamID > c.maxPeerID {
		c.srv.cfg.CountError("window_idle_stream")
		return http2.ErrCodeProtocol, errors.New("h2server: WINDOW_UPDATE on an idle stream")
	}
	if s := c.streams[f.StreamID]; s != nil {
		s.sendWin += int64(f.Increment)
		if s.sendWin > 1<<31-1 {
			c.resetStream(s.id, http2.ErrCodeFlowControl)
			return 0, nil
		}
		s.requeueLocked()
	}
	return 0, nil
}

// onData takes a DATA frame's payload into its stream's request body.
func (c *conn) onData(f *http2.DataFrame) (http2.ErrCode, error) {
	n := int64(f.Length) // padding included: it counts against the windows
	if n > c.recvConn {
		c.srv.cfg.CountError("data_flow")
		return http2.ErrCodeFlowControl, errors.New("h2server: DATA beyond the connection's window")
	}
	c.recvConn -= n
	s := c.streams[f.StreamID]
	if s == nil || s.recvDone {
		if f.StreamID > c.maxPeerID {
			c.srv.cfg.CountError("data_idle_stream")
			return http2.ErrCodeProtocol, errors.New("h2server: DATA on an idle stream")
		}
		c.refund(n)
		if s != nil && !s.reset {
			c.resetStream(f.StreamID, http2.ErrCodeStreamClosed)
		}
		return 0, nil
	}
	if n > s.recvWin {
		c.srv.cfg.CountError("data_stream_flow")
		c.refund(n)
		c.resetStream(s.id, http2.ErrCodeFlowControl)
		return 0, nil
	}
	s.recvWin -= n
	data := f.Data()
	if pad := n - int64(len(data)); pad > 0 {
		c.refund(pad)
		s.credit(pad)
	}
	s.received += int64(len(data))
	if s.declared >= 0 && s.received > s.declared {
		c.srv.cfg.CountError("data_over_length")
		c.refund(int64(len(data)))
		c.resetStream(s.id, http2.ErrCodeProtocol)
		return 0, nil
	}
	if s.bodyClosed {
		c.refund(int64(len(data)))
	} else {
		s.recv.Write(data)
	}
	if f.StreamEnded() {
		s.onEnd()
	}
	s.wakeBody()
	return 0, nil
}

// refund gives n received bytes that nobody will read back to the
// connection's window. The caller holds c.mu.
func (c *conn) refund(n int64) {
	c.recvConn += n
	c.recvUnacked += n
	if c.recvUnacked >= int64(c.srv.cfg.ConnWindow)/4 {
		c.queueCtrl(h2.Ctrl{Type: http2.FrameWindowUpdate, Val: uint32(c.recvUnacked)})
		c.recvUnacked = 0
	}
}

// resetStream resets stream id with code (if it is still open). The caller
// holds c.mu.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	if s := c.streams[id]; s != nil {
		s.resetLocked(code)
		return
	}
	c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: id, Val: uint32(code)})
}

// goAway queues GOAWAY: the client opens no more streams, those running
// finish, and the connection closes after the last. With cause (a protocol
// error), the connection closes as soon as GOAWAY is written.
func (c *conn) goAway(code http2.ErrCode, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	if !c.goingAway {
		c.goingAway, c.goAwayID = true, c.maxPeerID
		var data [8]byte
		c.ctrl = append(c.ctrl, h2.Ctrl{Type: http2.FrameGoAway, Stream: c.maxPeerID, Val: uint32(code), Data: data})
	}
	if cause != nil {
		c.closeWhenDone = true
		for _, s := range c.streams {
			s.onReset() // their handlers stop; nothing more is sent for them
		}
		c.err = cause
	} else if len(c.streams) == 0 {
		c.closeWhenDone = true
	}
	c.signal()
}

// failLocked ends the connection at once. The caller holds c.mu.
func (c *conn) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	for _, s := range c.streams {
		s.onReset()
	}
	c.heads, c.ready, c.ctrl = nil, nil, nil
	c.closeWhenDone = true
	c.signal()
}

// close ends the connection and releases what it holds.
func (c *conn) close(err error) {
	c.mu.Lock()
	if err == nil {
		err = errors.New("h2server: connection closed")
	}
	c.failLocked(err)
	first := !c.closed
	if first {
		c.closed = true
		close(c.done)
	}
	c.mu.Unlock()
	if !first {
		return
	}
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.cancel()
	_ = c.nc.Close()
}

// idleCheck sends GOAWAY after IdleTimeout without streams.
func (c *conn) idleCheck() {
	timeout := c.srv.cfg.IdleTimeout
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if len(c.streams) > 0 {
		c.idleTimer.Reset(timeout)
		c.mu.Unlock()
		return
	}
	if left := timeout - time.Since(c.idleSince); left > 0 {
		c.idleTimer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.goAway(http2.ErrCodeNo, nil)
}
