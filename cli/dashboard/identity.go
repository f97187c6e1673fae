package dashboard

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshctl/meshctl/cli/healthcheck"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
)

// maxIdentityProxies bounds the proxies the identity page asks.
const maxIdentityProxies = 500

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func certOf(c *x509.Certificate) Cert {
	return Cert{Subject: c.Subject.String(), Fingerprint: certs.Fingerprint(c), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()}
}

// identityTimeout bounds one identity page's reads.
const identityTimeout = time.Minute

func (s *Server) identity(w http.ResponseWriter, r *http.Request) {
	// Requests at the same time share one run: each asks every proxy.
	// The run is not the first request's: it outlives its cancellation.
	run := s.identityRuns.DoChan("identity", func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), identityTimeout)
		defer cancel()
		objs, err := s.Source.Identity(ctx)
		if err != nil {
			return nil, err
		}
		return s.identityPage(ctx, objs), nil
	})
	select {
	case <-r.Context().Done():
	case res := <-run:
		if res.Err != nil {
			writeError(w, http.StatusBadGateway, res.Err.Error())
			return
		}
		writeJSON(w, res.Val)
	}
}

// proxyIdentity asks a proxy for its certificate, with at most
// identityConcurrency proxies asked at once across every page answered.
func (s *Server) proxyIdentity(ctx context.Context, ns, pod string) (api.IdentityInfo, error) {
	select {
	case s.proxyReads <- struct{}{}:
	case <-ctx.Done():
		return api.IdentityInfo{}, ctx.Err()
	}
	defer func() { <-s.proxyReads }()
	return s.Source.ProxyIdentity(ctx, ns, pod)
}

// identityPage lists the anchors and the issuer, and asks every meshed
// proxy (up to maxIdentityProxies) which issuer signed its certificate.
func (s *Server) identityPage(ctx context.Context, objs *IdentityObjects) *Identity {
	page := &Identity{TrustAnchors: []Cert{}, OnOldIssuer: []ProxyIssuer{}, Errors: objs.Errors}
	for _, a := range objs.Anchors {
		page.TrustAnchors = append(page.TrustAnchors, certOf(a))
	}
	current := ""
	if objs.Issuer != nil {
		c := certOf(objs.Issuer)
		page.Issuer, current = &c, c.Fingerprint
	} else if objs.IssuerError != "" {
		page.Errors = append(page.Errors, "issuer: "+objs.IssuerError)
	}
	pods := objs.MeshedPods
	if len(pods) > maxIdentityProxies {
		page.Errors = append(page.Errors, fmt.Sprintf("only the first %d of %d proxies were asked", maxIdentityProxies, len(pods)))
		pods = pods[:maxIdentityProxies]
	}
	results := make([]ProxyIssuer, len(pods))
	var wg sync.WaitGroup
	for i, key := range pods {
		ns, name, _ := strings.Cut(key, "/")
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = ProxyIssuer{Namespace: ns, Pod: name}
			id, err := s.proxyIdentity(ctx, ns, name)
			if err != nil {
				results[i].Error = err.Error()
				return
			}
			results[i].Issuer, results[i].NotAfter = id.IssuerFingerprint, id.NotAfter.UTC()
		}()
	}
	wg.Wait()
	for _, p := range results {
		switch {
		case p.Error != "":
			page.Unread = append(page.Unread, p)
		case current != "" && p.Issuer != current:
			page.OnOldIssuer = append(page.OnOldIssuer, p)
		}
	}
	page.Proxies = len(pods)
	slices.SortFunc(page.OnOldIssuer, func(a, b ProxyIssuer) int { return strings.Compare(a.Namespace+"/"+a.Pod, b.Namespace+"/"+b.Pod) })
	return page
}

func (s *Server) healthPage(w http.ResponseWriter, r *http.Request) {
	if !s.health.TryLock() { // one run of the checks at a time
		writeError(w, http.StatusTooManyRequests, "the checks are running already: try again when they are done")
		return
	}
	defer s.health.Unlock()
	results := s.Source.Health(r.Context())
	writeJSON(w, Health{Passed: healthcheck.Passed(results, false), Results: results})
}
