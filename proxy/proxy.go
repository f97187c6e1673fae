package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/proxy/admin"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/httpproxy"
	"github.com/meshctl/meshctl/proxy/memtrim"
	"github.com/meshctl/meshctl/proxy/meshtls"
	"github.com/meshctl/meshctl/proxy/metrics"
	"github.com/meshctl/meshctl/proxy/tap"
)

// Proxy is a running mesh-proxy: its listeners, admin server and metrics.
type Proxy struct {
	cfg        Config
	log        *slog.Logger
	metrics    *metrics.Metrics
	http       *httpproxy.Proxy
	tap        *tap.Hub
	mesh       *meshtls.Dialer
	serverTLS  *tls.Config
	opaque     map[uint16]bool
	requireTLS map[uint16]bool
	sides      []*side

	adminLn  net.Listener
	adminSrv *admin.Server
	ready    atomic.Bool
	// warnings limits the warn-level lines about connections the proxy
	// failed on its own account.
	warnings rate.Sometimes
}

// warn logs at warn level, a few times per interval at most: a connection
// the proxy failed on its own account.
func (p *Proxy) warn(msg string, args ...any) {
	p.warnings.Do(func() { p.log.Warn(msg, args...) })
}

// New checks the configuration and returns a proxy that is not yet listening.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	p := &Proxy{
		cfg:        cfg,
		log:        cfg.Log.With("component", "proxy"),
		metrics:    metrics.New(metrics.Config{}),
		tap:        tap.NewHub(),
		opaque:     map[uint16]bool{},
		requireTLS: map[uint16]bool{},
		warnings:   rate.Sometimes{First: 5, Interval: 5 * time.Second},
	}
	p.http = httpproxy.New(httpproxy.Config{Log: p.log, Identity: cfg.Identity, Tap: p.tap, QueueTimeout: cfg.QueueTimeout,
		Guard: cfg.InboundPolicy, ClusterNetworks: cfg.ClusterNetworks, LocalAddrs: cfg.LocalAddrs})
	if cfg.InboundPolicy != nil {
		cfg.InboundPolicy.CountWith(p.metrics.InboundDecision)
	}
	if sl, ok := cfg.Endpoints.(endpoints.SetLister); ok {
		p.metrics.WatchEjected(func(yield func(string, int)) {
			for _, s := range sl.Sets() {
				yield(s.Name(), s.Ejected())
			}
		})
	}
	if cfg.Identity != nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		p.mesh = &meshtls.Dialer{Source: cfg.Identity, Net: d.DialContext, Sessions: tls.NewLRUClientSessionCache(64)}
		p.serverTLS = meshtls.ServerConfig(cfg.Identity)
		p.metrics.WatchCertificate(func() time.Time { return cfg.Identity.Bundle().Leaf().NotAfter })
	}
	for _, port := range cfg.OpaquePorts {
		p.opaque[port] = true
	}
	for _, port := range cfg.RequireTLSPorts {
		p.requireTLS[port] = true
	}
	if cfg.Outbound != nil {
		p.sides = append(p.sides, newSide(p, metrics.Outbound, *cfg.Outbound))
	}
	if cfg.Inbound != nil {
		p.sides = append(p.sides, newSide(p, metrics.Inbound, *cfg.Inbound))
	}
	return p, nil
}

