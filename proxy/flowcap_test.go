package proxy

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/httpproxy"
)

// A response faster than its client reads is held back by the meshed
// hop's flow control, not buffered: what the proxies hold for a stalled
// 64 MiB response stays near one stream's window (1 MiB), where net/http's
// default (4 MiB a stream) would let it pin four times that.
func TestStalledResponseIsHeldToTheStreamWindow(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("measures the heap; the race detector's own memory would be measured")
	}
	var written atomic.Int64
	chunk := make([]byte, 32<<10)
	app := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "67108864")
		for range 64 << 20 / len(chunk) {
			n, err := w.Write(chunk)
			written.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	ca := testpki.NewRoot(t, "root")
	m := newMeshPair(t, app, serverSPIFFE, ca.NewIssuer(t, "issuer").Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)

	// Warm the path (connections, TLS, pools) so that only the stalled
	// response is measured.
	res, err := h1Client().Get("http://" + m.client.outbound() + "/warm")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	written.Store(0)
	before := heapAndStacks()

	c, err := net.Dial("tcp", m.client.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: app\r\n\r\n")
	// Read nothing more: wait until the application can write no more.
	last := int64(-1)
	eventually(t, "the application to stall", 30*time.Second, func() bool {
		time.Sleep(200 * time.Millisecond)
		now := written.Load()
		stalled := now > 0 && now == last
		last = now
		return stalled
	})
	held := int64(heapAndStacks()) - int64(before)
	t.Logf("stalled after the application wrote %d KiB; the proxies hold %d KiB more", written.Load()>>10, held>>10)
	if limit := int64(httpproxy.ReceiveWindowPerStream) + 1<<20; held > limit {
		t.Errorf("a stalled response holds %d KiB in the proxies, want at most %d KiB (one stream's window and slack)", held>>10, limit>>10)
	}
}
