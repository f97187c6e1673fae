package controller

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
)

// The control API's side of TLS: the controller's own serving certificate,
// renewed from the current issuer, and the client certificates checked per
// request.

// renewOwn issues the controller's serving certificate from the current issuer.
func (c *Controller) renewOwn() error {
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{c.cfg.ID().URL()}}, c.key)
	if err != nil {
		return err
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return err
	}
	chain, err := c.trust.ca.Load().Sign(csr, c.cfg.ID(), c.cfg.LeafLifetime)
	if err != nil {
		return err
	}
	cert := &tls.Certificate{PrivateKey: c.key, Leaf: chain[0]}
	for _, ch := range chain {
		cert.Certificate = append(cert.Certificate, ch.Raw)
	}
	c.own.Store(cert)
	return nil
}

// keepOwnCertificate renews the serving certificate at 70% of its life, and
// at once when the issuer or the bundle changes.
func (c *Controller) keepOwnCertificate(ctx context.Context) error {
	for {
		leaf := c.own.Load().Leaf
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		t := time.NewTimer(time.Until(leaf.NotBefore.Add(life * 7 / 10)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-c.trust.changed:
			t.Stop()
		}
		if err := c.renewOwn(); err != nil {
			c.log.Error("could not renew the controller's certificate", "error", err)
			continue
		}
		c.log.Info("controller certificate renewed", "issuer", c.own.Load().Leaf.Issuer.CommonName)
	}
}

// controlHandler routes the control API: certificate issuance is
// authenticated by the ServiceAccount token alone; every other /v1/ path
// needs a client certificate valid now.
func (c *Controller) controlHandler(issue, destinations, inboundPolicy http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(api.CertificatePath, issue)
	mux.Handle(api.DestinationsPath, c.requireClientCert(destinations))
	mux.Handle(api.InboundPolicyPath, c.requireClientCert(inboundPolicy))
	mux.Handle("/v1/", c.requireClientCert(http.NotFoundHandler()))
	return mux
}

// serverTLS serves the control API: TLS 1.3, the controller's own
// certificate, and client certificates requested but never checked in the
// handshake: a proxy whose certificate expired (a controller outage longer
// than a certificate's life) must still reach /v1/certificate, where the
// token alone authenticates. requireClientCert checks the certificate per
// request on every other path. (crypto/tls still verifies that the client
// holds the certificate's key.)
func (c *Controller) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.own.Load(), nil
		},
		ClientAuth: tls.RequestClientCert,
	}
}

// requireClientCert lets through only callers whose client certificate
// chains to the current trust bundle now, with a SPIFFE ID; others get 401.
// The chain is verified per request, not per connection: roots change and
// certificates expire while HTTP/2 connections live on.
func (c *Controller) requireClientCert(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(reason, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_ = json.NewEncoder(w).Encode(api.Error{Error: msg, Reason: reason})
		}
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			fail("no_client_certificate", "a workload client certificate is required")
			return
		}
		raw := make([][]byte, len(r.TLS.PeerCertificates))
		for i, pc := range r.TLS.PeerCertificates {
			raw[i] = pc.Raw
		}
		if _, err := certs.VerifyChain(raw, c.trust.roots.Load(), time.Now()); err != nil {
			fail("bad_client_certificate", "the client certificate is not valid (renew it on "+api.CertificatePath+"): "+err.Error())
			return
		}
		h.ServeHTTP(w, r)
	})
}
