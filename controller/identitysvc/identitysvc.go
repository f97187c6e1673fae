// Package identitysvc issues workload certificates on the control API: a
// proxy sends a certificate request and its projected ServiceAccount token;
// the service has the Kubernetes API server review the token (TokenReview,
// audience identity.meshctl.io), derives the SPIFFE ID from the
// ServiceAccount the token belongs to, and signs only a request for exactly
// that ID.
//
// The endpoint needs no client certificate, so anyone who can reach it can
// make it work: a TokenReview is what it costs most, and reviews share the
// API server. Before one is made, a request passes a per-source-address rate
// limit, a well-formed certificate request (key type and size checked), a
// local look at the token (a JWT for the audience, not expired, of a
// ServiceAccount), and, when the controller wires Config.PodBySourceIP, a
// match between the ServiceAccount the token claims and that of the pod the
// request comes from (the local look verifies no signature: without this, a
// forged token of the right shape would still cost a review); then it waits
// for one of a bounded number of review slots, and only briefly.
package identitysvc

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/meshctl/meshctl/identity/ca"
	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Reviewer asks the API server who a token belongs to.
type Reviewer interface {
	// Review returns the authenticated user name, e.g.
	// "system:serviceaccount:demo:web", or an error when the token is not
	// valid for the audience.
	Review(ctx context.Context, token, audience string) (string, error)
}

// Config configures the service.
type Config struct {
	// CA signs the certificates. Required.
	CA *ca.CA
	// Reviewer checks tokens. Required.
	Reviewer Reviewer
	// TrustDomain of the IDs issued. Default: cluster.local.
	TrustDomain string
	// TrustRoots returns the current trust bundle (PEM), sent with every certificate. Required.
	TrustRoots func() []byte
	// Lifetime of the certificates. Default: 24h.
	Lifetime time.Duration
	// RatePerSecond and Burst limit issuance per ServiceAccount (after the
	// TokenReview). Defaults: 5/s, 20.
	RatePerSecond float64
	Burst         int
	// SourceRatePerSecond and SourceBurst limit requests per source IP
	// address, before anything else is looked at. Defaults: 5/s, 50 (a pod
	// asks once at start and then every ~17 h).
	SourceRatePerSecond float64
	SourceBurst         int
	// MaxConcurrentReviews bounds the TokenReviews in flight. Default:
	// DefaultMaxConcurrentReviews.
	MaxConcurrentReviews int
	// ReviewWait is how long a request waits for a review slot before it is
	// answered 503 with Retry-After. Default: 1s.
	ReviewWait time.Duration
	// ReviewTimeout bounds one TokenReview. Default: 10s.
	ReviewTimeout time.Duration
	// PodBySourceIP returns the namespace and ServiceAccount of the live pod
	// that holds ip, or false when none does. When set, a request is refused
	// (403, before any TokenReview) unless its token claims that pod's
	// ServiceAccount: reason token_not_for_source, or unknown_source when no
	// pod holds the address. Default: nil, no such check (callers that are
	// not pods, such as tests on the host).
	PodBySourceIP func(ip netip.Addr) (namespace, serviceAccount string, ok bool)
	// Registerer receives the service's counters; nil means none.
	Registerer prometheus.Registerer
	// Log receives every issuance and refusal. Default: discard.
	Log *slog.Logger
}

// maxBodyBytes bounds a request body: the CSR, the token and JSON around them.
const maxBodyBytes = api.MaxCSRBytes + 4<<10

// DefaultMaxConcurrentReviews is how many TokenReviews the service makes at
// once unless configured otherwise.
const DefaultMaxConcurrentReviews = 32

// Service is the issuance endpoint.
type Service struct {
	cfg      Config
	limiters *lru.Cache[string, *rate.Limiter] // per ServiceAccount
	sources  *lru.Cache[string, *rate.Limiter] // per source address
	reviews  chan struct{}                     // a slot per TokenReview in flight
	issued   prometheus.Counter
	refused  *prometheus.CounterVec
	latency  prometheus.Histogram
}

