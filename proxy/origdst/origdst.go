// Package origdst recovers the destination a connection was addressed to
// before the pod's redirect rules sent it to the proxy (SO_ORIGINAL_DST).
package origdst

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST for IPv4 and IP6T_SO_ORIGINAL_DST for IPv6.
const soOriginalDst = 80

// ErrNotRedirected means the connection reached its listener directly, not
// through a redirect rule.
var ErrNotRedirected = errors.New("connection was not redirected")

// Get returns the original destination of a redirected TCP connection. For a
// connection that was not redirected it returns ErrNotRedirected.
func Get(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	local, _ := c.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var addr netip.AddrPort
	var opErr error
	err = raw.Control(func(fd uintptr) {
		addr, opErr = getsockopt(int(fd), v6)
	})
	if err == nil {
		err = opErr
	}
	if errors.Is(err, unix.ENOENT) {
		return netip.AddrPort{}, ErrNotRedirected
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	// Conntrack knows connections that were never NATed too; their original
	// destination is the listener itself.
	if local != nil {
		if l, ok := netip.AddrFromSlice(local.IP); ok && netip.AddrPortFrom(l.Unmap(), uint16(local.Port)) == addr {
			return netip.AddrPort{}, ErrNotRedirected
		}
	}
	return addr, nil
}

// getsockopt reads the sockaddr_in or sockaddr_in6 the kernel keeps for the
// connection's conntrack entry before NAT.
func getsockopt(fd int, v6 bool) (netip.AddrPort, error) {
	var buf [unix.SizeofSockaddrInet6]byte
	size := uint32(unix.SizeofSockaddrInet4)
	level := unix.SOL_IP
	if v6 {
		size, level = unix.SizeofSockaddrInet6, unix.SOL_IPV6
	}
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), soOriginalDst,
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return netip.AddrPort{}, errno
	}
	return parseSockaddr(buf[:size])
}

// parseSockaddr decodes a raw sockaddr_in or sockaddr_in6 (port in network
// byte order, family in host byte order).
func parseSockaddr(b []byte) (netip.AddrPort, error) {
	if len(b) < 8 {
		return netip.AddrPort{}, fmt.Errorf("short sockaddr (%d bytes)", len(b))
	}
	family := binary.NativeEndian.Uint16(b[0:2])
	port := binary.BigEndian.Uint16(b[2:4])
	switch {
	case family == syscall.AF_INET && len(b) >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), nil
	case family == syscall.AF_INET6 && len(b) >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port), nil
	}
	return netip.AddrPort{}, fmt.Errorf("unexpected sockaddr family %d (%d bytes)", family, len(b))
}
