package h2client

import (
	"runtime"

	"golang.org/x/net/http2"

	"github.com/meshctl/meshctl/proxy/h2"
)

// batch is what one pass of the writer takes from the queues.
type batch struct {
	ctrl  []h2.Ctrl
	heads []headItem
	data  []dataItem
	// tableSize is a new HPACK table size limit to apply first, if
	// tableChanged.
	tableSize    uint32
	tableChanged bool
	maxList      uint32
}

// dataItem is one DATA frame to write.
type dataItem struct {
	s   *stream
	p   []byte
	end bool
}

// writeLoop writes what producers queue, as few times as it can: every
// frame queued by the time it runs goes out in one buffered write.
func (c *conn) writeLoop() {
	var b batch
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		if !c.cl.cfg.NoYield {
			// Let the goroutines that the same network poll made runnable
			// queue their frames first, so one write carries them all.
			runtime.Gosched()
		}
		wrote := false
		for {
			c.mu.Lock()
			if c.err != nil {
				err := c.err
				c.mu.Unlock()
				c.close(err)
				return
			}
			if !c.take(&b) {
				c.mu.Unlock()
				break
			}
			c.mu.Unlock()
			err := c.encode(&b)
			c.mu.Lock()
			c.complete(&b)
			if err != nil {
				c.failLocked(err)
			}
			c.mu.Unlock()
			wrote = true
		}
		if wrote {
			if err := c.out.Flush(); err != nil {
				c.close(err)
				return
			}
		}
	}
}

// take moves what is queued into b: every control frame, every head whose
// stream may open, and one DATA frame of each stream ready to send. It
// reports whether there is anything to write. The caller holds c.mu.
func (c *conn) take(b *batch) bool {
	b.ctrl = append(b.ctrl[:0], c.ctrl...)
	clear(c.ctrl)
	c.ctrl = c.ctrl[:0]
	b.tableSize, b.tableChanged, b.maxList = c.peer.tableSize, c.peer.tableChanged, c.peer.maxList
	c.peer.tableChanged = false

	b.heads = b.heads[:0]
	keep := c.heads[:0]
	for _, h := range c.heads {
		s := h.s
		switch {
		case s.done:
			continue // cancelled before it was written
		case h.trailers:
		case !c.gotFrame || c.open >= int(c.peer.maxStreams):
			// Waits for the server's SETTINGS (its stream limit), or for
			// one of its streams to end.
			keep = append(keep, h)
			continue
		default:
			s.id = c.nextID
			c.nextID += 2
			s.sendWin = c.peer.initWindow // the server's SETTINGS may have come since it was queued
			c.streams[s.id] = s
			c.open++
		}
		b.heads = append(b.heads, h)
	}
	clear(c.heads[len(keep):])
	c.heads = keep

	b.data = b.data[:0]
	ready := c.ready[:0]
	for i, s := range c.ready {
		if s.done {
			s.inReady = false
			continue
		}
		if s.id == 0 {
			ready = append(ready, s) // its head waits for a free stream
			continue
		}
		n := int64(len(s.data) - s.off)
		n = min(n, maxData, s.sendWin, c.sendConn)
		if n < 0 {
			n = 0
		}
		end := s.dataEnd && s.off+int(n) == len(s.data)
		if n == 0 && !end {
			if c.sendConn <= 0 {
				ready = append(ready, c.ready[i:]...) // the connection's window is spent
				break
			}
			s.inReady = false // the stream's window is: a WINDOW_UPDATE puts it back
			continue
		}
		b.data = append(b.data, dataItem{s: s, p: s.data[s.off : s.off+int(n)], end: end})
		s.off += int(n)
		s.sendWin -= n
		c.sendConn -= n
		s.writing++
		if end {
			s.sentEnd = true
		}
		if s.off < len(s.data) || (s.dataEnd && !end) {
			ready = append(ready, s)
		} else {
			s.inReady = false
		}
	}
	clear(c.ready[len(ready):])
	c.ready = ready
	return len(b.ctrl) > 0 || len(b.heads) > 0 || len(b.data) > 0 || b.tableChanged
}

// encode writes b's frames into the connection's buffer (which writes to
// the socket each time it fills). Only the writer calls it, without c.mu.
func (c *conn) encode(b *batch) error {
	if b.tableChanged {
		c.henc.SetMaxDynamicTableSizeLimit(b.tableSize)
	}
	fr := c.fr
	for _, f := range b.ctrl {
		if err := h2.WriteCtrl(fr, f); err != nil {
			return err
		}
	}
	for _, h := range b.heads {
		fields := h.s.head
		end := h.s.endOnHead
		if h.trailers {
			fields, end = h.s.trailers, true
		}
		c.hbuf.Reset()
		for _, f := range fields {
			if err := c.henc.WriteField(f); err != nil {
				return err
			}
		}
		if err := h2.WriteBlock(c.fr, h.s.id, end, c.hbuf.Bytes()); err != nil {
			return err
		}
	}
	for _, d := range b.data {
		if err := fr.WriteData(d.s.id, d.end, d.p); err != nil {
			return err
		}
	}
	return nil
}

// complete notes what b wrote: the streams whose chunk went out wake their
// body's copier, and a head written for a stream already reset gets its
// RST_STREAM. The caller holds c.mu.
func (c *conn) complete(b *batch) {
	for _, h := range b.heads {
		s := h.s
		if h.trailers {
			s.sentEnd = true
		} else {
			s.headSent = true
			if s.endOnHead {
				s.sentEnd = true
			}
		}
		if s.done && !s.rstQueued {
			s.rstQueued = true
			c.queueCtrl(h2.Ctrl{Type: http2.FrameRSTStream, Stream: s.id, Val: uint32(http2.ErrCodeCancel)})
		}
		s.wakeSender()
		s.maybeFinish()
	}
	for _, d := range b.data {
		d.s.writing--
		d.s.wakeSender()
		d.s.maybeFinish()
	}
	clear(b.heads)
	clear(b.data)
}
