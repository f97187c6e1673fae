package podstart

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/meshctl/meshctl/proxy"
)

// RedirectMode returns cfg set up for a pod whose traffic the redirect rules
// (mesh-proxy init) send to the proxy: outbound listener on
// 127.0.0.1:4140 and inbound listener on 0.0.0.0:4143, each connection
// going to its original destination; the pod's own addresses as LocalAddrs
// (requests to the pod itself stay in it); and the pod network's default
// gateway added to AdminAllow, since the node reaches the pod from there
// too. Without a default gateway only the AdminAllow given counts as the
// node, which is logged at warn.
func RedirectMode(cfg proxy.Config) (proxy.Config, error) {
	cfg.Outbound = &proxy.SideConfig{Listen: fmt.Sprintf("127.0.0.1:%d", proxy.OutboundPort)}
	cfg.Inbound = &proxy.SideConfig{Listen: fmt.Sprintf("0.0.0.0:%d", proxy.InboundPort)}
	var err error
	if cfg.LocalAddrs, err = podAddrs(); err != nil {
		return cfg, err
	}
	gw, err := DefaultGateway()
	if err != nil {
		if cfg.Log != nil {
			cfg.Log.Warn("no default gateway: only the addresses in --admin-allow count as the node", "error", err)
		}
		return cfg, nil
	}
	cfg.AdminAllow = append(cfg.AdminAllow[:len(cfg.AdminAllow):len(cfg.AdminAllow)], netip.PrefixFrom(gw, 32))
	return cfg, nil
}

// DefaultGateway returns the pod's IPv4 default gateway. On the usual
// bridge-based pod networks it is the node's own address on the pod network,
// which the kubelet's probes and the API server's pods/proxy come from.
func DefaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the default gateway: %w", err)
	}
	defer f.Close()
	return parseDefaultGateway(f)
}

// parseDefaultGateway reads /proc/net/route: whitespace-separated columns
// Iface Destination Gateway ..., addresses in host-order hex.
func parseDefaultGateway(r io.Reader) (netip.Addr, error) {
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 3 || f[1] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		var ip [4]byte
		binary.BigEndian.PutUint32(ip[:], binary.LittleEndian.Uint32(b))
		if a := netip.AddrFrom4(ip); !a.IsUnspecified() {
			return a, nil
		}
	}
	if err := s.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("the default gateway: %w", err)
	}
	return netip.Addr{}, fmt.Errorf("no default route")
}

// podAddrs are the addresses of the pod's interfaces but loopback: an
// endpoint at one of them is the pod itself.
func podAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("the pod's addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && !p.Addr().IsLoopback() {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}
