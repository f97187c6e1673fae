package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/endpoints"
)

// The fixed ports of a meshed pod (docs/DESIGN.md).
const (
	InboundPort  = meshnames.ProxyInboundPort
	OutboundPort = meshnames.ProxyOutboundPort
	AdminPort    = meshnames.ProxyAdminPort
	// ProxyUID is the user the proxy runs as; the redirect rules exclude it.
	ProxyUID = meshnames.ProxyUID
)

// DefaultOpaquePorts are server-speaks-first protocols, where detection
// would only add delay: SMTP, MySQL, Galera, PostgreSQL, Redis,
// Elasticsearch transport and memcached.
var DefaultOpaquePorts = []uint16{25, 587, 3306, 4444, 5432, 6379, 9300, 11211}

// SideConfig configures one direction's listener.
type SideConfig struct {
	// Listen is the address to accept on, e.g. "127.0.0.1:4140". Required.
	Listen string
	// Upstream, when set, is where every connection goes (explicit mode).
	// When empty, each connection goes to its original destination (redirect
	// mode): for inbound that is the pod's own IP, never loopback, so ports
	// the application binds to 127.0.0.1 only stay private.
	Upstream string
	// UpstreamIdentity, with Upstream, makes the upstream a meshed peer that
	// must prove this SPIFFE ID over mutual TLS.
	UpstreamIdentity spiffeid.ID
}

