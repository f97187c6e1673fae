package controller

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/meshctl/meshctl/internal/meshnames"
)

// webhookCert follows the Secret holding the webhook's serving certificate
// (made by `meshctl install`), so a renewed certificate is served without a
// restart.
type webhookCert struct {
	cert atomic.Pointer[tls.Certificate]
	log  *slog.Logger
}

// watch registers on the control plane's Secrets informer.
func (w *webhookCert) watch(factory informers.SharedInformerFactory) error {
	on := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Name != meshnames.WebhookSecret {
			return
		}
		cert, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
		if err != nil {
			w.log.Warn("webhook certificate rejected; keeping the current one", "secret", s.Namespace+"/"+s.Name, "error", err)
			return
		}
		w.cert.Store(&cert)
		w.log.Info("webhook certificate loaded", "not_after", cert.Leaf.NotAfter)
	}
	_, err := factory.Core().V1().Secrets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: on, UpdateFunc: func(_, n any) { on(n) },
	})
	return err
}

func (w *webhookCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := w.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("no webhook certificate yet (Secret " + meshnames.WebhookSecret + ")")
}

// webhookServer serves the injector: TLS 1.3 only, bounded headers and
// timeouts (the handler bounds the body).
func (w *webhookCert) server(h http.Handler, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("POST "+meshnames.InjectPath, h)
	return &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: w.get},
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
