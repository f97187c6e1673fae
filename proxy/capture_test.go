package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshctl/meshctl/internal/netnstest"
	"github.com/meshctl/meshctl/internal/pcap"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/detect"
)

// sentinel appears in every request and response the applications exchange;
// it must never be seen on the wire between the two pods.
const sentinel = "PLAINTEXT-SENTINEL-7f3a"

// TestMeshedHopBetweenPodsIsEncrypted runs two "pods" (network namespaces
// joined by a veth pair), each with `mesh-proxy init` rules and the real
// mesh-proxy binary as UID 2102. HTTP/1, HTTP/2, gRPC bidi, WebSocket and
// opaque TCP go from one application to the other, and tcpdump on the hop
// sees only TLS ClientHellos offering meshctl/h2 or meshctl/opaque, and no
// plaintext at all.
func TestMeshedHopBetweenPodsIsEncrypted(t *testing.T) {
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Fatal("tcpdump is needed to capture the meshed hop (make test installs it): ", err)
	}
	client := netnstest.New(t, "client-pod")
	server := netnstest.New(t, "server-pod")
	clientIf, _ := netnstest.Link(t, client, "10.80.0.1/24", server, "10.80.0.2/24")
	bin := buildMeshProxy(t)
	ca := testpki.NewRoot(t, "root")
	clientFiles := proxyReadableFiles(t, ca.Issue(t, clientSPIFFE, -time.Minute, time.Hour), ca)
	serverFiles := proxyReadableFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)

	// The server pod's applications.
	httpApp := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			if typ, msg, err := c.Read(r.Context()); err == nil {
				c.Write(r.Context(), typ, append([]byte(sentinel+":"), msg...))
			}
			c.Close(websocket.StatusNormalClosure, "")
			return
		}
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.URL.Path, sentinel)
	}), Protocols: h1AndH2C()}
	go httpApp.Serve(server.Listen(t, "0.0.0.0:8080"))
	defer httpApp.Close()
	grpcApp := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(grpcApp, grpcServer{})
	go grpcApp.Serve(server.Listen(t, "0.0.0.0:9090"))
	defer grpcApp.Stop()
	echo := server.Listen(t, "0.0.0.0:7000")
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				got, _ := io.ReadAll(c)
				c.Write(append([]byte(sentinel+":"), got...))
			}()
		}
	}()

	// Both pods get their rules and proxies; the client's proxy learns
	// the server's identity from an endpoints file.
	endpointsFile := filepath.Join(filepath.Dir(clientFiles.Cert), "endpoints.json")
	var entries []string
	for _, port := range []int{8080, 9090, 7000} {
		entries = append(entries, fmt.Sprintf(`"10.80.0.2:%d": [{"addr": "10.80.0.2:%d", "identity": %q}]`, port, port, serverSPIFFE))
	}
	if err := os.WriteFile(endpointsFile, []byte("{"+strings.Join(entries, ",")+"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, pod := range []struct {
		ns    *netnstest.NS
		files testpki.Files
		extra []string
	}{{client, clientFiles, []string{"--endpoints-file", endpointsFile}}, {server, serverFiles, nil}} {
		if out, err := pod.ns.Command(0, bin, "init").CombinedOutput(); err != nil {
			t.Fatalf("init in %s: %v\n%s", pod.ns.Name, err, out)
		}
		args := append([]string{"run", "--admin", "127.0.0.1:4191", "--log-format", "text", "--log-level", "debug",
			"--cert", pod.files.Cert, "--key", pod.files.Key, "--trust-roots", pod.files.Roots}, pod.extra...)
		startBinary(t, pod.ns, bin, args...)
	}

	capture := filepath.Join(t.TempDir(), "hop.pcap")
	dump := client.Command(0, "tcpdump", "--immediate-mode", "-Z", "root", "-i", clientIf, "-U", "-s", "0", "-w", capture, "tcp")
	stderr, _ := dump.StderrPipe()
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stderr).ReadString('\n'); err != nil || !strings.Contains(line, "listening") {
		t.Fatalf("tcpdump did not start: %q %v", line, err)
	}

	dial := func(ctx context.Context, _, addr string) (net.Conn, error) { return client.Dial(addr) }
	for _, tc := range []struct {
		name      string
		protocols *http.Protocols
		want      string
	}{{"HTTP/1", nil, "HTTP/1.1 /h " + sentinel}, {"HTTP/2", h2cOnly(), "HTTP/2.0 /h " + sentinel}} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dial, Protocols: tc.protocols}}
		resp, err := c.Get("http://10.80.0.2:8080/h")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if body := readAll(t, resp.Body); body != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, body, tc.want)
		}
		resp.Body.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc, err := grpc.NewClient("10.80.0.2:9090", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return client.Dial(addr) }))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	bidi, err := testgrpc.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		msg := []byte(fmt.Sprintf("%s-%d", sentinel, i))
		bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: msg}})
		if got, err := bidi.Recv(); err != nil || !bytes.Equal(got.GetPayload().GetBody(), msg) {
			t.Fatalf("gRPC bidi %d: %v, %v", i, got, err)
		}
	}
	bidi.CloseSend()

	ws, _, err := websocket.Dial(ctx, "ws://10.80.0.2:8080/ws", &websocket.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dial}}})
	if err != nil {
		t.Fatalf("websocket: %v", err)
	}
	ws.Write(ctx, websocket.MessageText, []byte(sentinel))
	if _, got, err := ws.Read(ctx); err != nil || string(got) != sentinel+":"+sentinel {
		t.Errorf("websocket: %q, %v", got, err)
	}
	ws.CloseNow()

	raw, err := client.Dial("10.80.0.2:7000")
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte(sentinel))
	raw.(*net.TCPConn).CloseWrite()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got := readAll(t, raw); got != sentinel+":"+sentinel {
		t.Errorf("opaque TCP: %q", got)
	}
	raw.Close()

	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()
	captured, err := os.ReadFile(capture)
	if err != nil {
		t.Fatal(err)
	}
	streams, err := pcap.Streams(captured)
	if err != nil {
		t.Fatal(err)
	}
	alpns := map[string]int{}
	for flow, data := range streams {
		if bytes.Contains(data, []byte(sentinel)) || bytes.Contains(data, []byte("HTTP/1.1")) || bytes.Contains(data, []byte(detect.Preface)) {
			t.Errorf("plaintext on the wire in %s: %q", flow, data[:min(len(data), 200)])
		}
		if !strings.HasSuffix(flow, ":8080") && !strings.HasSuffix(flow, ":9090") && !strings.HasSuffix(flow, ":7000") {
			continue // server → client directions
		}
		if l, ok := detect.TLSRecordLen(data); ok && len(data) >= l {
			protos, err := detect.ClientHelloALPN(data[:l])
			if err != nil {
				t.Errorf("%s does not start with a ClientHello: %v", flow, err)
			}
			for _, p := range protos {
				alpns[p]++
			}
		} else {
			t.Errorf("%s does not start with TLS: %q", flow, data[:min(len(data), 40)])
		}
	}
	if alpns["meshctl/h2"] < 1 || alpns["meshctl/opaque"] < 2 {
		t.Errorf("ClientHellos on the hop offered %v; want meshctl/h2 (HTTP, gRPC) and meshctl/opaque (WebSocket, TCP)", alpns)
	}
	t.Logf("meshed connections captured: %v", alpns)
}

// proxyReadableFiles writes a workload's certificate files where the proxy's
// user (2102) can read them.
func proxyReadableFiles(t *testing.T, leaf *testpki.Leaf, roots ...*testpki.CA) testpki.Files {
	t.Helper()
	dir, err := os.MkdirTemp("", "mesh-identity-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	files := leaf.Write(t, dir, roots...)
	for _, p := range []string{dir, files.Cert, files.Key, files.Roots} {
		if err := os.Chown(p, ProxyUID, ProxyUID); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755)
	return files
}

// startBinary runs mesh-proxy in a namespace as UID 2102 until the test ends,
// and waits for /ready.
func startBinary(t *testing.T, ns *netnstest.NS, bin string, args ...string) {
	t.Helper()
	cmd := ns.Command(ProxyUID, bin, args...)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("mesh-proxy in %s:\n%s", ns.Name, logs.String())
		}
	})
	eventually(t, "mesh-proxy in "+ns.Name+" to be ready", 10*time.Second, func() bool {
		_, err := ns.HTTPGet("http://127.0.0.1:4191/ready")
		return err == nil
	})
}

func h1AndH2C() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}
