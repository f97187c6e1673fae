package controller

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshctl/meshctl/install/podpatch"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// Limits of the controller's requests to the API server.
const (
	// ClientQPS and ClientBurst bound the controller's requests to the API
	// server (client-go's default, 5/s, would queue a rollout's TokenReviews
	// when they share the client).
	ClientQPS   = 100
	ClientBurst = 200
	// ReviewQPS and ReviewBurst bound the TokenReviews, made with a client of
	// their own when Config.RestConfig is set: every certificate issuance is
	// one, and a rollout of many pods asks at once.
	ReviewQPS   = 50
	ReviewBurst = 100
)

// Config configures mesh-controller.
type Config struct {
	// Client talks to the Kubernetes API. Required.
	Client kubernetes.Interface
	// RestConfig is the connection Client was made from. When set,
	// TokenReviews get a client of their own from a copy of it (ReviewQPS,
	// ReviewBurst), so that issuance and the informers cannot starve each
	// other. Default: nil, reviews share Client.
	RestConfig *rest.Config
	// Dynamic reads custom resources (HTTPRoutes, AuthorizationPolicies);
	// nil: none are read.
	Dynamic dynamic.Interface
	// DefaultInboundPolicy is the inbound policy of servers that no
	// annotation or AuthorizationPolicy speaks for (meshnames.Default*).
	// Default: all-unauthenticated.
	DefaultInboundPolicy string
	// Namespace the control plane lives in. Default: meshctl.
	Namespace string
	// TrustDomain of the mesh. Default: cluster.local.
	TrustDomain string
	// ControlAddr is the control API's address. Default: ":8443".
	ControlAddr string
	// AdminAddr is the admin server's address. Default: ":9990".
	AdminAddr string
	// WebhookAddr serves the proxy injector (HTTPS, the certificate from the
	// Secret mesh-webhook-tls). Default: ":9443".
	WebhookAddr string
	// AdminAPIAddr serves the aggregated admin API (admin.meshctl.io,
	// package adminapi; HTTPS, the webhook's certificate). Default: ":8089".
	AdminAPIAddr string
	// Injector configures injection; the webhook is served only when
	// Injector.ProxyImage is set. Injector.ClusterNetworks (the cluster's
	// pod and Service networks, flag --cluster-networks) reaches every
	// injected proxy.
	Injector podpatch.Config
	// ClusterDomain is the cluster's DNS domain. Default: cluster.local.
	ClusterDomain string
	// LeafLifetime is the lifetime of workload certificates, at most
	// MaxLeafLifetime. Default: 24h.
	LeafLifetime time.Duration
	// Identity names this replica in leader elections (route status).
	// Default: the host name, which is the pod's name.
	Identity string
	// Log receives the controller's logs. Default: discard.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = meshnames.Namespace
	}
	if c.TrustDomain == "" {
		c.TrustDomain = meshnames.TrustDomain
	}
	if c.ControlAddr == "" {
		c.ControlAddr = fmt.Sprintf(":%d", meshnames.ControlPort)
	}
	if c.AdminAddr == "" {
		c.AdminAddr = fmt.Sprintf(":%d", meshnames.AdminPort)
	}
	if c.WebhookAddr == "" {
		c.WebhookAddr = fmt.Sprintf(":%d", meshnames.WebhookPort)
	}
	if c.AdminAPIAddr == "" {
		c.AdminAPIAddr = fmt.Sprintf(":%d", meshnames.AdminAPIPort)
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = meshnames.ClusterDomain
	}
	if c.Injector.TrustDomain == "" {
		c.Injector.TrustDomain = c.TrustDomain
	}
	if c.Injector.ControlPlaneNamespace == "" {
		c.Injector.ControlPlaneNamespace = c.Namespace
	}
	if c.Injector.ControllerAddr == "" {
		c.Injector.ControllerAddr = fmt.Sprintf("%s.%s.svc.%s:%d", meshnames.ServiceName, c.Namespace, c.ClusterDomain, meshnames.ControlPort)
	}
	if c.Injector.TrustRootsConfigMap == "" {
		c.Injector.TrustRootsConfigMap = meshnames.TrustRootsConfigMap
	}
	if c.LeafLifetime == 0 {
		c.LeafLifetime = 24 * time.Hour
	}
	if c.DefaultInboundPolicy == "" {
		c.DefaultInboundPolicy = meshnames.DefaultAllUnauthenticated
	}
	if c.Injector.DefaultInboundPolicy == "" {
		c.Injector.DefaultInboundPolicy = c.DefaultInboundPolicy
	}
	if c.Identity == "" {
		c.Identity, _ = os.Hostname()
		if c.Identity == "" {
			c.Identity = fmt.Sprintf("mesh-controller-%d", os.Getpid())
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports configuration the controller cannot run with.
func (c Config) Validate() error {
	if c.Client == nil {
		return errors.New("a Kubernetes client is required")
	}
	c = c.withDefaults()
	if _, err := spiffeid.New(c.TrustDomain, c.Namespace, meshnames.ServiceAccount); err != nil {
		return err
	}
	if !meshnames.ValidDefaultPolicy(c.DefaultInboundPolicy) {
		return fmt.Errorf("default inbound policy %q: want all-unauthenticated, all-authenticated or deny", c.DefaultInboundPolicy)
	}
	if c.Injector.ProxyImage != "" {
		if err := c.Injector.Validate(); err != nil {
			return err
		}
	}
	if c.Injector.ClusterNetworks != "" {
		if _, err := podpatch.ParseClusterNetworks(c.Injector.ClusterNetworks); err != nil {
			return fmt.Errorf("cluster networks: %w", err)
		}
	}
	if c.LeafLifetime < time.Minute {
		return errors.New("the leaf lifetime must be at least a minute")
	}
	if c.LeafLifetime > meshnames.MaxLeafLifetime {
		return fmt.Errorf("a leaf lifetime of %v is too long (at most %v)", c.LeafLifetime, meshnames.MaxLeafLifetime)
	}
	return nil
}

// ID is the SPIFFE ID the controller serves the control API as.
func (c Config) ID() spiffeid.ID {
	c = c.withDefaults()
	return spiffeid.ID{TrustDomain: c.TrustDomain, Namespace: c.Namespace, ServiceAccount: meshnames.ServiceAccount}
}
