package podstart

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshctl/meshctl/proxy"
)

func TestParseDefaultGateway(t *testing.T) {
	route := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0000F40A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	00000000	0100F40A	0003	0	0	0	00000000	0	0	0
`
	got, err := parseDefaultGateway(strings.NewReader(route))
	if err != nil || got.String() != "10.244.0.1" {
		t.Errorf("gateway = %v, %v; want 10.244.0.1", got, err)
	}
	if _, err := parseDefaultGateway(strings.NewReader("Iface\tDestination\tGateway\n")); err == nil {
		t.Error("no default route: want an error")
	}
}

func TestRedirectMode(t *testing.T) {
	node := netip.MustParsePrefix("192.0.2.1/32")
	allow := make([]netip.Prefix, 1, 4)
	allow[0] = node
	cfg, err := RedirectMode(proxy.Config{AdminAllow: allow})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Outbound == nil || cfg.Outbound.Listen != "127.0.0.1:4140" || cfg.Outbound.Upstream != "" ||
		cfg.Inbound == nil || cfg.Inbound.Listen != "0.0.0.0:4143" || cfg.Inbound.Upstream != "" {
		t.Errorf("listeners: outbound %+v, inbound %+v; want 127.0.0.1:4140 and 0.0.0.0:4143 to the original destinations", cfg.Outbound, cfg.Inbound)
	}
	for _, a := range cfg.LocalAddrs {
		if a.IsLoopback() {
			t.Errorf("LocalAddrs has loopback %v", a)
		}
	}
	want := []netip.Prefix{node}
	if gw, err := DefaultGateway(); err == nil {
		want = append(want, netip.PrefixFrom(gw, 32))
	}
	if !slices.Equal(cfg.AdminAllow, want) {
		t.Errorf("AdminAllow = %v, want %v", cfg.AdminAllow, want)
	}
	if allow[:cap(allow)][1].IsValid() {
		t.Error("RedirectMode wrote into the caller's AdminAllow")
	}
}
