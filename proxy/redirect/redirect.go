// Package redirect programs a pod's network namespace so that the proxy
// sees its TCP traffic: inbound connections are redirected to the inbound
// port (4143) and outbound ones to the outbound port (4140), except the
// proxy's own (by UID), loopback, the proxy's ports and the configured
// skips. It talks to nftables over netlink, so the image needs no iptables or
// nft binary. `mesh-proxy init` runs it as an init container.
//
// The rules live in their own table ("meshctl", family ip), replaced as a
// whole in one nftables transaction: applying twice gives the same rules and
// there is never a moment without them.
package redirect

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/portspec"
)

// TableName is the nftables table the rules live in.
const TableName = "meshctl"

// PortRange is an inclusive range of TCP ports.
type PortRange = portspec.PortRange

// Config says what to redirect. The zero value is the standard pod setup.
type Config struct {
	// ProxyUID is the user whose connections are never redirected. Default: 2102.
	ProxyUID uint32
	// InboundPort receives redirected inbound connections. Default: 4143.
	InboundPort uint16
	// OutboundPort receives redirected outbound connections. Default: 4140.
	OutboundPort uint16
	// AdminPort is the proxy's admin port, never redirected inbound. Default: 4191.
	AdminPort uint16
	// SkipInboundPorts reach the application directly.
	SkipInboundPorts []PortRange
	// SkipOutboundPorts leave the pod directly.
	SkipOutboundPorts []PortRange
	// SkipOutboundNets are destinations reached directly.
	SkipOutboundNets []netip.Prefix
}

func (c Config) withDefaults() Config {
	if c.ProxyUID == 0 {
		c.ProxyUID = meshnames.ProxyUID
	}
	if c.InboundPort == 0 {
		c.InboundPort = meshnames.ProxyInboundPort
	}
	if c.OutboundPort == 0 {
		c.OutboundPort = meshnames.ProxyOutboundPort
	}
	if c.AdminPort == 0 {
		c.AdminPort = meshnames.ProxyAdminPort
	}
	return c
}

// Apply installs the rules in the network namespace conn talks to (see
// nftables.WithNetNSFd; by default the caller's), replacing any earlier
// version of them in the same transaction.
func Apply(cfg Config, opts ...nftables.ConnOption) error {
	cfg = cfg.withDefaults()
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	// Adding an existing table is a no-op, so the delete that follows always
	// has something to delete; all of it commits at once in Flush.
	conn.AddTable(table)
	conn.DelTable(table)
	conn.AddTable(table)

	pre := conn.AddChain(&nftables.Chain{
		Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	inboundSkips := append([]PortRange{{From: cfg.InboundPort, To: cfg.InboundPort}, {From: cfg.AdminPort, To: cfg.AdminPort}}, cfg.SkipInboundPorts...)
	for _, exprs := range inboundRules(cfg, inboundSkips) {
		conn.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: exprs})
	}
	out := conn.AddChain(&nftables.Chain{
		Name: "output", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
	})
	for _, exprs := range outboundRules(cfg) {
		conn.AddRule(&nftables.Rule{Table: table, Chain: out, Exprs: exprs})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("install redirect rules: %w", err)
	}
	return nil
}

// Remove deletes the rules; it succeeds when there are none.
func Remove(opts ...nftables.ConnOption) error {
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	table := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
	conn.AddTable(table)
	conn.DelTable(table)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("remove redirect rules: %w", err)
	}
	return nil
}

// inboundRules: loopback and non-TCP pass; skipped ports pass; the rest of
// TCP goes to the inbound port.
func inboundRules(cfg Config, skips []PortRange) [][]expr.Any {
	rules := [][]expr.Any{
		ifname(expr.MetaKeyIIFNAME, "lo", ret()),
		notTCP(),
	}
	for _, r := range skips {
		rules = append(rules, dport(r, ret()))
	}
	return append(rules, redirectTo(cfg.InboundPort))
}

// outboundRules: the proxy's own connections, loopback and non-TCP pass;
// skipped ports and subnets pass; the rest of TCP goes to the outbound port.
func outboundRules(cfg Config) [][]expr.Any {
	rules := [][]expr.Any{
		{
			&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, cfg.ProxyUID)},
			&expr.Verdict{Kind: expr.VerdictReturn},
		},
		daddr(netip.MustParsePrefix("127.0.0.0/8"), ret()),
		ifname(expr.MetaKeyOIFNAME, "lo", ret()),
		notTCP(),
	}
	for _, r := range cfg.SkipOutboundPorts {
		rules = append(rules, dport(r, ret()))
	}
	for _, n := range cfg.SkipOutboundNets {
		rules = append(rules, daddr(n, ret()))
	}
	return append(rules, redirectTo(cfg.OutboundPort))
}

func ret() expr.Any { return &expr.Verdict{Kind: expr.VerdictReturn} }

// ifname matches an interface name (NUL-padded to IFNAMSIZ).
func ifname(key expr.MetaKey, name string, verdict expr.Any) []expr.Any {
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
		verdict,
	}
}

// notTCP returns from the chain for anything but TCP.
func notTCP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		ret(),
	}
}

// dport matches a TCP destination port range (the chain has passed non-TCP already).
func dport(r PortRange, verdict expr.Any) []expr.Any {
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
	if r.From == r.To {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(r.From)}, verdict}
	}
	return []expr.Any{load, &expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: be16(r.From), ToData: be16(r.To)}, verdict}
}

// daddr matches an IPv4 destination prefix.
func daddr(p netip.Prefix, verdict expr.Any) []expr.Any {
	mask := make([]byte, 4)
	binary.BigEndian.PutUint32(mask, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		mask = []byte{0, 0, 0, 0}
	}
	addr := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: addr[:]},
		verdict,
	}
}

// redirectTo sends the connection to a local port.
func redirectTo(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: be16(port)},
		&expr.Redir{RegisterProtoMin: 1, Flags: unix.NF_NAT_RANGE_PROTO_SPECIFIED},
	}
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
