// Package portspec parses the port and subnet lists of the mesh's
// annotations and flags: "22,8000-8080" and "10.0.0.0/8,169.254.169.254/32".
package portspec

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ From, To uint16 }

// ParsePorts reads a comma-separated list of ports and ranges: "22,8000-8080".
func ParsePorts(s string) ([]PortRange, error) {
	var out []PortRange
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		from, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", part, err)
		}
		to := from
		if isRange {
			if to, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("port range %q: %w", part, err)
			}
			if to < from {
				return nil, fmt.Errorf("port range %q is backwards", part)
			}
		}
		out = append(out, PortRange{from, to})
	}
	return out, nil
}

// ParsePortList reads a comma-separated list of single ports: "25,3306".
// The list is never nil: an empty string gives an empty list (which
// proxy.Config reads as "none", where nil would mean its default).
func ParsePortList(s string) ([]uint16, error) {
	out := []uint16{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, err := parsePort(part)
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", part, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// FormatPortList writes ports as ParsePortList reads them: "25,3306".
func FormatPortList(ports []uint16) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("want a number from 1 to 65535")
	}
	return uint16(n), nil
}

// ParseNets reads a comma-separated list of IPv4 CIDRs.
func ParseNets(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("subnet %q: %w", part, err)
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("subnet %q: only IPv4 is redirected", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
