package proxy

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/netnstest"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// TestMetricsDescribeTraffic checks the families, labels and buckets that
// meshctl stat and top read.
func TestMetricsDescribeTraffic(t *testing.T) {
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusInternalServerError)
		}
		io.WriteString(w, "0123456789")
	}))
	p := outboundTo(t, up)
	c := h1Client()
	for _, path := range []string{"/", "/", "/fail"} {
		resp, err := c.Get("http://" + p.outbound() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fams := scrape(t, p)
	// The authority is the destination the mesh knows (here the explicit
	// upstream), not the Host the client wrote.
	authority := map[string]string{"direction": "outbound", "authority": up, "tls": "false"}
	if v := metricValue(fams, "request_total", authority); v != 3 {
		t.Errorf("request_total = %v, want 3", v)
	}
	for _, tc := range []struct {
		status, class string
		want          float64
	}{{"200", "success", 2}, {"500", "failure", 1}} {
		labels := map[string]string{"direction": "outbound", "status_code": tc.status, "classification": tc.class}
		if v := metricValue(fams, "response_total", labels); v != tc.want {
			t.Errorf("response_total{%s,%s} = %v, want %v", tc.status, tc.class, v, tc.want)
		}
		if v := metricValue(fams, "response_latency_ms", labels); v != tc.want {
			t.Errorf("response_latency_ms count{%s} = %v, want %v", tc.status, v, tc.want)
		}
	}
	h := fams["response_latency_ms"].GetMetric()[0].GetHistogram()
	var bounds []float64
	for _, b := range h.GetBucket() {
		if !math.IsInf(b.GetUpperBound(), 1) {
			bounds = append(bounds, b.GetUpperBound())
		}
	}
	if fmt.Sprint(bounds) != fmt.Sprint(metrics.LatencyBucketsMs) {
		t.Errorf("latency buckets %v, want %v", bounds, metrics.LatencyBucketsMs)
	}
	conn := map[string]string{"direction": "outbound"}
	if v := metricValue(fams, "tcp_open_total", conn); v != 1 {
		t.Errorf("tcp_open_total = %v, want 1 (one keep-alive connection)", v)
	}
	if v := metricValue(fams, "tcp_open_connections", conn); v != 1 {
		t.Errorf("tcp_open_connections = %v, want 1", v)
	}
	if v := metricValue(fams, "tcp_read_bytes_total", conn); v < 3*30 {
		t.Errorf("tcp_read_bytes_total = %v, want the three requests' bytes", v)
	}
	if v := metricValue(fams, "tcp_write_bytes_total", conn); v < 3*10 {
		t.Errorf("tcp_write_bytes_total = %v, want at least the three bodies", v)
	}
	c.CloseIdleConnections()
	eventually(t, "the closed connection to be counted", 5*time.Second, func() bool {
		f := scrape(t, p)
		return metricValue(f, "tcp_close_total", conn) == 1 && metricValue(f, "tcp_open_connections", conn) == 0
	})
}

func TestLiveAndReady(t *testing.T) {
	p := outboundTo(t, "127.0.0.1:1")
	for _, path := range []string{"/live", "/ready"} {
		resp, err := http.Get("http://" + p.admin() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d, want 200", path, resp.StatusCode)
		}
	}
}

// TestDrainLetsInFlightRequestsFinish: on shutdown the proxy stops accepting
// but the request in flight completes; one that outlasts the drain timeout
// is cut off and Run still returns.
func TestDrainLetsInFlightRequestsFinish(t *testing.T) {
	leakCheck(t)
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-release:
			io.WriteString(w, "finished")
		case <-r.Context().Done():
		}
	}))
	p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}, DrainTimeout: 10 * time.Second})
	result := make(chan string, 1)
	go func() {
		resp, err := h1Client().Get("http://" + p.outbound() + "/slow")
		if err != nil {
			result <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		result <- string(b)
	}()
	<-started
	p.cancel()
	eventually(t, "the listener to close", 5*time.Second, func() bool {
		c, err := net.Dial("tcp", p.outbound())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-p.done:
		t.Fatalf("Run returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	if got := <-result; got != "finished" {
		t.Errorf("in-flight request got %q, want it to finish", got)
	}
	select {
	case err := <-p.done:
		p.stopped = true
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the drain")
	}

	// A request that outlasts the drain timeout is cut off.
	p2 := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}, DrainTimeout: 300 * time.Millisecond})
	go func() {
		resp, err := h1Client().Get("http://" + p2.outbound() + "/stuck")
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	start := time.Now()
	p2.stop(t)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("drain with a stuck request took %s, want about the 300ms timeout", took)
	}
}