// fromNode reports whether a client connects from the node itself (the
// AdminAllow networks): the kubelet's probes come from there, and are let
// through in plaintext even where mutual TLS is required.
func (p *Proxy) fromNode(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return false
	}
	ip = ip.Unmap()
	for _, n := range p.cfg.AdminAllow {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// Listen binds every listener, so that a caller knows the proxy accepts
// connections before Serve runs. Serve calls it when it was not called.
func (p *Proxy) Listen() error {
	if p.adminLn != nil {
		return nil
	}
	for _, s := range p.sides {
		if err := s.listen(); err != nil {
			p.closeListeners()
			return err
		}
	}
	ln, err := net.Listen("tcp", p.cfg.Admin)
	if err != nil {
		p.closeListeners()
		return fmt.Errorf("admin listener: %w", err)
	}
	p.adminLn = ln
	p.adminSrv = admin.NewServer(admin.Config{
		Metrics: p.metrics.WritePrometheus, MetricsWindow: p.metrics.WriteWindow, Ready: p.ready.Load,
		Identity: p.cfg.Identity, ControllerID: p.cfg.ControllerID, Tap: p.tap, Pprof: p.cfg.Pprof,
		Destinations: lister(p.cfg.Endpoints), Policy: policyOf(p.cfg.InboundPolicy), Renew: renewer(p.cfg.Identity), Log: p.log,
	})
	return nil
}

// policyOf returns the guard's policy for /policy, once it has one; nil
// without a guard.
func policyOf(g *authz.Guard) func() (api.InboundPolicy, bool) {
	if g == nil {
		return nil
	}
	return func() (api.InboundPolicy, bool) {
		select {
		case <-g.Ready():
			return g.Policy(), true
		default:
			return api.InboundPolicy{}, false
		}
	}
}

// renewer returns the identity's early renewal, if it has one.
func renewer(src certs.Source) func() {
	if r, ok := src.(interface{ RenewNow() }); ok {
		return r.RenewNow
	}
	return nil
}

// lister returns r's list of destinations, if it keeps one.
func lister(r endpoints.Resolver) endpoints.Lister {
	if l, ok := r.(endpoints.Lister); ok {
		return l
	}
	return nil
}

func (p *Proxy) closeListeners() {
	for _, s := range p.sides {
		if s.ln != nil {
			s.ln.Close()
		}
	}
}

// Addr returns the bound address of a listener: "inbound", "outbound" or
// "admin". It is nil before Listen.
func (p *Proxy) Addr(name string) net.Addr {
	if name == "admin" && p.adminLn != nil {
		return p.adminLn.Addr()
	}
	for _, s := range p.sides {
		if s.name == name && s.ln != nil {
			return s.ln.Addr()
		}
	}
	return nil
}

// Run listens and serves until ctx is cancelled, then drains: it stops
// accepting, lets in-flight requests and connections finish for up to
// DrainTimeout, and closes what is left.
func (p *Proxy) Run(ctx context.Context) error {
	if err := p.Listen(); err != nil {
		return err
	}
	errc := make(chan error, len(p.sides)+1)
	windowsCtx, stopWindows := context.WithCancel(ctx)
	windowsDone := make(chan struct{})
	go func() {
		defer close(windowsDone)
		p.metrics.RunWindows(windowsCtx)
	}()
	defer func() { stopWindows(); <-windowsDone }()
	// Memory is given back when the proxy goes quiet after work.
	trimDone := make(chan struct{})
	go func() {
		defer close(trimDone)
		(&memtrim.Trimmer{Log: p.log}).Run(windowsCtx)
	}()
	defer func() { stopWindows(); <-trimDone }()
	go func() {
		if err := p.adminSrv.Serve(p.adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin server: %w", err)
		}
	}()
	served := make(chan struct{}, len(p.sides))
	for _, s := range p.sides {
		go func() {
			if err := s.serve(); err != nil {
				errc <- err
			}
			served <- struct{}{}
		}()
		p.log.Info("listening", "direction", s.name, "addr", s.ln.Addr().String(), "upstream", s.cfg.Upstream)
	}
	gated := make(chan struct{})
	readyCtx, stopReady := context.WithCancel(ctx)
	go func() {
		defer close(gated)
		p.awaitReady(readyCtx)
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stopReady()
	<-gated
	p.ready.Store(false)
	p.drain()
	for range p.sides {
		<-served
	}
	shutdown, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = p.adminSrv.Shutdown(shutdown)
	p.http.Close()
	return runErr
}

// awaitReady reports the proxy ready once ReadyWhen is closed (at once
// without it), saying every 15 s what it is still waiting for.
func (p *Proxy) awaitReady(ctx context.Context) {
	if p.cfg.ReadyWhen != nil {
		tick := time.NewTicker(15 * time.Second)
		defer tick.Stop()
		for waiting := true; waiting; {
			select {
			case <-p.cfg.ReadyWhen:
				waiting = false
			case <-tick.C:
				p.log.Warn("not ready yet: waiting for " + p.cfg.ReadyWhenWhat)
			case <-ctx.Done():
				return
			}
		}
	}
	if ctx.Err() == nil {
		p.ready.Store(true)
		p.log.Info("ready", "admin", p.adminLn.Addr().String())
	}
}

// drain stops accepting and waits for open connections, up to DrainTimeout.
func (p *Proxy) drain() {
	start := time.Now()
	p.log.Info("draining", "timeout", p.cfg.DrainTimeout)
	p.closeListeners()
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.DrainTimeout)
	defer cancel()
	var shutdowns sync.WaitGroup
	for _, s := range p.sides {
		// Close idle HTTP/1 connections, wait for busy ones, and send
		// HTTP/2 clients a GOAWAY.
		shutdowns.Go(func() { _ = s.http.Shutdown(ctx) })
		shutdowns.Go(func() { _ = s.h1.Shutdown(ctx) })
		shutdowns.Go(func() { _ = s.h2.Shutdown(ctx) })
	}
	shutdowns.Wait()
	done := make(chan struct{})
	go func() {
		for _, s := range p.sides {
			s.wg.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		p.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	case <-ctx.Done():
		n := 0
		for _, s := range p.sides {
			n += s.closeAll()
		}
		<-done
		p.log.Warn("drain timed out; closed the connections left", "count", n)
	}
}
