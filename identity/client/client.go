// Package client is the proxy's side of identity: it makes a private key in
// memory, proves the workload's ServiceAccount to mesh-controller with a
// projected token, gets a certificate for the workload's SPIFFE ID, renews it
// at 70% of its lifetime (with jittered backoff when the controller cannot
// be reached, while the current certificate keeps serving). It implements
// certs.Source. It links neither client-go nor the CA.
//
// Trust roots: the mounted trust bundle file is only the bootstrap, what
// the first connection to the controller is verified with. Every
// certificate the controller issues comes with its trust bundle (read from
// the control plane's own ConfigMap, which only the control plane can
// write); from the first one on, that bundle is what peers and the
// controller are verified with, and each renewal brings the current one
// (a trust-anchor rotation has every proxy renew at each stage). Later
// changes of the file are never trusted: the file's copy lives in the
// workload's namespace, where whoever may write ConfigMaps could put their
// own root in it. A change of the file only makes the client ask the
// controller (a renewal), and a file that still disagrees is logged at warn.
package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Config configures the client.
type Config struct {
	// Addr is the controller's control API, host:port. Required.
	Addr string
	// ControllerID is the SPIFFE ID the controller must prove. Required.
	ControllerID spiffeid.ID
	// ID is this workload's SPIFFE ID (from its namespace and ServiceAccount). Required.
	ID spiffeid.ID
	// TokenFile holds the projected ServiceAccount token (re-read for every
	// request: the kubelet refreshes it). Required.
	TokenFile string
	// RootsFile holds the bootstrap trust bundle (PEM, one or more anchors):
	// it verifies the controller until its first answer, which brings the
	// bundle used from then on. It is watched: a change makes the client ask
	// the controller for its bundle again, never trust the file. Required.
	RootsFile string
	// RenewAt is the fraction of a certificate's lifetime after which it is
	// renewed. Default: 0.7.
	RenewAt float64
	// Poll is how often RootsFile is checked for changes. Default: 5s.
	Poll time.Duration
	// Log receives issuance and renewal events. Default: discard.
	Log *slog.Logger
}

// Client keeps a workload certificate current.
type Client struct {
	cfg     Config
	key     crypto.Signer
	current atomic.Pointer[certs.Bundle]
	ready   chan struct{}
	// renewNow wakes Run for an early renewal (buffered: one pending ask is enough).
	renewNow chan struct{}
	http     *http.Client
	// trust verifies the controller: the file's roots until the controller
	// first answers, the controller's bundle from then on.
	trust atomic.Pointer[x509.CertPool]

	// Only Run's goroutine touches the fields below.

	// fileRoots is the trust bundle file's last contents.
	fileRoots []byte
	// controllerRoots is the controller's bundle from its last answer (nil
	// until the first): what peers and the controller are verified with.
	controllerRoots []*x509.Certificate
	// fileChanged records that the file changed since the last issuance and
	// disagreed with the controller's bundle: the renewal it asked for says
	// whether someone else wrote it.
	fileChanged bool
}

// withDefaults returns the configuration with its unset fields at their
// defaults.
func (c Config) withDefaults() Config {
	if c.RenewAt == 0 {
		c.RenewAt = 0.7
	}
	if c.Poll == 0 {
		c.Poll = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// New makes the workload's key; nothing is requested until Run.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" || cfg.TokenFile == "" || cfg.RootsFile == "" {
		return nil, errors.New("identity: the controller address, token file and trust roots file are required")
	}
	if err := cfg.ID.Validate(); err != nil {
		return nil, fmt.Errorf("identity: workload ID: %w", err)
	}
	if err := cfg.ControllerID.Validate(); err != nil {
		return nil, fmt.Errorf("identity: controller ID: %w", err)
	}
	cfg = cfg.withDefaults()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	c := &Client{cfg: cfg, key: key, ready: make(chan struct{}), renewNow: make(chan struct{}, 1)}
	c.http = c.newHTTPClient()
	return c, nil
}

// Bundle returns the current certificate; nil until Ready.
func (c *Client) Bundle() *certs.Bundle { return c.current.Load() }

// RenewNow asks Run to get a new certificate, and with it the controller's
// current trust bundle, now rather than at 70 % of the current one's life
// (`meshctl identity rotate-issuer` and `rotate-trust-anchor` ask every
// proxy through its admin port).
func (c *Client) RenewNow() {
	select {
	case c.renewNow <- struct{}{}:
	default:
	}
}

