package podstart

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	identity "github.com/meshctl/meshctl/identity/client"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/discovery"
)

// Config configures a proxy's start.
type Config struct {
	// Proxy configures the proxy. Run sets its Identity from the fields
	// below and, with the identity service, its Endpoints (with Discovery),
	// InboundPolicy and ReadyWhen (with PodName). Proxy.ControllerID is the
	// SPIFFE ID the controller must prove. Proxy.Log receives every log.
	Proxy proxy.Config

	// CertFile and KeyFile are the workload certificate (PEM, with its
	// chain) and its key: explicit mode. They are re-read when they change.
	CertFile, KeyFile string
	// RootsFile is the trust bundle file (PEM). With CertFile and KeyFile,
	// it holds the trust anchors meshed peers must chain to, re-read when
	// it changes. With IdentityAddr, it only bootstraps: it verifies the
	// controller until its first answer, which brings the bundle used from
	// then on; a later change of the file makes the proxy ask the
	// controller again, and is never trusted itself.
	RootsFile string

	// IdentityAddr is the controller's control API (host:port): the proxy
	// gets its certificate from it, and keeps it renewed, instead of
	// reading CertFile and KeyFile. It needs RootsFile, ID and TokenFile.
	IdentityAddr string
	// ID is the workload's SPIFFE ID, the one its certificate names.
	ID spiffeid.ID
	// TokenFile holds the projected ServiceAccount token the proxy proves
	// its ServiceAccount with.
	TokenFile string
	// Discovery, with IdentityAddr, finds outbound destinations' endpoints
	// and identities through the controller's destination service, unless
	// Proxy.Endpoints is set (a static table).
	Discovery bool
	// PodName, with IdentityAddr and Discovery, follows the pod's inbound
	// policy from the controller. Nothing gets in, and the proxy is not
	// ready, until the first policy arrived; Proxy.InboundPolicy is
	// replaced.
	PodName string

	// listening, when set, is called once the proxy listens (tests).
	listening func(*proxy.Proxy)
}

// Run gives the proxy its identity, waits for its first certificate when it
// comes from the identity service, and runs the proxy until ctx ends; then
// the proxy drains (proxy.Proxy.Run) and Run returns once everything it
// started has stopped. A ctx that ends before the first certificate arrived
// is no error.
func Run(ctx context.Context, cfg Config) error {
	ctx, cancel := context.WithCancel(ctx)
	w := workers{done: make(chan error, 2)}
	err := run(ctx, &cfg, &w)
	if werr := w.wait(cancel); err == nil {
		err = werr
	}
	return err
}

// run is Run but for stopping the workers it started.
func run(ctx context.Context, cfg *Config, w *workers) error {
	if cfg.IdentityAddr != "" && (cfg.CertFile != "" || cfg.KeyFile != "") {
		return errors.New("use either the identity service or certificate files, not both")
	}
	if cfg.Proxy.Log == nil {
		cfg.Proxy.Log = slog.New(slog.DiscardHandler)
	}
	log := cfg.Proxy.Log
	if out := cfg.Proxy.Outbound; out != nil {
		copied := *out // run sets nothing in the caller's SideConfig
		cfg.Proxy.Outbound = &copied
	}

	var certificate <-chan struct{} // closed once the identity service issued one
	var discover func(context.Context) error
	switch {
	case cfg.IdentityAddr != "":
		if cfg.RootsFile == "" {
			return errors.New("the identity service needs the trust bundle file")
		}
		client, err := identity.New(identity.Config{
			Addr: cfg.IdentityAddr, ControllerID: cfg.Proxy.ControllerID, ID: cfg.ID,
			TokenFile: cfg.TokenFile, RootsFile: cfg.RootsFile, Log: log.With("component", "identity"),
		})
		if err != nil {
			return err
		}
		cfg.Proxy.Identity, certificate = client, client.Ready()
		if cfg.Discovery && (cfg.Proxy.Endpoints == nil || cfg.PodName != "") {
			if discover, err = followController(cfg); err != nil {
				return err
			}
		}
		w.start(ctx, client.Run)
	case cfg.CertFile != "" || cfg.KeyFile != "" || cfg.RootsFile != "":
		files, err := certs.NewFiles(certs.FilesConfig{Cert: cfg.CertFile, Key: cfg.KeyFile, Roots: cfg.RootsFile, Log: log})
		if err != nil {
			return fmt.Errorf("the workload certificate: %w", err)
		}
		cfg.Proxy.Identity = files
		w.start(ctx, files.Run)
	}
	if err := cfg.Proxy.Validate(); err != nil {
		return err
	}

	if certificate != nil {
		log.Info("waiting for the workload certificate", "spiffe_id", cfg.ID.String(), "controller", cfg.IdentityAddr)
		select {
		case <-certificate:
		case <-ctx.Done():
			return nil
		}
	}
	if discover != nil {
		w.start(ctx, discover) // with the certificate it presents
	}
	p, err := proxy.New(cfg.Proxy)
	if err != nil {
		return err
	}
	if err := p.Listen(); err != nil {
		return err
	}
	if cfg.listening != nil {
		cfg.listening(p)
	}
	return p.Run(ctx)
}

// followController makes the discovery client: the proxy's endpoints, and
// with a pod name its inbound policy, from the controller. It returns the
// client's Run.
func followController(cfg *Config) (func(context.Context) error, error) {
	dcfg := discovery.Config{
		Addr: cfg.IdentityAddr, ControllerID: cfg.Proxy.ControllerID, Identity: cfg.Proxy.Identity,
		ClusterNetworks: cfg.Proxy.ClusterNetworks, Log: cfg.Proxy.Log.With("component", "discovery"),
	}
	if cfg.PodName != "" {
		// Nothing gets in until the pod's own policy arrives, and the proxy
		// stays unready until then: never a guess that could be wider than
		// the policy.
		cfg.Proxy.InboundPolicy = authz.NewPending()
		cfg.Proxy.ReadyWhen, cfg.Proxy.ReadyWhenWhat = cfg.Proxy.InboundPolicy.Ready(), "the pod's inbound policy from the controller"
		dcfg.Pod, dcfg.InboundPolicy = cfg.PodName, cfg.Proxy.InboundPolicy.Update
	}
	dc, err := discovery.New(dcfg)
	if err != nil {
		return nil, err
	}
	if cfg.Proxy.Endpoints == nil {
		cfg.Proxy.Endpoints = dc
	}
	return dc.Run, nil
}

// workers are the goroutines that keep the proxy's identity and discovery
// going beside it.
type workers struct {
	done    chan error
	running int
}

// start runs run(ctx) in a goroutine; its error, if any, comes out on done.
func (w *workers) start(ctx context.Context, run func(context.Context) error) {
	w.running++
	go func() { w.done <- run(ctx) }()
}

// wait stops the workers, waits for them and returns the first error.
func (w *workers) wait(cancel context.CancelFunc) error {
	cancel()
	var first error
	for ; w.running > 0; w.running-- {
		if err := <-w.done; first == nil {
			first = err
		}
	}
	return first
}
