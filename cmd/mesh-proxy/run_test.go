package main

import (
	"strings"
	"testing"

	"github.com/meshctl/meshctl/internal/spiffeid"
)

func TestExplicitModeConfig(t *testing.T) {
	o := runOptions{
		admin: "127.0.0.1:0", logLevel: "info", logFormat: "text", trustDomain: "cluster.local",
		opaquePorts: "", requireTLSPorts: "8080, 9090", clusterNetworks: "10.0.0.0/8",
		outboundListen: "127.0.0.1:8000", outboundUpstream: "127.0.0.1:9000",
		upstreamIdentity: "spiffe://cluster.local/ns/shop/sa/backend",
		certFile:         "c.pem", keyFile: "k.pem", rootsFile: "r.pem", podName: "web-0",
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := spiffeid.Parse(o.upstreamIdentity)
	if cfg.Proxy.Outbound == nil || cfg.Proxy.Outbound.Upstream != "127.0.0.1:9000" || cfg.Proxy.Outbound.UpstreamIdentity != want || cfg.Proxy.Inbound != nil {
		t.Errorf("sides: outbound %+v, inbound %+v", cfg.Proxy.Outbound, cfg.Proxy.Inbound)
	}
	if cfg.Proxy.OpaquePorts == nil || len(cfg.Proxy.OpaquePorts) != 0 {
		t.Errorf("--opaque-ports \"\": %#v, want none (an empty, non-nil list)", cfg.Proxy.OpaquePorts)
	}
	if len(cfg.Proxy.RequireTLSPorts) != 2 || cfg.Proxy.RequireTLSPorts[1] != 9090 {
		t.Errorf("--require-tls-ports: %v", cfg.Proxy.RequireTLSPorts)
	}
	if cfg.CertFile != "c.pem" || cfg.KeyFile != "k.pem" || cfg.RootsFile != "r.pem" || cfg.PodName != "web-0" || cfg.IdentityAddr != "" {
		t.Errorf("identity: %+v", cfg)
	}
	if cfg.Proxy.ControllerID.ServiceAccount != "mesh-controller" {
		t.Errorf("controller ID: %v", cfg.Proxy.ControllerID)
	}
}

func TestPodModeConfig(t *testing.T) {
	o := runOptions{
		admin: "127.0.0.1:0", logLevel: "info", logFormat: "text", trustDomain: "cluster.local",
		opaquePorts: "25,3306", clusterNetworks: "10.0.0.0/8",
		identityAddr: "ctl:8443", namespace: "shop", serviceAccount: "web", rootsFile: "r.pem", discovery: true,
	}
	cfg, err := o.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Proxy.Outbound == nil || cfg.Proxy.Outbound.Listen != "127.0.0.1:4140" || cfg.Proxy.Inbound == nil || cfg.Proxy.Inbound.Listen != "0.0.0.0:4143" {
		t.Errorf("redirect mode listeners: %+v %+v", cfg.Proxy.Outbound, cfg.Proxy.Inbound)
	}
	if cfg.ID.String() != "spiffe://cluster.local/ns/shop/sa/web" || cfg.IdentityAddr != "ctl:8443" || !cfg.Discovery {
		t.Errorf("identity service: %+v", cfg)
	}
	if len(cfg.Proxy.OpaquePorts) != 2 || cfg.Proxy.OpaquePorts[1] != 3306 {
		t.Errorf("--opaque-ports: %v", cfg.Proxy.OpaquePorts)
	}
}

func TestConfigFlagErrors(t *testing.T) {
	base := runOptions{admin: "127.0.0.1:0", logLevel: "info", logFormat: "text", trustDomain: "cluster.local", inboundListen: "127.0.0.1:0"}
	for _, tc := range []struct {
		set  func(*runOptions)
		want string
	}{
		{func(o *runOptions) { o.opaquePorts = "8000-8080" }, "--opaque-ports"},
		{func(o *runOptions) { o.requireTLSPorts = "0" }, "--require-tls-ports"},
		{func(o *runOptions) { o.upstreamIdentity = "spiffe://cluster.local/ns/a/sa/b" }, "--upstream-identity needs --outbound-upstream"},
		{func(o *runOptions) { o.identityAddr = "ctl:8443" }, "--namespace, --service-account"},
	} {
		o := base
		tc.set(&o)
		if _, err := o.config(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("config() = %v, want an error about %q", err, tc.want)
		}
	}
}

func TestTheHeapIsSampledOnlyForPprof(t *testing.T) {
	if got := memProfileRate(false, 512*1024); got != 0 {
		t.Errorf("without --debug-pprof the heap is sampled every %d bytes, want never", got)
	}
	if got := memProfileRate(true, 512*1024); got != 512*1024 {
		t.Errorf("with --debug-pprof the heap is sampled every %d bytes, want Go's 524288", got)
	}
}

// TestTheProxysCollectorTargetYieldsToGOGC: the proxy's own target unless
// the environment's GOGC is given (Go has applied that one already).
func TestTheProxysCollectorTargetYieldsToGOGC(t *testing.T) {
	if p, set := gcPercent(""); !set || p != defaultGCPercent {
		t.Errorf("no GOGC: %d, %v; want %d, set", p, set, defaultGCPercent)
	}
	for _, v := range []string{"100", "off", "200"} {
		if _, set := gcPercent(v); set {
			t.Errorf("GOGC=%s: the proxy overrides it", v)
		}
	}
}
