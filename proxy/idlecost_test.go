package proxy

import (
	"io"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// maxIdleConnBytes bounds the heap and stack held per idle keep-alive
// connection through the outbound proxy, client side included (about
// 370 B of it: the test's own socket). Measured 2.4–2.5 KB with 2,000
// connections when this was written; a goroutine kept per idle connection
// adds at least 2 KiB, and net/http's server held 22 KB.
const maxIdleConnBytes = 3200

func TestIdleConnectionsThroughTheProxyCostLittle(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("opens 2,000 connections; the race detector's own memory would be measured")
	}
	p := outboundTo(t, backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") })))
	h1 := p.p.sides[0].h1
	const n = 2000
	before := heapAndStacks()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 4096)
	for range n {
		c, err := net.Dial("tcp", p.outbound())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every idle connection parked", 30*time.Second, func() bool { return h1.Parked() == n })
	perConn := float64(heapAndStacks()-before) / n
	t.Logf("%.0f B held per idle connection (client side included)", perConn)
	if perConn > maxIdleConnBytes {
		t.Errorf("an idle connection through the proxy holds %.0f B, want at most %d", perConn, maxIdleConnBytes)
	}
	// And they still serve.
	for _, c := range conns[:10] {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatalf("a parked connection's next request: %v", err)
		}
	}
}

// heapAndStacks is the live heap and the stack memory in use after a
// collection. The heap's live bytes, not its spans in use: how full the
// spans happen to be varies from run to run by hundreds of bytes per
// connection, which is noise here, not what an idle connection holds.
func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + m.StackInuse
}
