package h2

import (
	"net"
	"sync"
	"time"
)

// bufPool holds the writer's 16 KiB buffers: one fills one TLS record.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16384); return &b }}

// OutBuf gathers frames for one write. Unlike bufio.Writer it never writes
// a large frame around itself: it always sends exactly 16 KiB (one TLS
// record) while more is to come, and its buffer goes back to the pool after
// a flush.
type OutBuf struct {
	// Conn is where the buffer is written, each write within Timeout.
	Conn    net.Conn
	Timeout time.Duration
	buf     *[]byte
	n       int
}

// Write copies p into the buffer, writing each full 16 KiB.
func (o *OutBuf) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if o.buf == nil {
			o.buf = bufPool.Get().(*[]byte)
		}
		k := copy((*o.buf)[o.n:], p)
		o.n += k
		p = p[k:]
		if o.n == len(*o.buf) {
			if err := o.write(); err != nil {
				return total - len(p), err
			}
		}
	}
	return total, nil
}

// Flush writes what is buffered and returns the buffer to the pool.
func (o *OutBuf) Flush() error {
	if o.buf == nil {
		return nil
	}
	err := o.write()
	bufPool.Put(o.buf)
	o.buf = nil
	return err
}

func (o *OutBuf) write() error {
	if o.n == 0 {
		return nil
	}
	_ = o.Conn.SetWriteDeadline(time.Now().Add(o.Timeout))
	_, err := o.Conn.Write((*o.buf)[:o.n])
	o.n = 0
	return err
}

// GetBuf returns a pooled 16 KiB buffer; PutBuf gives it back.
func GetBuf() *[]byte { return bufPool.Get().(*[]byte) }

// PutBuf gives back a buffer from GetBuf.
func PutBuf(b *[]byte) { bufPool.Put(b) }
