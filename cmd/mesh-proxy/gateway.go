package main

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
)

// defaultGateway returns the pod's IPv4 default gateway. On the usual
// bridge-based pod networks it is the node's own address on the pod network,
// which the kubelet's probes and the API server's pods/proxy come from.
func defaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, err
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
		return netip.Addr{}, err
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
