package h2client

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshctl/meshctl/proxy/h2"
)

const (
	preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	// initialWindow is RFC 9113's window before SETTINGS say otherwise.
	initialWindow = 65535
	// maxData is the largest DATA payload sent: with its 9-byte header, a
	// frame fills one 16 KiB TLS record.
	maxData = 16384 - 9
	// initialMaxStreams is assumed of a server until its SETTINGS arrive.
	initialMaxStreams = 100
	// maxCtrl bounds the control frames queued for the writer (answers to
	// the server's PINGs and SETTINGS): a server that floods them while
	// not reading ours is cut off.
	maxCtrl = 1000
)

// conn is one HTTP/2 connection to a server.
type conn struct {
	cl  *Client
	key string
	nc  net.Conn
	fr  *http2.Framer
	out h2.OutBuf

	// Writer only.
	henc *hpack.Encoder
	hbuf bytes.Buffer

	wake chan struct{} // cap 1: something to write
	done chan struct{} // closed when the connection fails or closes

	lastRead atomic.Int64 // unix nanoseconds of the last frame read

	// mu guards everything below.
	mu       sync.Mutex
	streams  map[uint32]*stream // by id, once their head is taken by the writer
	nextID   uint32
	reserved int // streams given a slot and not finished
	open     int // streams whose head was taken and that are not finished
	ctrl     []h2.Ctrl
	heads    []headItem
	ready    []*stream // streams with DATA to send and window, in turn
	sendConn int64     // the connection's send window
	// recvConn is what the server may still send on the connection;
	// recvUnacked is what was consumed and not yet given back.
	recvConn, recvUnacked int64
	peer                  struct {
		maxStreams   uint32
		initWindow   int64
		maxList      uint32
		tableSize    uint32
		tableChanged bool
	}
	goAway    bool // no new streams
	gotFrame  bool // the server's first frame was read
	err       error
	closed    bool
	idleSince time.Time
	idleTimer *time.Timer
	health    *time.Timer
	pingOut   bool
	pingSent  time.Time
	pingData  [8]byte
}

// headItem is a HEADERS frame queued for the writer: a request's head, or
// its trailers.
type headItem struct {
	s        *stream
	trailers bool
}

// newConn starts the HTTP/2 connection over nc: it writes the preface and
// the client's settings, and starts the reader and the writer.
func newConn(cl *Client, key string, nc net.Conn) (*conn, error) {
	cfg := &cl.cfg
	c := &conn{cl: cl, key: key, nc: nc, wake: make(chan struct{}, 1), done: make(chan struct{}),
		streams: map[uint32]*stream{}, nextID: 1, sendConn: initialWindow,
		recvConn: int64(cfg.ConnWindow)}
	c.out.Conn, c.out.Timeout = nc, cfg.WriteTimeout
	c.fr = http2.NewFramer(&c.out, nc)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.MaxHeaderListSize = cfg.MaxHeaderListSize
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.peer.maxStreams, c.peer.initWindow, c.peer.maxList = initialMaxStreams, initialWindow, ^uint32(0)
	c.lastRead.Store(time.Now().UnixNano())

	_, _ = c.out.Write([]byte(preface))
	err := c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: cfg.StreamWindow},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: cfg.MaxHeaderListSize},
	)
	if err == nil && cfg.ConnWindow > initialWindow {
		err = c.fr.WriteWindowUpdate(0, cfg.ConnWindow-initialWindow)
	}
	if err == nil {
		err = c.out.Flush()
	}
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("h2client: starting the connection: %w", err)
	}
	c.idleSince = time.Now()
	c.idleTimer = time.AfterFunc(cfg.IdleConnTimeout, c.idleCheck)
	c.health = time.AfterFunc(cfg.SendPingTimeout, c.healthCheck)
	go c.readLoop()
	go c.writeLoop()
	return c, nil
}

// reserve takes a stream slot, if the connection takes new streams and has
// one free. The caller holds the client's lock.
func (c *conn) reserve() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || c.goAway || c.reserved >= int(c.peer.maxStreams) || c.nextID > 1<<31-2*uint32(c.reserved+1) {
		return false
	}
	c.reserved++
	return true
}

// signal wakes the writer. The caller holds c.mu or not.
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// queueCtrl queues a control frame. The caller holds c.mu.
func (c *conn) queueCtrl(f h2.Ctrl) {
	if len(c.ctrl) >= maxCtrl {
		c.failLocked(errors.New("h2client: the server sends control frames faster than it reads ours"))
		return
	}
	c.ctrl = append(c.ctrl, f)
	c.signal()
}

