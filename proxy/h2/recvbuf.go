package h2

import "sync"

// chunkPool holds the 16 KiB chunks received data waits in.
var chunkPool = sync.Pool{New: func() any { return new([16384]byte) }}

// RecvBuf is a stream's received and unread bytes: a list of pooled
// chunks, each returned as soon as it is read.
type RecvBuf struct {
	chunks []*[16384]byte
	r, w   int // read offset in the first chunk, write offset in the last
	n      int
}

// Len is the number of unread bytes.
func (b *RecvBuf) Len() int { return b.n }

// Write appends p.
func (b *RecvBuf) Write(p []byte) {
	for len(p) > 0 {
		if len(b.chunks) == 0 || b.w == len(b.chunks[0]) {
			b.chunks = append(b.chunks, chunkPool.Get().(*[16384]byte))
			b.w = 0
		}
		k := copy(b.chunks[len(b.chunks)-1][b.w:], p)
		b.w += k
		b.n += k
		p = p[k:]
	}
}

// Read moves unread bytes into p.
func (b *RecvBuf) Read(p []byte) int {
	total := 0
	for len(p) > 0 && b.n > 0 {
		end := len(b.chunks[0])
		if len(b.chunks) == 1 {
			end = b.w
		}
		k := copy(p, b.chunks[0][b.r:end])
		b.r += k
		b.n -= k
		total += k
		p = p[k:]
		if b.r == end {
			b.drop()
		}
	}
	return total
}

// drop returns the first chunk to the pool.
func (b *RecvBuf) drop() {
	chunkPool.Put(b.chunks[0])
	b.chunks[0] = nil
	b.chunks = b.chunks[1:]
	b.r = 0
	if len(b.chunks) == 0 {
		b.chunks, b.w = nil, 0
	}
}

// Free drops every unread byte.
func (b *RecvBuf) Free() {
	for len(b.chunks) > 0 {
		b.drop()
	}
	b.n = 0
}
