package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/meshtls"
)

// TestCertificateRotationDropsNothing rotates both proxies' certificates
// while a gRPC bidi stream is open and requests keep flowing: the stream
// carries on, no request fails, and new connections use the new certificates.
func TestCertificateRotationDropsNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, grpcServer{})
	go srv.Serve(ln)
	defer srv.Stop()

	ca := testpki.NewRoot(t, "root")
	clientSrc, clientFiles := identityFiles(t, ca.Issue(t, clientSPIFFE, -time.Minute, time.Hour), ca)
	serverSrc, serverFiles := identityFiles(t, ca.Issue(t, serverSPIFFE, -time.Minute, time.Hour), ca)
	server := startProxy(t, Config{Inbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: ln.Addr().String()}, Identity: serverSrc})
	client := startProxy(t, Config{
		Outbound: &SideConfig{Listen: "127.0.0.1:0", Upstream: server.inbound(), UpstreamIdentity: serverSrc.Bundle().ID},
		Identity: clientSrc,
	})
	serialBefore := identityOf(t, server).Serial

	cc, err := grpc.NewClient(client.outbound(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := testgrpc.NewTestServiceClient(cc)
	bidi, err := api.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip := func(i int) error {
		msg := []byte(fmt.Sprint("m", i))
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: msg}}); err != nil {
			return err
		}
		got, err := bidi.Recv()
		if err == nil && string(got.GetPayload().GetBody()) != string(msg) {
			err = fmt.Errorf("got %q", got.GetPayload().GetBody())
		}
		return err
	}
	if err := roundTrip(0); err != nil {
		t.Fatal(err)
	}

	// Requests on fresh connections all through the rotation.
	var failures, requests atomic.Int64
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := api.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			requests.Add(1)
			if err != nil {
				failures.Add(1)
			}
		}
	}()

	newServer := ca.Issue(t, serverSPIFFE, -time.Minute, 2*time.Hour)
	testpki.WriteAtomic(t, serverFiles.Key, newServer.KeyPEM(t))
	testpki.WriteAtomic(t, serverFiles.Cert, newServer.CertPEM())
	newClient := ca.Issue(t, clientSPIFFE, -time.Minute, 2*time.Hour)
	testpki.WriteAtomic(t, clientFiles.Key, newClient.KeyPEM(t))
	testpki.WriteAtomic(t, clientFiles.Cert, newClient.CertPEM())
	eventually(t, "the server proxy to load its new certificate", 5*time.Second, func() bool {
		return identityOf(t, server).Serial != serialBefore
	})
	eventually(t, "the client proxy to load its new certificate", 5*time.Second, func() bool {
		return clientSrc.Bundle().Leaf().SerialNumber.Cmp(newClient.Cert.SerialNumber) == 0
	})
	eventually(t, "requests to keep flowing after the rotation", 10*time.Second, func() bool { return requests.Load() > 20 })
	close(stop)
	<-loopDone

	for i := 1; i <= 5; i++ {
		if err := roundTrip(i); err != nil {
			t.Fatalf("the stream opened before the rotation broke: %v", err)
		}
	}
	bidi.CloseSend()
	if f := failures.Load(); f != 0 {
		t.Errorf("%d of %d gRPC calls failed during the rotation", f, requests.Load())
	}
	// A new meshed connection gets the new certificate, and is accepted
	// with the client's new one.
	d := &meshtls.Dialer{Source: clientSrc, Net: (&net.Dialer{}).DialContext}
	tc, err := d.Dial(context.Background(), server.inbound(), serverSrc.Bundle().ID, meshtls.ALPNOpaque)
	if err != nil {
		t.Fatalf("new meshed connection after the rotation: %v", err)
	}
	defer tc.Close()
	if got := tc.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(newServer.Cert.SerialNumber) != 0 {
		t.Errorf("a new connection got server certificate %x, want the new %x", got, newServer.Cert.SerialNumber)
	}
}

// identityOf reads a proxy's /identity.
func identityOf(t testing.TB, r *running) api.IdentityInfo {
	t.Helper()
	resp, err := http.Get("http://" + r.admin() + "/identity")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/identity: %s", resp.Status)
	}
	var info api.IdentityInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	return info
}