// withDefaults returns the configuration with its unset fields at their
// defaults.
func (c Config) withDefaults() Config {
	if c.TrustDomain == "" {
		c.TrustDomain = meshnames.TrustDomain
	}
	if c.Lifetime == 0 {
		c.Lifetime = ca.DefaultLeafLifetime
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = 5
	}
	if c.Burst == 0 {
		c.Burst = 20
	}
	if c.SourceRatePerSecond == 0 {
		c.SourceRatePerSecond = 5
	}
	if c.SourceBurst == 0 {
		c.SourceBurst = 50
	}
	if c.MaxConcurrentReviews == 0 {
		c.MaxConcurrentReviews = DefaultMaxConcurrentReviews
	}
	if c.ReviewWait == 0 {
		c.ReviewWait = time.Second
	}
	if c.ReviewTimeout == 0 {
		c.ReviewTimeout = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// New returns the service.
func New(cfg Config) (*Service, error) {
	if cfg.CA == nil || cfg.Reviewer == nil || cfg.TrustRoots == nil {
		return nil, errors.New("identity service: a CA, a token reviewer and the trust roots are required")
	}
	cfg = cfg.withDefaults()
	limiters, err := lru.New[string, *rate.Limiter](10000)
	if err != nil {
		return nil, err
	}
	sources, err := lru.New[string, *rate.Limiter](10000)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg: cfg, limiters: limiters, sources: sources, reviews: make(chan struct{}, cfg.MaxConcurrentReviews),
		issued: prometheus.NewCounter(prometheus.CounterOpts{Name: "identity_certificates_issued_total", Help: "Workload certificates issued."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_certificates_refused_total", Help: "Certificate requests refused, by reason.",
		}, []string{"reason"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "identity_issuance_latency_ms", Help: "Time to review the token and sign, in milliseconds.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
	}
	if cfg.Registerer != nil {
		if err := errors.Join(cfg.Registerer.Register(s.issued), cfg.Registerer.Register(s.refused), cfg.Registerer.Register(s.latency)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ServeHTTP answers POST /v1/certificate.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		s.fail(w, http.StatusMethodNotAllowed, "method", "use POST")
		return
	}
	source := sourceIP(r.RemoteAddr)
	if !limiter(s.sources, source, s.cfg.SourceRatePerSecond, s.cfg.SourceBurst).Allow() {
		w.Header().Set("Retry-After", "1")
		s.fail(w, http.StatusTooManyRequests, "rate_limited_source", "too many requests from "+source)
		return
	}
	var req api.CertificateRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		s.fail(w, http.StatusBadRequest, "bad_request", "read request: "+err.Error())
		return
	}
	if len(body) > maxBodyBytes {
		s.fail(w, http.StatusRequestEntityTooLarge, "too_large", "the request is too large")
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, http.StatusBadRequest, "bad_request", "decode request: "+err.Error())
		return
	}
	csr, err := ParseCSR(req.CSR)
	if err != nil {
		s.fail(w, http.StatusBadRequest, "bad_csr", err.Error())
		return
	}
	if err := ca.CheckKey(csr.PublicKey); err != nil {
		var ce *ca.CSRError
		if errors.As(err, &ce) {
			s.fail(w, http.StatusBadRequest, ce.Reason, err.Error())
			return
		}
		s.fail(w, http.StatusBadRequest, "bad_csr", err.Error())
		return
	}
	if req.Token == "" {
		s.fail(w, http.StatusUnauthorized, "no_token", "a ServiceAccount token is required")
		return
	}
	ns, sa, err := CheckToken(req.Token, api.TokenAudience, time.Now())
	if err != nil {
		reason := "token_malformed"
		var te *TokenError
		if errors.As(err, &te) {
			reason = te.Reason
		}
		s.fail(w, http.StatusUnauthorized, reason, "the token was not accepted: "+err.Error())
		return
	}
	if status, reason, err := s.checkSource(source, ns, sa); err != nil {
		s.fail(w, status, reason, err.Error())
		return
	}
	user, status, reason, err := s.review(r.Context(), req.Token)
	if err != nil {
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		s.fail(w, status, reason, err.Error())
		return
	}
	id, err := s.idOf(user)
	if err != nil {
		s.fail(w, http.StatusForbidden, "not_a_service_account", err.Error())
		return
	}
	if !limiter(s.limiters, id.String(), s.cfg.RatePerSecond, s.cfg.Burst).Allow() {
		w.Header().Set("Retry-After", "1")
		s.fail(w, http.StatusTooManyRequests, "rate_limited", "too many requests for "+id.String())
		return
	}
	chain, err := s.cfg.CA.Sign(csr, id, s.cfg.Lifetime)
	if err != nil {
		var ce *ca.CSRError
		if errors.As(err, &ce) {
			status := http.StatusBadRequest
			if ce.Reason == "wrong_id" {
				status = http.StatusForbidden
			}
			s.fail(w, status, ce.Reason, err.Error())
			return
		}
		s.cfg.Log.Error("signing failed", "spiffe_id", id.String(), "error", err)
		s.fail(w, http.StatusInternalServerError, "sign", "signing failed")
		return
	}
	var out strings.Builder
	for _, c := range chain {
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	s.issued.Inc()
	s.latency.Observe(float64(time.Since(start).Microseconds()) / 1000)
	s.cfg.Log.Info("certificate issued", "spiffe_id", id.String(), "serial", chain[0].SerialNumber.Text(16),
		"not_after", chain[0].NotAfter, "issuer", chain[0].Issuer.CommonName)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(api.CertificateResponse{Certificate: out.String(), TrustRoots: string(s.cfg.TrustRoots())})
}

// checkSource refuses, before any TokenReview, a token whose ServiceAccount
// is not that of the pod the request comes from: a forged token (the local
// check verifies no signature) then costs nothing, and a real one works
// only from its own pod. Without a PodBySourceIP, anything passes.
func (s *Service) checkSource(source, namespace, serviceAccount string) (status int, reason string, err error) {
	if s.cfg.PodBySourceIP == nil {
		return 0, "", nil
	}
	ip, perr := netip.ParseAddr(source)
	if perr != nil {
		return http.StatusForbidden, "unknown_source", fmt.Errorf("the source address %q is not an IP address", source)
	}
	podNS, podSA, ok := s.cfg.PodBySourceIP(ip.Unmap())
	if !ok {
		// A pod so new that the controller's cache has not seen its IP
		// yet lands here too: its proxy retries with backoff.
		return http.StatusForbidden, "unknown_source", fmt.Errorf("no running pod has the address %s (a pod just started: retry shortly)", ip.Unmap())
	}
	if podNS != namespace || podSA != serviceAccount {
		return http.StatusForbidden, "token_not_for_source", fmt.Errorf("the token is for ServiceAccount %s/%s, but the request comes from a pod of %s/%s",
			namespace, serviceAccount, podNS, podSA)
	}
	return 0, "", nil
}

// idOf maps "system:serviceaccount:<ns>:<sa>" to its SPIFFE ID.
func (s *Service) idOf(user string) (spiffeid.ID, error) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return spiffeid.ID{}, fmt.Errorf("the token belongs to %q, not a ServiceAccount", user)
	}
	return spiffeid.New(s.cfg.TrustDomain, ns, sa)
}

// review has the API server review a token, in one of the bounded review
// slots; it waits for a slot at most ReviewWait. On failure it returns the
// status and reason to answer with.
func (s *Service) review(ctx context.Context, token string) (user string, status int, reason string, err error) {
	wait := time.NewTimer(s.cfg.ReviewWait)
	defer wait.Stop()
	select {
	case s.reviews <- struct{}{}:
		defer func() { <-s.reviews }()
	case <-wait.C:
		return "", http.StatusServiceUnavailable, "busy", fmt.Errorf("%d token reviews are in flight; retry shortly", cap(s.reviews))
	case <-ctx.Done():
		return "", http.StatusServiceUnavailable, "busy", ctx.Err()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ReviewTimeout)
	defer cancel()
	user, err = s.cfg.Reviewer.Review(ctx, token, api.TokenAudience)
	if err != nil {
		return "", http.StatusUnauthorized, "token_invalid", fmt.Errorf("the token was not accepted: %w", err)
	}
	return user, 0, "", nil
}

// sourceIP is the address part of a request's RemoteAddr.
func sourceIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// limiter returns key's limiter from an LRU of them, making it when absent.
func limiter(c *lru.Cache[string, *rate.Limiter], key string, perSecond float64, burst int) *rate.Limiter {
	if l, ok := c.Get(key); ok {
		return l
	}
	l := rate.NewLimiter(rate.Limit(perSecond), burst)
	if prev, ok, _ := c.PeekOrAdd(key, l); ok {
		return prev
	}
	return l
}

func (s *Service) fail(w http.ResponseWriter, status int, reason, msg string) {
	s.refused.WithLabelValues(reason).Inc()
	s.cfg.Log.Warn("certificate request refused", "reason", reason, "error", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.Error{Error: msg, Reason: reason})
}