// Config configures the proxy. Fields left zero take the defaults given.
type Config struct {
	// Admin is the admin server's address (/live, /ready, /metrics). Default: ":4191".
	Admin string
	// Outbound is the listener for traffic leaving the pod; nil means none.
	Outbound *SideConfig
	// Inbound is the listener for traffic into the pod; nil means none.
	Inbound *SideConfig
	// Endpoints resolves outbound destinations to endpoint sets (the
	// discovery client, or a static Table); nil forwards every connection to
	// its destination as it is.
	Endpoints endpoints.Resolver
	// Identity is the proxy's workload certificate. Without it the proxy
	// neither accepts nor makes meshed connections.
	Identity certs.Source
	// TLSHandshakeTimeout bounds an inbound meshed handshake. Default: 10s.
	TLSHandshakeTimeout time.Duration
	// RequireTLSPorts are inbound ports that accept only meshed clients:
	// plaintext HTTP gets 403, other plaintext is closed. Clients on the node
	// itself (AdminAllow: the kubelet's probes) are let through.
	RequireTLSPorts []uint16
	// AdminAllow are the node's own addresses, where the kubelet's probes come
	// from (see RequireTLSPorts). They grant nothing on the admin port: its
	// sensitive endpoints answer only loopback and ControllerID.
	AdminAllow []netip.Prefix
	// ControllerID is the control plane's SPIFFE ID: over mutual TLS on the
	// admin port, the only client that may use /tap, /identity,
	// /destinations, POST /renew and pprof (besides loopback in plaintext).
	// Zero: only loopback may.
	ControllerID spiffeid.ID
	// DetectTimeout is how long detection waits for a client's first bytes
	// before calling the connection opaque. Default: 1s.
	DetectTimeout time.Duration
	// OpaquePorts skip detection (server-speaks-first protocols). Default:
	// DefaultOpaquePorts. An empty, non-nil slice means none.
	OpaquePorts []uint16
	// DrainTimeout bounds the graceful drain on shutdown: in-flight requests
	// and connections get this long to finish. Default: 30s.
	DrainTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (HTTP/1 and HTTP/2). Default: 64 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds how long a client may take to send a request's
	// headers (slowloris). Default: 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client connections idle this long. Default: 90s.
	IdleTimeout time.Duration
	// InboundPolicy, when set, decides who may reach the application
	// (authorization and rate limits); nil lets everyone in.
	InboundPolicy *authz.Guard
	// ClusterNetworks are the cluster's pod and Service networks. Outbound
	// plaintext connections into them are counted
	// (plaintext_connections_total); the discovery client (Endpoints) is
	// what keeps unknown destinations in them from going out in plaintext.
	// Default: none.
	ClusterNetworks endpoints.Networks
	// LocalAddrs are the pod's own addresses: a meshed endpoint at one of
	// them is the pod itself, reached directly (the connection never leaves
	// the pod) rather than over mutual TLS its application cannot speak.
	// Default: none; mesh-proxy in a pod passes its interfaces' addresses.
	LocalAddrs []netip.Addr
	// QueueTimeout is how long an outbound request waits for an endpoint
	// when none can take it (none ready, or all ejected for failing) before
	// it fails with 503. Negative: fail at once. Default: 3s.
	QueueTimeout time.Duration
	// MaxConcurrentStreams bounds the HTTP/2 streams a client may open at once
	// on one connection. Default: 250.
	MaxConcurrentStreams uint32
	// AllowHalfClose keeps an HTTP/1 request going when its client closes
	// its sending side after the request (shutdown(SHUT_WR)), as a few
	// clients do while still waiting for the answer. By default a client's
	// closed connection, like a reset one, cancels its request upstream:
	// most clients that close are gone (a timeout, a killed process).
	AllowHalfClose bool
	// ReadyWhen, when set, keeps the proxy unready (/ready answers 503, so
	// the pod's application does not start and no Service sends it traffic)
	// until it is closed: in a pod, until its inbound policy arrived.
	ReadyWhen <-chan struct{}
	// ReadyWhenWhat says what ReadyWhen waits for, in the log line repeated
	// while the proxy waits.
	ReadyWhenWhat string
	// Pprof serves Go's profiles on the admin port under /debug/pprof/
	// (loopback and ControllerID only).
	Pprof bool
	// Log receives the proxy's logs. Default: discard.
	Log *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Admin == "" {
		c.Admin = fmt.Sprintf(":%d", AdminPort)
	}
	if c.DetectTimeout == 0 {
		c.DetectTimeout = time.Second
	}
	if c.OpaquePorts == nil {
		c.OpaquePorts = DefaultOpaquePorts
	}
	if c.TLSHandshakeTimeout == 0 {
		c.TLSHandshakeTimeout = 10 * time.Second
	}
	if c.QueueTimeout == 0 {
		c.QueueTimeout = 3 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 90 * time.Second
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 250
	}
	if c.Endpoints == nil {
		c.Endpoints = (*endpoints.Table)(nil)
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports configuration the proxy cannot run with.
func (c Config) Validate() error {
	if c.Outbound == nil && c.Inbound == nil {
		return errors.New("nothing to proxy: configure an outbound or an inbound listener")
	}
	for _, side := range [...]struct {
		name string
		s    *SideConfig
	}{{"outbound", c.Outbound}, {"inbound", c.Inbound}} { // in order: the same config, the same error
		name, s := side.name, side.s
		if s == nil {
			continue
		}
		if _, _, err := net.SplitHostPort(s.Listen); err != nil {
			return fmt.Errorf("%s listen address %q: %w", name, s.Listen, err)
		}
		if s.Upstream != "" {
			if _, _, err := net.SplitHostPort(s.Upstream); err != nil {
				return fmt.Errorf("%s upstream %q: %w", name, s.Upstream, err)
			}
		}
		if s.UpstreamIdentity != (spiffeid.ID{}) {
			if s.Upstream == "" {
				return fmt.Errorf("%s upstream identity needs an upstream", name)
			}
			if c.Identity == nil {
				return fmt.Errorf("%s upstream identity needs the proxy's own certificate", name)
			}
		}
	}
	if _, _, err := net.SplitHostPort(c.withDefaults().Admin); err != nil {
		return fmt.Errorf("admin address %q: %w", c.Admin, err)
	}
	if c.DetectTimeout < 0 || c.DrainTimeout < 0 || c.ReadHeaderTimeout < 0 || c.IdleTimeout < 0 {
		return errors.New("timeouts must not be negative")
	}
	return nil
}