// readLoop reads and dispatches the server's frames until the connection
// fails.
func (c *conn) readLoop() {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.mu.Lock()
				if s := c.streams[se.StreamID]; s != nil {
					s.resetLocked(se.Code, fmt.Errorf("h2client: stream error from the server's frames: %w", se))
				}
				c.mu.Unlock()
				continue
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			c.close(fmt.Errorf("h2client: reading from the server: %w", err))
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		if failed := c.handle(f); failed != nil {
			c.close(failed)
			return
		}
	}
}

// handle dispatches one frame under c.mu, and returns the connection's
// error if it failed. A panic (a defect here, which a peer's frames
// reached) ends this connection only, not the process.
func (c *conn) handle(f http2.Frame) (failed error) {
	c.mu.Lock()
	defer func() {
		if p := recover(); p != nil {
			c.failLocked(fmt.Errorf("h2client: panic handling a frame: %v", p))
		}
		failed = c.err
		c.mu.Unlock()
	}()
	if !c.gotFrame {
		c.gotFrame = true
		if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
			c.failLocked(errors.New("h2client: the server's first frame is not SETTINGS"))
		}
	}
	if c.err == nil {
		if err := c.dispatch(f); err != nil {
			c.failLocked(err)
		}
	}
	return c.err
}

// dispatch handles one frame. The caller holds c.mu.
func (c *conn) dispatch(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.MetaHeadersFrame:
		return c.onHeaders(f)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		if s := c.streams[f.StreamID]; s != nil {
			s.onReset(f.ErrCode)
		} else if f.StreamID >= c.nextID {
			return fmt.Errorf("h2client: RST_STREAM for idle stream %d", f.StreamID)
		}
	case *http2.PingFrame:
		if f.IsAck() {
			if c.pingOut && f.Data == c.pingData {
				c.pingOut = false
			}
			return nil
		}
		c.queueCtrl(h2.Ctrl{Type: http2.FramePing, Data: f.Data, Ack: true})
	case *http2.GoAwayFrame:
		c.onGoAway(f.LastStreamID, f.ErrCode)
	case *http2.PushPromiseFrame:
		return errors.New("h2client: PUSH_PROMISE, though push is disabled")
	default:
		// Unknown frame types are ignored (RFC 9113 §4.1).
	}
	return nil
}

// onSettings applies the server's settings and acknowledges them.
func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingMaxConcurrentStreams:
			c.peer.maxStreams = s.Val
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.peer.initWindow
			c.peer.initWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWin += delta
				if st.sendWin > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				st.requeueLocked()
			}
		case http2.SettingMaxHeaderListSize:
			c.peer.maxList = s.Val
		case http2.SettingHeaderTableSize:
			c.peer.tableSize, c.peer.tableChanged = s.Val, true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("h2client: the server's SETTINGS: %w", err)
	}
	c.queueCtrl(h2.Ctrl{Type: http2.FrameSettings, Ack: true})
	return nil
}

// onWindowUpdate widens a send window.
func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	if f.StreamID == 0 {
		c.sendConn += int64(f.Increment)
		if c.sendConn > 1<<31-1 {
			return errors.New("h2client: the server's connection window overflowed")
		}
		if len(c.ready) > 0 {
			c.signal()
		}
		return nil
	}
	s := c.streams[f.StreamID]
	if s == nil {
		return nil
	}
	s.sendWin += int64(f.Increment)
	if s.sendWin > 1<<31-1 {
		s.resetLocked(http2.ErrCodeFlowControl, errors.New("h2client: a stream's send window overflowed"))
		return nil
	}
	s.requeueLocked()
	return nil
}

// onGoAway stops new streams; those the server will not process fail as
// unprocessed.
func (c *conn) onGoAway(lastID uint32, code http2.ErrCode) {
	c.goAway = true
	go c.cl.remove(c)
	for id, s := range c.streams {
		if id > lastID {
			s.failLocked(fmt.Errorf("%w: above the last stream (%d) of the server's GOAWAY (%v)", ErrUnprocessed, lastID, code))
		}
	}
	for _, h := range c.heads {
		if !h.trailers && h.s.id == 0 {
			h.s.failLocked(fmt.Errorf("%w: the server sent GOAWAY (%v)", ErrUnprocessed, code))
		}
	}
	if c.reserved == 0 {
		c.failLocked(errors.New("h2client: the server sent GOAWAY"))
	}
}

