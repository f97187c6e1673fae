package redirect

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/meshctl/meshctl/internal/netnstest"
	"github.com/meshctl/meshctl/proxy/origdst"
)

// arrival is what a listener saw of one accepted connection.
type arrival struct {
	listener string
	origDst  netip.AddrPort // invalid when the connection was not redirected
}

// acceptInto accepts on ln and reports each connection's original destination.
func acceptInto(ln net.Listener, name string, out chan<- arrival) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a := arrival{listener: name}
			if dst, err := origdst.Get(c.(*net.TCPConn)); err == nil {
				a.origDst = dst
			}
			c.Close()
			out <- a
		}
	}()
}

func expectArrival(t *testing.T, arrivals <-chan arrival, what, listener, origDst string) {
	t.Helper()
	select {
	case a := <-arrivals:
		got := ""
		if a.origDst.IsValid() {
			got = a.origDst.String()
		}
		if a.listener != listener || got != origDst {
			t.Errorf("%s: landed on %s with original destination %q; want %s with %q", what, a.listener, got, listener, origDst)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%s: no connection arrived anywhere", what)
	}
}

// TestRulesRedirectInboundAndOutboundButNotTheProxyOrSkips builds a pod and a
// peer namespace joined by a veth pair, installs the rules in the pod, and
// shows where connections really land.
func TestRulesRedirectInboundAndOutboundButNotTheProxyOrSkips(t *testing.T) {
	pod := netnstest.New(t, "pod")
	peer := netnstest.New(t, "peer")
	netnstest.Link(t, pod, "10.77.0.1/24", peer, "10.77.0.2/24")

	cfg := Config{
		SkipInboundPorts:  []PortRange{{From: 2222, To: 2222}},
		SkipOutboundPorts: []PortRange{{From: 5432, To: 5432}, {From: 6000, To: 6010}},
		SkipOutboundNets:  []netip.Prefix{netip.MustParsePrefix("10.77.0.2/32")},
	}
	// The skipped subnet covers the peer entirely; check it separately below.
	cfgNoNets := cfg
	cfgNoNets.SkipOutboundNets = nil
	if err := Apply(cfgNoNets, nftables.WithNetNSFd(pod.FD())); err != nil {
		t.Fatal(err)
	}
	// Applying again is harmless and leaves the same rules.
	before := ruleCount(t, pod)
	if err := Apply(cfgNoNets, nftables.WithNetNSFd(pod.FD())); err != nil {
		t.Fatal(err)
	}
	if after := ruleCount(t, pod); after != before {
		t.Errorf("second apply changed the rule count from %d to %d", before, after)
	}

	arrivals := make(chan arrival, 16)
	acceptInto(pod.Listen(t, "127.0.0.1:4140"), "pod:outbound", arrivals)
	acceptInto(pod.Listen(t, "0.0.0.0:4143"), "pod:inbound", arrivals)
	acceptInto(pod.Listen(t, "0.0.0.0:2222"), "pod:2222", arrivals)
	acceptInto(pod.Listen(t, "127.0.0.1:7000"), "pod:loopback7000", arrivals)
	for _, port := range []string{"8080", "5432", "6005"} {
		acceptInto(peer.Listen(t, "0.0.0.0:"+port), "peer:"+port, arrivals)
	}

	dial := func(what string, dial func() (net.Conn, error)) {
		t.Helper()
		c, err := dial()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		c.Close()
	}
	dial("app → peer:8080", func() (net.Conn, error) { return pod.Dial("10.77.0.2:8080") })
	expectArrival(t, arrivals, "app → peer:8080", "pod:outbound", "10.77.0.2:8080")

	dial("proxy (uid 2102) → peer:8080", func() (net.Conn, error) { return pod.DialAs(2102, "10.77.0.2:8080") })
	expectArrival(t, arrivals, "proxy (uid 2102) → peer:8080", "peer:8080", "")

	dial("app → peer:5432 (skipped port)", func() (net.Conn, error) { return pod.Dial("10.77.0.2:5432") })
	expectArrival(t, arrivals, "app → peer:5432", "peer:5432", "")

	dial("app → peer:6005 (skipped range)", func() (net.Conn, error) { return pod.Dial("10.77.0.2:6005") })
	expectArrival(t, arrivals, "app → peer:6005", "peer:6005", "")

	dial("app → 127.0.0.1:7000", func() (net.Conn, error) { return pod.Dial("127.0.0.1:7000") })
	expectArrival(t, arrivals, "app → loopback", "pod:loopback7000", "")

	dial("peer → pod:9090", func() (net.Conn, error) { return peer.Dial("10.77.0.1:9090") })
	expectArrival(t, arrivals, "peer → pod:9090", "pod:inbound", "10.77.0.1:9090")

	dial("peer → pod:2222 (skipped inbound)", func() (net.Conn, error) { return peer.Dial("10.77.0.1:2222") })
	expectArrival(t, arrivals, "peer → pod:2222", "pod:2222", "")

	// With the peer's address skipped, the app reaches it directly.
	if err := Apply(cfg, nftables.WithNetNSFd(pod.FD())); err != nil {
		t.Fatal(err)
	}
	dial("app → peer:8080 (skipped subnet)", func() (net.Conn, error) { return pod.Dial("10.77.0.2:8080") })
	expectArrival(t, arrivals, "app → skipped subnet", "peer:8080", "")

	if err := Remove(nftables.WithNetNSFd(pod.FD())); err != nil {
		t.Fatal(err)
	}
	if err := Remove(nftables.WithNetNSFd(pod.FD())); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	dial("peer → pod:9090 after Remove", func() (net.Conn, error) {
		c, err := peer.Dial("10.77.0.1:9090")
		if err == nil {
			t.Error("peer → pod:9090 connected after the rules were removed (nothing listens there)")
			return c, nil
		}
		return fakeConn{}, nil
	})
}

func ruleCount(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	n := 0
	for _, chain := range []string{"prerouting", "output"} {
		rules, err := conn.GetRules(table, &nftables.Chain{Name: chain, Table: table})
		if err != nil {
			t.Fatalf("list %s rules: %v", chain, err)
		}
		n += len(rules)
	}
	if n == 0 {
		t.Fatal("no rules installed")
	}
	return n
}

type fakeConn struct{ net.Conn }

func (fakeConn) Close() error { return nil }
