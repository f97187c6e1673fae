package proxy

import (
	"context"
	"crypto/rand"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestNghttp2ThroughTwoProxies has nghttp2's client and server (an HTTP/2
// implementation other than Go's: stream priorities, its own SETTINGS)
// talk h2c through an outbound and an inbound proxy, the proxies' own
// HTTP/2 server and client on both application-facing sides. The client
// and server both ask for a header table of 0 (the proxies' encoders must
// not index), the server takes 10 streams at a time (the inbound proxy's
// client must keep to it with 24 requests at once), and the client's
// windows are 64 KiB (1 MiB bodies need many window updates).
func TestNghttp2ThroughTwoProxies(t *testing.T) {
	for _, tool := range []string{"nghttp", "nghttpd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make test-deps installs it)", tool)
		}
	}
	dir := t.TempDir()
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	server := exec.CommandContext(ctx, "nghttpd", "--no-tls", "-d", dir, "-m", "10", "-c", "0", strconv.Itoa(port))
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = server.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitDialable(t, addr)

	in := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: addr}})
	out := outboundTo(t, in.inbound())

	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("nghttp", append([]string{"-n", "-s", "-c", "0", "-w", "16", "-t", "20"}, args...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nghttp %v: %v\n%s", args, err, b)
		}
		return string(b)
	}
	// stats are nghttp's per-request lines: status and size.
	stats := func(outp string) (codes, sizes []string) {
		for _, line := range strings.Split(outp, "\n") {
			f := strings.Fields(line)
			if len(f) >= 7 && strings.HasPrefix(f[1], "+") {
				codes, sizes = append(codes, f[4]), append(sizes, f[5])
			}
		}
		return codes, sizes
	}

	codes, sizes := stats(run("-m", "24", "http://"+out.outbound()+"/big.bin"))
	if len(codes) != 24 {
		t.Fatalf("%d answers to 24 requests", len(codes))
	}
	for i := range codes {
		if codes[i] != "200" || sizes[i] != "1M" {
			t.Errorf("answer %d: status %s, size %s; want 200, 1M", i, codes[i], sizes[i])
		}
	}

	// An upload: the body goes through both proxies (nghttpd answers a
	// POST with the file asked for).
	codes, sizes = stats(run("-d", filepath.Join(dir, "big.bin"), "http://"+out.outbound()+"/index.html"))
	if len(codes) != 1 || codes[0] != "200" || sizes[0] != "6" {
		t.Errorf("upload: statuses %v, sizes %v; want [200], [6]", codes, sizes)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitDialable waits until addr accepts connections.
func waitDialable(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting connections: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
