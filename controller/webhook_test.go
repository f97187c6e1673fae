package controller

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshctl/meshctl/install/webhookcert"
	"github.com/meshctl/meshctl/internal/meshnames"
)

func webhookSecret(t *testing.T) (*corev1.Secret, *webhookcert.Bundle) {
	t.Helper()
	b, err := webhookcert.Generate("mesh-controller", "meshctl", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: meshnames.WebhookSecret, Namespace: "meshctl"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: b.CertPEM, corev1.TLSPrivateKeyKey: b.KeyPEM, "ca.crt": b.CABundle},
	}, b
}

// TestWebhookServesTheSecretsCertificateAndFollowsIt starts the webhook
// server, then renews its Secret: new handshakes get the new certificate
// with no restart; only TLS 1.3 is spoken.
func TestWebhookServesTheSecretsCertificateAndFollowsIt(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	first, firstCA := webhookSecret(t)
	client := fake.NewClientset(first)
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("meshctl"))
	logs := &syncBuffer{}
	hook := &webhookCert{log: slog.New(slog.NewTextHandler(logs, nil))}
	if err := hook.watch(factory); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer cancel()
	factory.WaitForCacheSync(ctx.Done())
	// The cache is filled before its handlers have run: wait for the first load.
	for deadline := time.Now().Add(5 * time.Second); hook.cert.Load() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the webhook certificate was never loaded")
		}
	}

	srv := hook.server(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }), slog.New(slog.DiscardHandler))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	defer srv.Close()

	served := func(ca []byte, maxVersion uint16) (*x509.Certificate, error) {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs: pool, ServerName: webhookcert.DNSNames("mesh-controller", "meshctl")[0], MaxVersion: maxVersion,
		})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0], nil
	}
	got, err := served(firstCA.CABundle, 0)
	if err != nil {
		t.Fatalf("handshake with the first certificate: %v", err)
	}
	if want, _ := pem.Decode(first.Data[corev1.TLSCertKey]); !bytes.Equal(got.Raw, want.Bytes) {
		t.Error("the server does not serve the Secret's certificate")
	}
	if _, err := served(firstCA.CABundle, tls.VersionTLS12); err == nil {
		t.Error("the webhook accepted TLS 1.2")
	}

	second, secondCA := webhookSecret(t)
	if _, err := client.CoreV1().Secrets("meshctl").Update(ctx, second, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := served(secondCA.CABundle, 0); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was not served: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A broken Secret keeps the current certificate.
	broken := second.DeepCopy()
	broken.Data[corev1.TLSPrivateKeyKey] = []byte("not a key")
	if _, err := client.CoreV1().Secrets("meshctl").Update(ctx, broken, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "webhook certificate rejected") {
		if time.Now().After(deadline) {
			t.Fatal("the broken Secret was not noticed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := served(secondCA.CABundle, 0); err != nil {
		t.Errorf("after a broken Secret the webhook stopped serving: %v", err)
	}
}

// syncBuffer is a log sink safe for the informer's goroutine and the test's.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