// TestRedirectModeInANetworkNamespace runs the real mesh-proxy binary as a
// pod would: `mesh-proxy init` rules in a pod network namespace, `mesh-proxy
// run` as UID 2102 with no explicit upstreams. The app's request to a peer
// crosses the outbound proxy; the peer's request to the app crosses the
// inbound proxy and reaches the app on the pod's own address, while a port
// the app binds to 127.0.0.1 only stays out of the peer's reach.
func TestRedirectModeInANetworkNamespace(t *testing.T) {
	pod := netnstest.New(t, "pod")
	peer := netnstest.New(t, "peer")
	netnstest.Link(t, pod, "10.78.0.1/24", peer, "10.78.0.2/24")
	bin := buildMeshProxy(t)
	if out, err := pod.Command(0, bin, "init").CombinedOutput(); err != nil {
		t.Fatalf("mesh-proxy init: %v\n%s", err, out)
	}
	serve := func(ln net.Listener, name string) {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s saw %s from %s", name, r.Host, r.RemoteAddr)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	serve(peer.Listen(t, "10.78.0.2:8080"), "peer")
	serve(pod.Listen(t, "0.0.0.0:9090"), "app")
	serve(pod.Listen(t, "127.0.0.1:9191"), "private")
	serve(pod.Listen(t, "127.0.0.2:9192"), "private2")

	cmd := pod.Command(ProxyUID, bin, "run", "--admin", "127.0.0.1:4191", "--log-format", "text")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("mesh-proxy logs:\n%s", logs.String())
		}
	})
	eventually(t, "the proxy to be ready", 10*time.Second, func() bool {
		_, err := pod.HTTPGet("http://127.0.0.1:4191/ready")
		return err == nil
	})

	if got, err := pod.HTTPGet("http://10.78.0.2:8080/out"); err != nil || !strings.HasPrefix(got, "peer saw 10.78.0.2:8080") {
		t.Errorf("app → peer: %q, %v", got, err)
	}
	if got, err := peer.HTTPGet("http://10.78.0.1:9090/in"); err != nil || !strings.HasPrefix(got, "app saw 10.78.0.1:9090 from 10.78.0.1:") {
		t.Errorf("peer → app: %q, %v; want it to arrive from the pod's own address, not loopback", got, err)
	}
	// Bound to loopback only: the proxy must not carry the peer there.
	if got, err := peer.HTTPGet("http://10.78.0.1:9191/private"); err == nil || strings.Contains(got, "private saw") {
		t.Errorf("peer → a loopback-only port: %q, %v; want it refused", got, err)
	}
	// Nor when the peer addresses a loopback address itself, sending its
	// packets to the pod's link (the redirect would record 127.0.0.2 as
	// the original destination).
	for _, args := range [][]string{{"sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"}, {"ip", "route", "add", "127.0.0.2/32", "via", "10.78.0.1"}} {
		if out, err := peer.Command(0, args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	if got, err := peer.HTTPGet("http://127.0.0.2:9192/spoofed"); err == nil || strings.Contains(got, "private2 saw") {
		t.Errorf("peer → 127.0.0.2 through the pod's link: %q, %v; want it refused", got, err)
	}
	metricsText, err := pod.HTTPGet("http://127.0.0.1:4191/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`request_total{authority="10.78.0.2:8080",client_id="",direction="outbound",dst_workload="",server_id="",tls="false"} 1`,
		`request_total{authority="10.78.0.1:9090",client_id="",direction="inbound",dst_workload="",server_id="",tls="false"} 1`,
		// Nothing answered on the loopback-only port: no series of its own.
		`request_total{authority="",client_id="",direction="inbound",dst_workload="",server_id="",tls="false"} 1`,
	} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// buildMeshProxy builds the mesh-proxy binary for tests that run it for real.
func buildMeshProxy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mesh-proxy-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "mesh-proxy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/meshctl/meshctl/cmd/mesh-proxy").CombinedOutput(); err != nil {
		t.Fatalf("build mesh-proxy: %v\n%s", err, out)
	}
	// The proxy runs as its own user; the binary must be reachable by it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestMeshProxyLinksNeitherClientGoNorTheCA keeps the sidecar lean: nor
// the Prometheus client, whose protobuf alone made the binary 2 MB larger
// (bench/PROFILE.md, step 7).
func TestMeshProxyLinksNeitherClientGoNorTheCA(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/meshctl/meshctl/cmd/mesh-proxy").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	s := bufio.NewScanner(strings.NewReader(string(out)))
	for s.Scan() {
		for _, banned := range []string{"k8s.io/client-go", "github.com/smallstep/certificates", "github.com/meshctl/meshctl/identity/ca",
			"github.com/prometheus/", "google.golang.org/protobuf"} {
			if strings.HasPrefix(s.Text(), banned) {
				t.Errorf("mesh-proxy links %s", s.Text())
			}
		}
	}
}

// TestIdleClientConnectionsAreClosed: keep-alive connections that carry no
// request for IdleTimeout are closed, so idle clients cannot pin memory.
func TestIdleClientConnectionsAreClosed(t *testing.T) {
	up := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	p := startProxy(t, Config{Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: up}, IdleTimeout: 200 * time.Millisecond})
	c, err := net.Dial("tcp", p.outbound())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: read %v, want EOF from the proxy closing it", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("idle connection closed after %s, want about 200ms", took)
	}
}
