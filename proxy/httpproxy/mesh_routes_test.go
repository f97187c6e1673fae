package httpproxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/internal/testpki"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/meshtls"
)

type source struct{ b *certs.Bundle }

func (s source) Bundle() *certs.Bundle { return s.b }

func meshBundle(t *testing.T, root, issuer *testpki.CA, id string) *certs.Bundle {
	t.Helper()
	leaf := issuer.Issue(t, id, -time.Minute, time.Hour)
	b, err := certs.NewBundle(leaf.CertPEM(), leaf.KeyPEM(t), testpki.CertPEM(root.Cert))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// plainListener hands the server the meshed TLS streams as plaintext (as
// the inbound side does): HTTP/2 with prior knowledge inside mutual TLS.
type plainListener struct{ net.Listener }

func (l plainListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := c.(*tls.Conn)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return l.Accept()
	}
	return meshtls.Plain{Conn: tc}, nil
}

// meshedApp serves h over the mesh's mutual TLS with identity src; it
// answers with the protocol it saw and the original one the client proxy
// said.
func meshedApp(t *testing.T, src certs.Source, name string, seen chan<- string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", meshtls.ServerConfig(src))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		msg := fmt.Sprintf("%s %s %s orig=%s x=%s", name, r.Proto, r.URL.Path, r.Header.Get(meshtls.OrigProtoHeader), r.Header.Get("X-Route"))
		if seen != nil {
			seen <- msg
		}
		w.Write([]byte(msg))
	}), Protocols: new(http.Protocols)}
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(plainListener{ln})
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func TestRoutesToMeshedBackendsOverMutualTLS(t *testing.T) {
	root := testpki.NewRoot(t, "root")
	issuer := root.NewIssuer(t, "issuer")
	const serverID, mirrorID = "spiffe://cluster.local/ns/shop/sa/web-v2", "spiffe://cluster.local/ns/shop/sa/mirror"
	v2 := meshedApp(t, source{meshBundle(t, root, issuer, serverID)}, "v2", nil)
	mirrorSeen := make(chan string, 10)
	mirror := meshedApp(t, source{meshBundle(t, root, issuer, mirrorID)}, "mirror", mirrorSeen)
	id := func(s string) spiffeid.ID {
		v, err := spiffeid.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	routes := []endpoints.RouteSpec{{
		Name: "shop/web", RequestHeaders: &api.HeaderEdit{Set: []api.Header{{Name: "X-Route", Value: "edited"}}},
		Mirrors:  []endpoints.MirrorSpec{{Backend: endpoints.BackendSpec{Name: "mirror.shop:80", Endpoints: []endpoints.Endpoint{{Addr: mirror, Identity: id(mirrorID)}}}}},
		Backends: []endpoints.BackendSpec{{Name: "web-v2.shop:80", Weight: 1, Endpoints: []endpoints.Endpoint{{Addr: v2, Identity: id(serverID)}}}},
	}}
	svc := newEcho(t, "svc", nil)
	tp := serve(t, destination(t, "web.shop:80", nil, routes, svc.addr), Config{Identity: source{meshBundle(t, root, issuer, "spiffe://cluster.local/ns/demo/sa/client")}})

	for _, tc := range []struct {
		client *http.Client
		want   string
	}{
		{h1(), "v2 HTTP/2.0 /a orig=HTTP/1.1 x=edited"}, // HTTP/1 rides the mesh's HTTP/2 and says so
		{h2c(), "v2 HTTP/2.0 /a orig= x=edited"},
	} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, tp.url+"/a", nil)
		res, body := do(t, tc.client, req)
		if res.StatusCode != 200 || body != tc.want {
			t.Errorf("%d %q, want %q", res.StatusCode, body, tc.want)
		}
		select {
		case got := <-mirrorSeen:
			if got[:len("mirror HTTP/2.0 /a")] != "mirror HTTP/2.0 /a" {
				t.Errorf("the meshed mirror saw %q", got)
			}
		case <-time.After(5 * time.Second):
			t.Error("the meshed mirror got no copy")
		}
	}
	if svc.count.Load() != 0 {
		t.Error("a routed request went to the Service's own endpoints")
	}
}
