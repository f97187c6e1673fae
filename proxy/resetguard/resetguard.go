package resetguard

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Frame types and the error code this package reads and writes (RFC 9113).
const (
	frameHeaders   = 0x1
	frameRSTStream = 0x3
	frameGoAway    = 0x7

	errCodeEnhanceYourCalm = 0xb

	headerLen = 9
)

// preface is what an HTTP/2 client sends before its first frame.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// ErrTooManyResets is what the server reads once the client was told to
// calm down: the connection is over.
var ErrTooManyResets = errors.New("resetguard: too many streams reset before their response (rapid reset)")

// Config sets the limits. The zero value takes the defaults.
type Config struct {
	// MinResets is the burst of premature resets a connection may make at
	// once (a client cancelling a batch of calls). Default: 100.
	MinResets int
	// ResetsPerSecond is the rate of premature resets a connection may keep
	// up; beyond the burst and this rate it is told to calm down.
	// Default: 50.
	ResetsPerSecond float64
	// Premature is how young a stream must be, when the client resets it
	// before its response started, to count: streams reset after waiting
	// longer (a deadline that passed on a slow server) cost the client as
	// much as the server. Default: 1s.
	Premature time.Duration
	// MaxPending bounds the client's streams that have neither an answer
	// started nor a reset (the server refuses what is beyond its stream
	// limit, so a well-behaved client never comes near). Default: 1000.
	MaxPending int
	// CloseAfter is how long the connection stays open after the GOAWAY is
	// due, for it to be written. Default: 1s.
	CloseAfter time.Duration
	// OnTrip is called once when a connection is told to calm down, with
	// its counts; nil: nothing.
	OnTrip func(streams, resets int)
}

// Conn is a server-side HTTP/2 connection watched for premature resets. Its
// Read is called by one goroutine at a time (the server's frame reader), its
// Write by one at a time too (the server's writer); they may run at once.
type Conn struct {
	net.Conn
	cfg Config

	// Read side, touched only by the reader.
	in      frameScanner
	skip    int // preface bytes still to skip
	streams int
	resets  int
	maxID   uint32
	// budget lets premature resets through in bursts of MinResets at
	// ResetsPerSecond: judged over time, not over the connection's life, so
	// answered streams cannot bank an allowance for a later flood.
	budget *rate.Limiter

	// tripped is set once the client is to be told to calm down: reads fail
	// from then on, and the GOAWAY goes out at the next frame boundary.
	tripped atomic.Bool
	lastID  atomic.Uint32 // the GOAWAY's last stream

	// mu guards pending, the client's streams with neither a response
	// started nor a reset (and when each opened), and closer.
	mu      sync.Mutex
	pending map[uint32]time.Time
	closer  *time.Timer

	// wmu serializes writes, and guards the write side's position and
	// whether the GOAWAY was written (after it, writes are dropped).
	wmu      sync.Mutex
	out      frameScanner
	goneAway bool
}

// New wraps c, a server's connection whose first bytes read will be the
// client's preface.
func New(c net.Conn, cfg Config) *Conn {
	if cfg.MinResets <= 0 {
		cfg.MinResets = 100
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 1000
	}
	if cfg.CloseAfter <= 0 {
		cfg.CloseAfter = time.Second
	}
	if cfg.ResetsPerSecond <= 0 {
		cfg.ResetsPerSecond = 50
	}
	if cfg.Premature <= 0 {
		cfg.Premature = time.Second
	}
	return &Conn{Conn: c, cfg: cfg, skip: len(preface), pending: map[uint32]time.Time{},
		budget: rate.NewLimiter(rate.Limit(cfg.ResetsPerSecond), cfg.MinResets)}
}

// Read passes the client's bytes to the server, counting the streams they
// open and reset; once the client is over the limit it returns
// ErrTooManyResets.
func (c *Conn) Read(b []byte) (int, error) {
	if c.tripped.Load() {
		return 0, ErrTooManyResets
	}
	n, err := c.Conn.Read(b)
	data := b[:n]
	if c.skip > 0 {
		k := min(c.skip, len(data))
		c.skip -= k
		data = data[k:]
	}
	c.in.feed(data, c.clientFrame)
	if c.tripped.Load() {
		c.goAwayIfIdle()
	}
	return n, err
}

// clientFrame judges each frame header the client sends.
func (c *Conn) clientFrame(typ byte, stream uint32) {
	switch typ {
	case frameHeaders:
		if stream <= c.maxID {
			return // trailers of a stream it has
		}
		c.maxID = stream
		c.streams++
		c.mu.Lock()
		c.pending[stream] = time.Now()
		tooMany := len(c.pending) > c.cfg.MaxPending
		c.mu.Unlock()
		if tooMany {
			c.trip()
		}
	case frameRSTStream:
		now := time.Now()
		c.mu.Lock()
		opened, waiting := c.pending[stream]
		delete(c.pending, stream)
		c.mu.Unlock()
		if waiting && now.Sub(opened) < c.cfg.Premature {
			c.resets++
			if !c.budget.AllowN(now, 1) {
				c.trip()
			}
		}
	}
}

