// Package netnstest gives tests real network namespaces joined by veth pairs,
// so that redirect rules, original destinations and cross-host traffic can be
// exercised for real on one machine. It needs root. Namespaces are held only
// by file descriptors (never bind-mounted under /run/netns, which would pin
// the local cluster's pod namespaces; see docs/CLUSTER.md) and vanish
// when the test ends.
package netnstest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a network namespace created for a test.
type NS struct {
	Name   string
	handle netns.NsHandle
}

// MustRunEnv names the environment variable that turns the skips of tests
// needing root or a network into failures: CI (.ci/run) sets it to 1, so that
// a test it relies on can never pass by not running.
const MustRunEnv = "MESHCTL_TESTS_MUST_RUN"

// SkipUnlessMustRun skips the test, saying why, or fails it when MustRunEnv
// is 1.
func SkipUnlessMustRun(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(MustRunEnv) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping this test", why, MustRunEnv)
	}
	t.Skip(why)
}

// RequireRoot skips the test when not running as root, saying why (or fails
// it under MustRunEnv=1).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipUnlessMustRun(t, "needs root to create network namespaces")
	}
}

// New creates a network namespace with its loopback up.
func New(t testing.TB, name string) *NS {
	t.Helper()
	RequireRoot(t)
	var ns *NS
	err := onNewThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		h, err := netns.New() // unshares this thread into a new namespace
		if err != nil {
			return err
		}
		ns = &NS{Name: name, handle: h}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if serr := netns.Set(orig); serr != nil {
			return fmt.Errorf("return to the original namespace: %w", serr)
		}
		return err
	})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() { ns.handle.Close() })
	return ns
}

// FD returns the namespace's file descriptor (for nftables.WithNetNSFd).
func (n *NS) FD() int { return int(n.handle) }

// Do runs fn on an OS thread inside the namespace. Sockets fn creates belong
// to the namespace and may be used from any goroutine afterwards.
func (n *NS) Do(fn func() error) error {
	return onNewThread(func() error {
		orig, err := netns.Get()
		if err != nil {
			return err
		}
		defer orig.Close()
		if err := netns.Set(n.handle); err != nil {
			return fmt.Errorf("enter %s: %w", n.Name, err)
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return fmt.Errorf("leave %s: %w", n.Name, err)
		}
		return ferr
	})
}

// Listen opens a TCP listener inside the namespace.
func (n *NS) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return }); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects from inside the namespace.
func (n *NS) Dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() (err error) { c, err = net.Dial("tcp", addr); return })
	return c, err
}

// DialAs connects from inside the namespace with a socket owned by uid, as
// a process running as that user would (only the thread's filesystem UID,
// which the socket's credentials take, changes).
func (n *NS) DialAs(uid int, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		prev, _ := unix.SetfsuidRetUid(uid)
		defer unix.Setfsuid(prev)
		var err error
		c, err = net.Dial("tcp", addr)
		return err
	})
	return c, err
}

// Link joins two namespaces with a veth pair, gives each end an address
// (CIDR notation, e.g. "10.77.0.1/24"), and returns the ends' interface names.
func Link(t testing.TB, a *NS, aAddr string, b *NS, bAddr string) (aIf, bIf string) {
	t.Helper()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	aName, bName := "vt"+hex.EncodeToString(suffix)+"a", "vt"+hex.EncodeToString(suffix)+"b"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("create veth: %v", err)
	}
	for _, end := range []struct {
		name, addr string
		ns         *NS
	}{{aName, aAddr, a}, {bName, bAddr, b}} {
		link, err := netlink.LinkByName(end.name)
		if err != nil {
			t.Fatalf("find %s: %v", end.name, err)
		}
		if err := netlink.LinkSetNsFd(link, end.ns.FD()); err != nil {
			t.Fatalf("move %s into %s: %v", end.name, end.ns.Name, err)
		}
		err = end.ns.Do(func() error {
			l, err := netlink.LinkByName(end.name)
			if err != nil {
				return err
			}
			addr, err := netlink.ParseAddr(end.addr)
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(l, addr); err != nil {
				return err
			}
			return netlink.LinkSetUp(l)
		})
		if err != nil {
			t.Fatalf("configure %s in %s: %v", end.name, end.ns.Name, err)
		}
	}
	return aName, bName
}

// onNewThread runs fn on a fresh locked OS thread. If fn leaves the thread in
// a foreign namespace (an error while switching back), the thread is
// discarded rather than reused, by not unlocking it.
func onNewThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		err = fn()
		if cur, cerr := netns.Get(); cerr == nil {
			if cur.Equal(orig) {
				runtime.UnlockOSThread()
			}
			cur.Close()
		}
		errc <- err
	}()
	return <-errc
}

// Command returns a command that runs inside the namespace (through
// nsenter, from util-linux) as the given user; uid 0 keeps root.
func (n *NS) Command(uid int, name string, args ...string) *exec.Cmd {
	nsArgs := []string{fmt.Sprintf("--net=/proc/%d/fd/%d", os.Getpid(), n.FD())}
	if uid != 0 {
		nsArgs = append(nsArgs, fmt.Sprintf("--setuid=%d", uid), fmt.Sprintf("--setgid=%d", uid))
	}
	nsArgs = append(append(nsArgs, "--", name), args...)
	return exec.Command("nsenter", nsArgs...)
}

// HTTPGet makes one HTTP/1.1 GET from inside the namespace and returns the
// body of a 200 response. (An http.Client would dial from whatever thread
// its transport runs on, outside the namespace.)
func (n *NS) HTTPGet(url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(host, "80")
	}
	c, err := n.Dial(host)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	req.Close = true
	if err := req.Write(c); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}