// Ready is closed once the first certificate is in place.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Run obtains a certificate, then keeps it renewed and the trust bundle
// current until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	backoff := time.Second
	renew := time.NewTimer(0)
	defer renew.Stop()
	poll := time.NewTicker(c.cfg.Poll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			if err := c.refreshRoots(); err != nil {
				c.cfg.Log.Warn("the trust bundle file changed but is not usable; ignoring it", "error", err)
			}
			continue
		case <-renew.C:
		case <-c.renewNow:
			c.cfg.Log.Info("renewing the certificate now, as asked")
		}
		b, err := c.obtain(ctx)
		if err != nil {
			wait := backoff/2 + mrand.N(backoff) // jitter: between half and 1.5 times
			if cur := c.Bundle(); cur != nil {
				// Never wait past the end of the current certificate's life.
				wait = min(wait, max(time.Until(cur.Leaf().NotAfter)/4, time.Second))
			}
			c.cfg.Log.Warn("could not get a certificate; retrying", "error", err, "retry_in", wait.Round(time.Millisecond))
			backoff = min(2*backoff, time.Minute)
			renew.Reset(wait)
			continue
		}
		backoff = time.Second
		first := c.current.Load() == nil
		c.current.Store(b)
		c.compareFile(first)
		leaf := b.Leaf()
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		next := time.Until(leaf.NotBefore.Add(time.Duration(float64(life) * c.cfg.RenewAt)))
		next += time.Duration(mrand.Int64N(int64(life/50) + 1)) // spread renewals of pods started together
		c.cfg.Log.Info("certificate issued", "spiffe_id", b.ID.String(), "serial", leaf.SerialNumber.Text(16),
			"not_after", leaf.NotAfter, "renew_in", next.Round(time.Second))
		select {
		case <-c.ready:
		default:
			close(c.ready)
		}
		renew.Reset(max(next, time.Second))
	}
}

// refreshRoots follows the trust bundle file. Before the controller has
// answered, the file is the bootstrap and a change of it is taken (it
// verifies the controller). After, the file is never trusted: a change that
// disagrees with the controller's bundle only asks the controller again.
func (c *Client) refreshRoots() error {
	data, err := os.ReadFile(c.cfg.RootsFile)
	if err != nil {
		return err
	}
	if bytes.Equal(data, c.fileRoots) {
		return nil
	}
	c.fileRoots = data // a bad file is reported once, not at every poll
	pool, rootCerts, err := certs.ParseRoots(data)
	if err != nil {
		return err
	}
	if c.controllerRoots == nil {
		c.trust.Store(pool)
		c.cfg.Log.Info("bootstrap trust bundle updated", "roots", len(rootCerts))
		return nil
	}
	if sameRoots(rootCerts, c.controllerRoots) {
		c.cfg.Log.Debug("the trust bundle file now matches the controller's")
		return nil
	}
	// A rotation changes the controller's bundle first and the file a
	// minute or two later, and a bundle edited by hand reaches the file
	// first: either way the controller says which is current.
	c.fileChanged = true
	c.cfg.Log.Info("the trust bundle file changed; asking the controller for the current bundle (the file is not trusted)",
		"file_roots", fingerprints(rootCerts), "controller_roots", fingerprints(c.controllerRoots))
	c.RenewNow()
	return nil
}

// compareFile logs, after an issuance, how the file compares with the
// controller's bundle: at warn when the file disagrees on the first
// issuance (the file was the bootstrap) or after the client asked the
// controller because the file changed; at info when a renewal brought a
// new bundle the file has not caught up with yet (a rotation).
func (c *Client) compareFile(first bool) {
	asked := c.fileChanged || first
	c.fileChanged = false
	_, fileCerts, err := certs.ParseRoots(c.fileRoots)
	if err != nil || sameRoots(fileCerts, c.controllerRoots) {
		return
	}
	log := c.cfg.Log.Info
	msg := "the trust bundle file differs from the controller's; the controller's is used (the file follows within a minute or two after a rotation)"
	if asked {
		log = c.cfg.Log.Warn
		msg = "the trust bundle file differs from the controller's; the file is ignored (the controller's bundle comes from the control plane's own ConfigMap; the namespace's copy may have been written by someone else)"
	}
	log(msg, "file", c.cfg.RootsFile, "file_roots", fingerprints(fileCerts), "controller_roots", fingerprints(c.controllerRoots))
}

