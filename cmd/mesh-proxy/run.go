package main

import (
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/logging"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/portspec"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/podstart"
)

type runOptions struct {
	admin            string
	adminAllow       string
	certFile         string
	keyFile          string
	rootsFile        string
	upstreamIdentity string
	requireTLSPorts  string
	kubeletProbes    string
	halfClose        bool
	identityAddr     string
	controllerID     string
	tokenFile        string
	trustDomain      string
	namespace        string
	serviceAccount   string
	handshake        time.Duration
	outboundListen   string
	outboundUpstream string
	inboundListen    string
	inboundUpstream  string
	endpointsFile    string
	discovery        bool
	detectTimeout    time.Duration
	opaquePorts      string
	drainTimeout     time.Duration
	podName          string
	defaultInbound   string
	queueTimeout     time.Duration
	clusterNetworks  string
	maxHeaderBytes   int
	readHeader       time.Duration
	idle             time.Duration
	maxStreams       uint32
	pprof            bool
	logLevel         string
	logFormat        string
}

func newRunCommand() *cobra.Command {
	o := runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Proxy traffic",
		Long: `Proxy a pod's traffic, or, in explicit mode, traffic from a listen address to an upstream.

Without --outbound-listen or --inbound-listen it runs as in a pod: outbound on
127.0.0.1:4140 and inbound on 0.0.0.0:4143, each connection going to the
original destination the redirect rules (mesh-proxy init) recorded. With them,
it runs in explicit mode, for tests and benchmarks:

  mesh-proxy run --admin 127.0.0.1:4191 \
    --outbound-listen 127.0.0.1:8000 --outbound-upstream 10.0.0.5:8080

It drains on SIGTERM: it stops accepting, lets requests in flight finish for up
to --drain-timeout, then exits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagsFromEnv(cmd.Flags()); err != nil {
				return err
			}
			cfg, err := o.config()
			if err != nil {
				return err
			}
			runtime.MemProfileRate = memProfileRate(o.pprof, runtime.MemProfileRate)
			if percent, set := gcPercent(os.Getenv("GOGC")); set {
				debug.SetGCPercent(percent)
			}
			return podstart.Run(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.admin, "admin", fmt.Sprintf("0.0.0.0:%d", proxy.AdminPort), "admin server address (/live, /ready, /metrics)")
	f.StringVar(&o.adminAllow, "admin-allow", "", "the node's addresses (CIDRs or IPs): they may reach ports that require mutual TLS in plaintext (the kubelet's probes); in a pod, the default gateway is added. They grant nothing on the admin port")
	f.StringVar(&o.certFile, "cert", "", "PEM workload certificate (with its chain), re-read when it changes")
	f.StringVar(&o.keyFile, "key", "", "PEM private key of --cert")
	f.StringVar(&o.rootsFile, "trust-roots", "", "PEM trust bundle, re-read when it changes. With --cert/--key: the trust anchors meshed peers must chain to. With --identity-addr: only what the controller is verified with until its first answer, which brings the bundle peers are verified with from then on; a change of the file makes the proxy ask the controller again, it is never trusted itself")
	f.StringVar(&o.identityAddr, "identity-addr", "", "the controller's control API (host:port): get and renew the workload certificate from it instead of --cert/--key")
	f.StringVar(&o.controllerID, "identity-controller-id", "", "SPIFFE ID the controller must prove, and the only client the admin port's /tap, /identity, /destinations, /renew and pprof answer over mutual TLS (default spiffe://<trust-domain>/ns/meshctl/sa/mesh-controller)")
	f.StringVar(&o.tokenFile, "identity-token-file", "/var/run/secrets/meshctl.io/identity/token", "projected ServiceAccount token (audience identity.meshctl.io)")
	f.StringVar(&o.trustDomain, "trust-domain", meshnames.TrustDomain, "the mesh's trust domain")
	f.StringVar(&o.namespace, "namespace", "", "the pod's namespace (for its SPIFFE ID)")
	f.StringVar(&o.serviceAccount, "service-account", "", "the pod's ServiceAccount (for its SPIFFE ID)")
	f.StringVar(&o.upstreamIdentity, "upstream-identity", "", "explicit mode: the SPIFFE ID the outbound upstream must prove; traffic to it goes over mutual TLS")
	f.StringVar(&o.requireTLSPorts, "require-tls-ports", "", "inbound ports that accept only meshed (mutual TLS) clients, and the kubelet's probes (--kubelet-probes)")
	f.StringVar(&o.kubeletProbes, "kubelet-probes", "", "explicit mode: the kubelet's probes, PORT/PATH for HTTP and PORT for TCP (e.g. 8080/healthz,9000): the only plaintext from the node let through where mutual TLS is required or the inbound policy refuses it; in a pod the controller sends them")
	f.DurationVar(&o.handshake, "tls-handshake-timeout", 10*time.Second, "time a meshed client gets to finish its TLS handshake")
	f.StringVar(&o.outboundListen, "outbound-listen", "", "explicit mode: accept outbound traffic on ADDR")
	f.StringVar(&o.outboundUpstream, "outbound-upstream", "", "explicit mode: send outbound traffic to HOST:PORT")
	f.StringVar(&o.inboundListen, "inbound-listen", "", "explicit mode: accept inbound traffic on ADDR")
	f.StringVar(&o.inboundUpstream, "inbound-upstream", "", "explicit mode: send inbound traffic to HOST:PORT")
	f.StringVar(&o.endpointsFile, "endpoints-file", "", `JSON file mapping outbound destinations to endpoints: {"10.96.0.12:80": ["10.244.0.7:8080"]}`)
	f.BoolVar(&o.discovery, "discovery", true, "with --identity-addr: find outbound destinations' endpoints and identities through the controller's destination service (unless --endpoints-file)")
	f.DurationVar(&o.detectTimeout, "detect-timeout", time.Second, "how long to wait for a client's first bytes before treating the connection as opaque TCP")
	f.StringVar(&o.opaquePorts, "opaque-ports", portspec.FormatPortList(proxy.DefaultOpaquePorts), "ports proxied as opaque TCP without detection (server-speaks-first protocols)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", 30*time.Second, "how long in-flight requests get to finish on shutdown")
	f.StringVar(&o.podName, "pod-name", "", "the pod's name: with --identity-addr, follow the pod's inbound policy (authorization, rate limits) from the controller")
	f.StringVar(&o.defaultInbound, "default-inbound-policy", "", "explicit mode: the inbound policy (all-unauthenticated, all-authenticated or deny); empty: let everyone in. In a pod (--pod-name) nothing is let in, and the proxy is not ready, until the controller sends the pod's policy")
	f.StringVar(&o.clusterNetworks, "cluster-networks", meshnames.DefaultClusterNetworks, "the cluster's pod and Service networks (CIDRs): a destination in them is never reached in plaintext until the controller says it is outside the mesh; its requests wait (up to --queue-timeout) for that answer, then fail")
	f.DurationVar(&o.queueTimeout, "queue-timeout", 3*time.Second, "how long an outbound request waits for an endpoint when none can take it (none ready, all failing) before failing with 503")
	f.IntVar(&o.maxHeaderBytes, "max-header-bytes", 64<<10, "largest request header block accepted (431 above)")
	f.DurationVar(&o.readHeader, "read-header-timeout", 10*time.Second, "time a client gets to send a request's headers")
	f.DurationVar(&o.idle, "idle-timeout", 90*time.Second, "idle client connections are closed after this")
	f.Uint32Var(&o.maxStreams, "max-concurrent-streams", 250, "HTTP/2 streams a client may have open at once per connection")
	f.BoolVar(&o.halfClose, "http1-half-close", false, "keep an HTTP/1 request going when its client closes its sending side (some clients do so and still wait for the answer); by default a client's closed connection cancels its request upstream")
	f.BoolVar(&o.pprof, "debug-pprof", false, "serve Go profiles on the admin port under /debug/pprof/ (loopback and the controller only)")
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "json", "json or text")
	return cmd
}

// memProfileRate is the heap profile's sampling rate: Go's (current) when
// /debug/pprof is served, else none. Nothing else reads a heap profile, and
// the sampling costs CPU and tables of up to 1.4 MB.
func memProfileRate(pprof bool, current int) int {
	if pprof {
		return current
	}
	return 0
}

// defaultGCPercent is the proxy's collector target unless GOGC says
// otherwise: a proxy's live heap is small (1.4 MB at 1000 rps), so Go's
// default (100, and a 4 MB heap before the first cycle) is mostly slack:
// at 50, RSS at 1000 rps fell from 16.1 to 14.0 MB with no change in CPU
// per request beyond the noise (bench/PROFILE.md, step 9).
const defaultGCPercent = 50

// gcPercent is the collector target to set, and whether to set it: the
// proxy's default unless the environment's GOGC (which Go has applied
// already) is given.
func gcPercent(gogc string) (int, bool) {
	if gogc != "" {
		return 0, false
	}
	return defaultGCPercent, true
}

// config makes the start's configuration from the flags.
func (o *runOptions) config() (podstart.Config, error) {
	cfg := podstart.Config{
		CertFile: o.certFile, KeyFile: o.keyFile, RootsFile: o.rootsFile,
		IdentityAddr: o.identityAddr, TokenFile: o.tokenFile, Discovery: o.discovery, PodName: o.podName,
	}
	err := o.proxyConfig(&cfg.Proxy)
	if err != nil {
		return cfg, err
	}
	if o.identityAddr != "" {
		if cfg.ID, err = spiffeid.New(o.trustDomain, o.namespace, o.serviceAccount); err != nil {
			return cfg, fmt.Errorf("the workload's identity (--namespace, --service-account): %w", err)
		}
	}
	if o.upstreamIdentity != "" {
		id, err := spiffeid.Parse(o.upstreamIdentity)
		if err != nil {
			return cfg, fmt.Errorf("--upstream-identity: %w", err)
		}
		if cfg.Proxy.Outbound == nil || cfg.Proxy.Outbound.Upstream == "" {
			return cfg, fmt.Errorf("--upstream-identity needs --outbound-upstream")
		}
		cfg.Proxy.Outbound.UpstreamIdentity = id
	}
	return cfg, nil
}

// proxyConfig makes the proxy's configuration from the flags.
func (o *runOptions) proxyConfig(cfg *proxy.Config) error {
	log, err := logging.New(o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	*cfg = proxy.Config{
		Admin:                o.admin,
		DetectTimeout:        o.detectTimeout,
		DrainTimeout:         o.drainTimeout,
		QueueTimeout:         o.queueTimeout,
		MaxHeaderBytes:       o.maxHeaderBytes,
		ReadHeaderTimeout:    o.readHeader,
		IdleTimeout:          o.idle,
		MaxConcurrentStreams: o.maxStreams,
		Pprof:                o.pprof,
		AllowHalfClose:       o.halfClose,
		Log:                  log,
	}
	switch o.defaultInbound {
	case "":
	case meshnames.DefaultAllUnauthenticated, meshnames.DefaultAllAuthenticated, meshnames.DefaultDeny:
		cfg.InboundPolicy = authz.New(o.defaultInbound)
	default:
		return fmt.Errorf("--default-inbound-policy %q: want all-unauthenticated, all-authenticated or deny", o.defaultInbound)
	}
	if cfg.ClusterNetworks, err = endpoints.ParseNetworks(o.clusterNetworks); err != nil {
		return fmt.Errorf("--cluster-networks: %w", err)
	}
	if cfg.OpaquePorts, err = portspec.ParsePortList(o.opaquePorts); err != nil {
		return fmt.Errorf("--opaque-ports: %w", err)
	}
	if o.kubeletProbes != "" {
		probes, err := parseProbes(o.kubeletProbes)
		if err != nil {
			return fmt.Errorf("--kubelet-probes: %w", err)
		}
		def := o.defaultInbound
		if def == "" {
			def = meshnames.DefaultAllUnauthenticated
		}
		if cfg.InboundPolicy == nil {
			cfg.InboundPolicy = authz.New(def)
		}
		cfg.InboundPolicy.Update(api.InboundPolicy{Default: def, Probes: probes})
	}
	if cfg.RequireTLSPorts, err = portspec.ParsePortList(o.requireTLSPorts); err != nil {
		return fmt.Errorf("--require-tls-ports: %w", err)
	}
	cfg.TLSHandshakeTimeout = o.handshake
	// The controller: the control API proves it, and over mutual TLS it is
	// the one client of the admin port's sensitive endpoints.
	if cfg.ControllerID, err = spiffeid.New(o.trustDomain, meshnames.Namespace, meshnames.ServiceAccount); o.controllerID != "" {
		cfg.ControllerID, err = spiffeid.Parse(o.controllerID)
	}
	if err != nil {
		return fmt.Errorf("--identity-controller-id: %w", err)
	}
	for _, s := range strings.Split(o.adminAllow, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			// A bare address (as the downward API gives the node's) means just it.
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return fmt.Errorf("--admin-allow %q: %w", s, err)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		cfg.AdminAllow = append(cfg.AdminAllow, p)
	}
	if o.outboundUpstream != "" && o.outboundListen == "" || o.inboundUpstream != "" && o.inboundListen == "" {
		return fmt.Errorf("an --*-upstream needs its --*-listen")
	}
	if o.outboundListen == "" && o.inboundListen == "" {
		if *cfg, err = podstart.RedirectMode(*cfg); err != nil {
			return err
		}
	}
	if o.outboundListen != "" {
		cfg.Outbound = &proxy.SideConfig{Listen: o.outboundListen, Upstream: o.outboundUpstream}
	}
	if o.inboundListen != "" {
		cfg.Inbound = &proxy.SideConfig{Listen: o.inboundListen, Upstream: o.inboundUpstream}
	}
	if o.endpointsFile != "" {
		if cfg.Endpoints, err = endpoints.Load(o.endpointsFile); err != nil {
			return err
		}
	}
	return nil
}

// parseProbes reads PORT/PATH (HTTP) and PORT (TCP) probes, comma-separated.
func parseProbes(s string) ([]api.Probe, error) {
	var out []api.Probe
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		port, path, hasPath := strings.Cut(part, "/")
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("probe %q: want PORT or PORT/PATH", part)
		}
		p := api.Probe{Port: int(n)}
		if hasPath {
			p.Path = "/" + path
		}
		out = append(out, p)
	}
	return out, nil
}