// trip decides the client is to be told to calm down (the reader calls it).
func (c *Conn) trip() {
	if c.tripped.Load() {
		return
	}
	c.lastID.Store(c.maxID)
	c.tripped.Store(true)
	if c.cfg.OnTrip != nil {
		c.cfg.OnTrip(c.streams, c.resets)
	}
	// Whatever happens to the GOAWAY, the connection ends soon.
	c.mu.Lock()
	c.closer = time.AfterFunc(c.cfg.CloseAfter, func() { c.Conn.Close() })
	c.mu.Unlock()
}

// goAwayIfIdle writes the GOAWAY now if the server is not writing; else
// its writer does, at the end of the frame it is writing.
func (c *Conn) goAwayIfIdle() {
	if !c.wmu.TryLock() {
		return
	}
	defer c.wmu.Unlock()
	if !c.goneAway && c.out.atBoundary() {
		c.goAwayLocked()
	}
}

// goAwayLocked writes the GOAWAY; the server writes nothing after it.
// Callers hold wmu and are at a frame boundary of the output.
func (c *Conn) goAwayLocked() {
	c.goneAway = true
	var f [headerLen + 8]byte
	putHeader(f[:], 8, frameGoAway, 0)
	binary.BigEndian.PutUint32(f[headerLen:], c.lastID.Load()&0x7fffffff)
	binary.BigEndian.PutUint32(f[headerLen+4:], errCodeEnhanceYourCalm)
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.cfg.CloseAfter))
	_, _ = c.Conn.Write(f[:])
}

// Write passes the server's bytes to the client, noting the streams whose
// response started; once the GOAWAY is due it is written at the first frame
// boundary and nothing after it.
func (c *Conn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.goneAway {
		return len(b), nil // the connection is closing; the server need not know
	}
	if !c.tripped.Load() {
		n, err := c.Conn.Write(b)
		c.out.feed(b[:n], c.serverFrame)
		return n, err
	}
	// Due while a frame was being written: finish it (it may span more
	// writes than this one), then the GOAWAY.
	k := c.out.untilBoundary(b)
	n, err := c.Conn.Write(b[:k])
	c.out.feed(b[:n], nil)
	if err != nil {
		return n, err
	}
	if c.out.atBoundary() {
		c.goAwayLocked()
	}
	return len(b), nil
}

// serverFrame notes the server's response headers and resets.
func (c *Conn) serverFrame(typ byte, stream uint32) {
	if typ == frameHeaders || typ == frameRSTStream {
		c.mu.Lock()
		delete(c.pending, stream)
		c.mu.Unlock()
	}
}

// Close closes the connection and stops the timer of a pending GOAWAY.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closer != nil {
		c.closer.Stop()
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// Tripped reports whether the connection was told to calm down.
func (c *Conn) Tripped() bool { return c.tripped.Load() }

func putHeader(b []byte, length int, typ byte, stream uint32) {
	b[0], b[1], b[2] = byte(length>>16), byte(length>>8), byte(length)
	b[3], b[4] = typ, 0
	binary.BigEndian.PutUint32(b[5:], stream&0x7fffffff)
}

// frameScanner follows a stream of HTTP/2 frames fed to it in pieces of any
// size, calling back with each frame's type and stream as its header
// completes.
type frameScanner struct {
	hdr  [headerLen]byte
	have int // header bytes gathered
	left int // payload bytes of the current frame still to come
}

func (s *frameScanner) atBoundary() bool { return s.have == 0 && s.left == 0 }

// untilBoundary returns how many bytes of b finish the frame in progress
// (all of b when it ends inside it).
func (s *frameScanner) untilBoundary(b []byte) int {
	if s.atBoundary() {
		return 0
	}
	t := *s
	k := 0
	for k < len(b) && !t.atBoundary() {
		if t.left > 0 {
			m := min(t.left, len(b)-k)
			t.left -= m
			k += m
			continue
		}
		t.hdr[t.have] = b[k]
		t.have++
		k++
		if t.have == headerLen {
			t.left = int(t.hdr[0])<<16 | int(t.hdr[1])<<8 | int(t.hdr[2])
			t.have = 0
		}
	}
	return k
}

func (s *frameScanner) feed(b []byte, frame func(typ byte, stream uint32)) {
	for len(b) > 0 {
		if s.left > 0 {
			m := min(s.left, len(b))
			s.left -= m
			b = b[m:]
			continue
		}
		m := copy(s.hdr[s.have:], b)
		s.have += m
		b = b[m:]
		if s.have < headerLen {
			return
		}
		s.have = 0
		s.left = int(s.hdr[0])<<16 | int(s.hdr[1])<<8 | int(s.hdr[2])
		if frame != nil {
			frame(s.hdr[3], binary.BigEndian.Uint32(s.hdr[5:])&0x7fffffff)
		}
	}
}