// sameRoots reports whether two bundles hold the same certificates.
func sameRoots(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		found := false
		for _, y := range b {
			found = found || x.Equal(y)
		}
		if !found {
			return false
		}
	}
	return true
}

func fingerprints(cs []*x509.Certificate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = certs.Fingerprint(c)
	}
	return out
}

// obtain asks the controller for a certificate and takes the trust bundle
// that comes with it. Until the controller has answered once, the
// controller is verified with the file's roots.
func (c *Client) obtain(ctx context.Context) (*certs.Bundle, error) {
	if c.controllerRoots == nil {
		rootsPEM, err := os.ReadFile(c.cfg.RootsFile)
		if err != nil {
			return nil, fmt.Errorf("read the bootstrap trust roots: %w", err)
		}
		pool, _, err := certs.ParseRoots(rootsPEM)
		if err != nil {
			return nil, fmt.Errorf("the bootstrap trust roots: %w", err)
		}
		c.fileRoots = rootsPEM
		c.trust.Store(pool)
	}
	token, err := os.ReadFile(c.cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("read token: %w", err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{c.cfg.ID.URL()}}, c.key)
	if err != nil {
		return nil, fmt.Errorf("make certificate request: %w", err)
	}
	body, err := json.Marshal(api.CertificateRequest{
		CSR:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		Token: strings.TrimSpace(string(token)),
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+c.cfg.Addr+api.CertificatePath, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the controller: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the controller's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("the controller refused (%s): %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("the controller answered %s", resp.Status)
	}
	var cr api.CertificateResponse
	if err := json.Unmarshal(data, &cr); err != nil {
		return nil, fmt.Errorf("decode the controller's answer: %w", err)
	}
	var chain [][]byte
	for rest := []byte(cr.Certificate); ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		chain = append(chain, block.Bytes)
	}
	if len(chain) == 0 {
		return nil, errors.New("the controller's answer holds no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("parse the certificate: %w", err)
	}
	if id, err := spiffeid.FromCertificate(leaf); err != nil || id != c.cfg.ID {
		return nil, fmt.Errorf("the controller issued a certificate for %v, not %s", id, c.cfg.ID)
	}
	pool, rootCerts, err := certs.ParseRoots([]byte(cr.TrustRoots))
	if err != nil {
		return nil, fmt.Errorf("the controller's trust bundle: %w", err)
	}
	// A bundle the certificate does not chain to would have every peer
	// refuse it: keep the current certificate and bundle, and retry.
	if _, err := certs.VerifyChain(chain, pool, time.Now()); err != nil {
		return nil, fmt.Errorf("the certificate does not chain to the controller's trust bundle: %w", err)
	}
	if !sameRoots(rootCerts, c.controllerRoots) {
		c.cfg.Log.Info("trust bundle from the controller", "roots", fingerprints(rootCerts))
	}
	c.controllerRoots = rootCerts
	c.trust.Store(pool)
	return &certs.Bundle{
		Certificate: &tls.Certificate{Certificate: chain, PrivateKey: c.key, Leaf: leaf},
		ID:          c.cfg.ID, Roots: pool, RootCerts: rootCerts,
	}, nil
}

// newHTTPClient talks HTTP/2 over TLS to the controller, which must prove
// its SPIFFE ID against the current trust bundle. It is for issuance only:
// it never presents the workload certificate.
func (c *Client) newHTTPClient() *http.Client {
	tlsCfg := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below, by SPIFFE ID against the trust bundle
		VerifyConnection: func(cs tls.ConnectionState) error {
			raw := make([][]byte, len(cs.PeerCertificates))
			for i, pc := range cs.PeerCertificates {
				raw[i] = pc.Raw
			}
			id, err := certs.VerifyChain(raw, c.trust.Load(), time.Now())
			if err != nil {
				return fmt.Errorf("the controller's certificate: %w", err)
			}
			if id != c.cfg.ControllerID {
				return fmt.Errorf("the controller is %s, expected %s", id, c.cfg.ControllerID)
			}
			return nil
		},
		// No client certificate, ever: issuance is authenticated by the
		// token alone, and a certificate that expired while the controller
		// was away must not stand in the way of its own renewal.
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true, Proxy: nil}}
}
