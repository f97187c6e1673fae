package httpproxy

import (
	"errors"
	"io"
	"sync"
	"time"
)

// MaxReplayBytes is how much of a request body is kept for retries: a
// request whose body grew beyond it is not retried.
const MaxReplayBytes = 64 << 10

var errNotReplayable = errors.New("the request body was too large to send again")

// replayBody keeps the first MaxReplayBytes of a request body so that each
// try can send it again. Tries read it one after another (a retry starts
// only once the transport closed the previous try's body): each reads what
// is kept, then goes on reading the client's body.
type replayBody struct {
	src io.Reader
	// srcMu lets one reader at a time into src (a previous try's transport
	// may still be blocked in it); mu is never held while reading src, so
	// that deciding whether to retry never waits on the client.
	srcMu sync.Mutex

	// mu guards the fields below (a transport may read from its own goroutine).
	mu       sync.Mutex
	buf      []byte
	read     int  // bytes read from src so far
	overflow bool // read past MaxReplayBytes: buf was dropped
	err      error
}

func newReplayBody(src io.Reader) *replayBody { return &replayBody{src: src} }

// replayable reports whether another try can still send the whole body.
func (b *replayBody) replayable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.overflow && (b.err == nil || b.err == io.EOF)
}

// try returns the body for one more try.
func (b *replayBody) try() *tryBody { return &tryBody{b: b, closed: make(chan struct{})} }

// tryBody is one try's view of the request body.
type tryBody struct {
	b      *replayBody
	off    int
	once   sync.Once
	closed chan struct{} // closed when the transport is done with it
}

func (t *tryBody) Read(p []byte) (int, error) {
	b := t.b
	for {
		if n, done, err := t.fromBuffer(p); done {
			return n, err
		}
		b.srcMu.Lock()
		b.mu.Lock()
		behind := t.off < b.read // another reader got there first: use the buffer
		b.mu.Unlock()
		if behind {
			b.srcMu.Unlock()
			continue
		}
		n, err := b.src.Read(p)
		b.mu.Lock()
		if n > 0 {
			b.read += n
			t.off += n
			if !b.overflow && b.read <= MaxReplayBytes {
				b.buf = append(b.buf, p[:n]...)
			} else {
				b.overflow, b.buf = true, nil
			}
		}
		if err != nil {
			b.err = err
		}
		b.mu.Unlock()
		b.srcMu.Unlock()
		return n, err
	}
}

// fromBuffer serves a read from what was kept, or says the try has caught
// up with the client's body (done false).
func (t *tryBody) fromBuffer(p []byte) (n int, done bool, err error) {
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case t.off < b.read && b.overflow:
		return 0, true, errNotReplayable
	case t.off < b.read:
		n = copy(p, b.buf[t.off:])
		t.off += n
		return n, true, nil
	case b.err != nil:
		return 0, true, b.err
	}
	return 0, false, nil
}

// Close tells that the transport is done with this try's body; the
// client's body itself stays open for the next try.
func (t *tryBody) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

// released waits briefly for the transport to let go of the body, which it
// may do after the response arrived; false if it did not.
func (t *tryBody) released() bool {
	select {
	case <-t.closed:
		return true
	default:
	}
	timer := time.NewTimer(100 * time.Millisecond)
	defer timer.Stop()
	select {
	case <-t.closed:
		return true
	case <-timer.C:
		return false
	}
}
