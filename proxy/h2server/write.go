package h2server

import (
	"runtime"

	"github.com/meshctl/meshctl/proxy/h2"
)

// batch is what one pass of the writer takes from the queues.
type batch struct {
	ctrl         []h2.Ctrl
	heads        []headItem
	data         []dataItem
	tableSize    uint32
	tableChanged bool
}

type dataItem struct {
	s   *stream
	p   []byte
	end bool
}

// writeLoop writes what handlers and the reader queue, as few times as it
// can: every frame queued by the time it runs goes out in one buffered
// write. It closes the connection when told to, once that is written.
func (c *conn) writeLoop() {
	var b batch
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		if !c.srv.cfg.NoYield {
			// Let the handlers the same network poll woke queue their
			// responses first, so one write carries them all.
			runtime.Gosched()
		}
		var err error
		for err == nil {
			c.mu.Lock()
			if !c.take(&b) {
				c.mu.Unlock()
				break
			}
			c.mu.Unlock()
			err = c.encode(&b)
			c.mu.Lock()
			c.complete(&b)
			c.mu.Unlock()
		}
		if err == nil {
			err = c.out.Flush()
		}
		c.mu.Lock()
		closing := err != nil || (c.closeWhenDone && (c.err != nil || len(c.streams) == 0))
		// What was queued while that write went out goes out before the
		// close, and it holds the GOAWAY when the close was decided then:
		// one batch, taken under the same lock as the decision.
		last := closing && err == nil && c.take(&b)
		c.mu.Unlock()
		if last {
			err = c.encode(&b)
			c.mu.Lock()
			c.complete(&b)
			c.mu.Unlock()
			if err == nil {
				err = c.out.Flush()
			}
		}
		if closing {
			if err != nil || !c.linger() {
				c.close(err)
			}
			return
		}
	}
}

// take moves what is queued into b: every control frame, every head, and
// one DATA frame of each stream ready to send. It reports whether there is
// anything to write. The caller holds c.mu.
func (c *conn) take(b *batch) bool {
	b.ctrl = append(b.ctrl[:0], c.ctrl...)
	clear(c.ctrl)
	c.ctrl = c.ctrl[:0]
	b.tableSize, b.tableChanged = c.peer.tableSize, c.peer.tableChanged
	c.peer.tableChanged = false
	b.heads, b.data = b.heads[:0], b.data[:0]
	if c.err != nil {
		return len(b.ctrl) > 0 // a GOAWAY before closing
	}
	for _, h := range c.heads {
		if h.s.reset {
			continue
		}
		if h.end {
			h.s.sentEnd = true
		}
		b.heads = append(b.heads, h)
	}
	clear(c.heads)
	c.heads = c.heads[:0]

	ready := c.ready[:0]
	for i, s := range c.ready {
		if s.reset || s.sentEnd {
			s.inReady = false
			continue
		}
		n := min(int64(len(s.data)-s.off), maxData, s.sendWin, c.sendConn)
		n = max(n, 0)
		end := s.dataEnd && s.off+int(n) == len(s.data)
		if n == 0 && !end {
			if c.sendConn <= 0 {
				ready = append(ready, c.ready[i:]...) // the connection's window is spent
				break
			}
			s.inReady = false // a WINDOW_UPDATE puts it back
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
		if s.off < len(s.data) && !end {
			ready = append(ready, s)
		} else {
			s.inReady = false
		}
	}
	clear(c.ready[len(ready):])
	c.ready = ready
	return len(b.ctrl) > 0 || len(b.heads) > 0 || len(b.data) > 0 || b.tableChanged
}

// encode writes b's frames into the connection's buffer. Only the writer
// calls it, without c.mu.
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
		c.hbuf.Reset()
		for _, f := range h.fields {
			if err := c.henc.WriteField(f); err != nil {
				return err
			}
		}
		if err := h2.WriteBlock(fr, h.s.id, h.end, c.hbuf.Bytes()); err != nil {
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

// complete notes what b wrote. The caller holds c.mu.
func (c *conn) complete(b *batch) {
	for _, h := range b.heads {
		if h.end {
			h.s.maybeFinish()
		}
	}
	for _, d := range b.data {
		d.s.writing--
		d.s.wakeSend()
		d.s.maybeFinish()
	}
	clear(b.heads)
	clear(b.data)
}
