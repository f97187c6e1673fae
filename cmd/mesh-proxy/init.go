package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/internal/portspec"
	"github.com/meshctl/meshctl/proxy"
	"github.com/meshctl/meshctl/proxy/redirect"
)

type initOptions struct {
	proxyUID     uint32
	inboundPort  uint16
	outboundPort uint16
	adminPort    uint16
	skipInbound  string
	skipOutbound string
	skipSubnets  string
	remove       bool
}

func newInitCommand() *cobra.Command {
	o := initOptions{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Install the pod's traffic redirect rules (run as an init container)",
		Long: `Program the pod's network namespace so the proxy sees its TCP traffic:
inbound connections go to the inbound port (4143), outbound ones to the
outbound port (4140). The proxy's own connections (by UID), loopback, the
proxy's ports and the given skips are left alone.

It uses nftables through netlink (no iptables binary needed), keeps its rules
in their own table "meshctl", and replaces them atomically: running it again
is safe. It needs CAP_NET_ADMIN.`,
		Example: `  mesh-proxy init --skip-inbound-ports 22 --skip-outbound-ports 5432,6000-6010 \
    --skip-outbound-subnets 169.254.169.254/32`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagsFromEnv(cmd.Flags()); err != nil {
				return err
			}
			if o.remove {
				if err := redirect.Remove(); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "removed the redirect rules (table meshctl)")
				return nil
			}
			cfg, err := o.config()
			if err != nil {
				return err
			}
			if err := redirect.Apply(cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "redirect rules installed (table meshctl): inbound TCP → :%d except ports %s; outbound TCP → :%d except UID %d, loopback, ports %q, subnets %q\n",
				o.inboundPort, fmt.Sprintf("%d,%d,%s", o.inboundPort, o.adminPort, o.skipInbound), o.outboundPort, o.proxyUID, o.skipOutbound, o.skipSubnets)
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint32Var(&o.proxyUID, "proxy-uid", proxy.ProxyUID, "UID the proxy runs as; its connections are not redirected")
	f.Uint16Var(&o.inboundPort, "inbound-port", proxy.InboundPort, "port inbound connections are redirected to")
	f.Uint16Var(&o.outboundPort, "outbound-port", proxy.OutboundPort, "port outbound connections are redirected to")
	f.Uint16Var(&o.adminPort, "admin-port", proxy.AdminPort, "the proxy's admin port, never redirected")
	f.StringVar(&o.skipInbound, "skip-inbound-ports", "", "inbound ports (and ranges, 8000-8080) that reach the application directly")
	f.StringVar(&o.skipOutbound, "skip-outbound-ports", "", "outbound ports (and ranges) that leave the pod directly")
	f.StringVar(&o.skipSubnets, "skip-outbound-subnets", "", "outbound destinations (IPv4 CIDRs) reached directly")
	f.BoolVar(&o.remove, "remove", false, "remove the rules instead")
	return cmd
}

func (o initOptions) config() (redirect.Config, error) {
	cfg := redirect.Config{ProxyUID: o.proxyUID, InboundPort: o.inboundPort, OutboundPort: o.outboundPort, AdminPort: o.adminPort}
	var err error
	if cfg.SkipInboundPorts, err = portspec.ParsePorts(o.skipInbound); err != nil {
		return cfg, fmt.Errorf("--skip-inbound-ports: %w", err)
	}
	if cfg.SkipOutboundPorts, err = portspec.ParsePorts(o.skipOutbound); err != nil {
		return cfg, fmt.Errorf("--skip-outbound-ports: %w", err)
	}
	if cfg.SkipOutboundNets, err = portspec.ParseNets(o.skipSubnets); err != nil {
		return cfg, fmt.Errorf("--skip-outbound-subnets: %w", err)
	}
	return cfg, nil
}
