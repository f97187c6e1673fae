package endpoints

import (
	"fmt"
	"net/netip"
	"strings"
)

// Networks are the cluster's pod and Service networks: a destination in
// them is inside the cluster, where traffic between meshed pods must never
// go out in plaintext.
type Networks []netip.Prefix

// ParseNetworks reads a comma-separated list of CIDRs (a bare address is a
// network of one).
func ParseNetworks(s string) (Networks, error) {
	var out Networks
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			a, aerr := netip.ParseAddr(part)
			if aerr != nil {
				return nil, fmt.Errorf("network %q: want a CIDR such as 10.0.0.0/8", part)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Contains reports whether addr is in one of the networks.
func (n Networks) Contains(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range n {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ContainsHostPort is Contains for a "host:port" address; false when it is
// not an IP address and port.
func (n Networks) ContainsHostPort(hostport string) bool {
	ap, err := netip.ParseAddrPort(hostport)
	return err == nil && n.Contains(ap.Addr())
}