// onData takes a DATA frame's payload into its stream's buffer.
func (c *conn) onData(f *http2.DataFrame) error {
	n := int64(f.Length) // padding included: it counts against the windows
	if n > c.recvConn {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvConn -= n
	s := c.streams[f.StreamID]
	if s == nil {
		if f.StreamID >= c.nextID {
			return fmt.Errorf("h2client: DATA on idle stream %d", f.StreamID)
		}
		c.refund(n) // a stream that ended or was reset meanwhile
		return nil
	}
	if s.res == nil || s.gotEnd {
		s.resetLocked(http2.ErrCodeProtocol, errors.New("h2client: DATA before the response head or after the stream's end"))
		c.refund(n)
		return nil
	}
	data := f.Data()
	if n > s.recvWin {
		s.resetLocked(http2.ErrCodeFlowControl, errors.New("h2client: the server sent beyond the stream's window"))
		c.refund(n)
		return nil
	}
	s.recvWin -= n
	if pad := n - int64(len(data)); pad > 0 {
		c.refund(pad)
		s.credit(pad)
	}
	s.received += int64(len(data))
	if s.declared >= 0 && s.received > s.declared {
		c.refund(int64(len(data)))
		s.resetLocked(http2.ErrCodeProtocol, errors.New("h2client: the response body is longer than its Content-Length"))
		return nil
	}
	if s.bodyClosed {
		c.refund(int64(len(data)))
	} else {
		s.recv.Write(data)
	}
	if f.StreamEnded() {
		s.onEnd()
	}
	s.wakeReader()
	return nil
}

// refund gives n received bytes that nobody will read back to the
// connection's window. The caller holds c.mu.
func (c *conn) refund(n int64) {
	c.recvConn += n
	c.recvUnacked += n
	if c.recvUnacked >= int64(c.cl.cfg.ConnWindow)/4 {
		c.queueCtrl(h2.Ctrl{Type: http2.FrameWindowUpdate, Val: uint32(c.recvUnacked)})
		c.recvUnacked = 0
	}
}

// failLocked ends the connection with err: every stream fails with it
// (those never written as unprocessed). The caller holds c.mu and calls
// close afterwards.
func (c *conn) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	for _, s := range c.streams {
		s.failLocked(err)
	}
	for _, h := range c.heads {
		if !c.gotFrame {
			// The server never spoke: the connection was not made (its TLS
			// handshake refused by the server, typically).
			h.s.failLocked(fmt.Errorf("%w: %w", ErrNotConnected, err))
		} else if h.s.id == 0 {
			h.s.failLocked(fmt.Errorf("%w: %w", ErrUnprocessed, err))
		} else {
			h.s.failLocked(err)
		}
	}
	c.heads, c.ready, c.ctrl = nil, nil, nil
	c.signal() // the writer closes the connection
}

// close ends the connection (with err, if it has not failed already) and
// releases what it holds. The caller does not hold c.mu.
func (c *conn) close(err error) {
	c.mu.Lock()
	if err == nil {
		err = errors.New("h2client: connection closed")
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
	c.idleTimer.Stop()
	c.health.Stop()
	_ = c.nc.Close()
	c.cl.remove(c)
}

// closeIfIdle closes the connection if it has no stream.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	if c.reserved == 0 {
		c.failLocked(errors.New("h2client: connection closed while idle"))
	}
	c.mu.Unlock()
}

// idleCheck closes the connection after IdleConnTimeout without streams.
func (c *conn) idleCheck() {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if c.reserved > 0 {
		c.idleTimer.Reset(c.cl.cfg.IdleConnTimeout)
		c.mu.Unlock()
		return
	}
	if left := c.cl.cfg.IdleConnTimeout - time.Since(c.idleSince); left > 0 {
		c.idleTimer.Reset(left)
		c.mu.Unlock()
		return
	}
	c.failLocked(errors.New("h2client: connection idle"))
	c.mu.Unlock()
}

// healthCheck pings a connection that read nothing for SendPingTimeout, and
// closes it when the answer does not come within PingTimeout.
func (c *conn) healthCheck() {
	cfg := &c.cl.cfg
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if c.pingOut {
		if waited := time.Since(c.pingSent); waited >= cfg.PingTimeout {
			c.failLocked(fmt.Errorf("h2client: no answer to a PING in %v", cfg.PingTimeout))
		} else {
			c.health.Reset(cfg.PingTimeout - waited)
		}
		c.mu.Unlock()
		return
	}
	quiet := time.Since(time.Unix(0, c.lastRead.Load()))
	if quiet < cfg.SendPingTimeout {
		c.health.Reset(cfg.SendPingTimeout - quiet)
		c.mu.Unlock()
		return
	}
	_, _ = rand.Read(c.pingData[:])
	c.pingOut, c.pingSent = true, time.Now()
	c.queueCtrl(h2.Ctrl{Type: http2.FramePing, Data: c.pingData})
	c.health.Reset(cfg.PingTimeout)
	c.mu.Unlock()
}
