// Command mesh-proxy is the meshctl sidecar proxy: `mesh-proxy run` proxies,
// `mesh-proxy init` installs the pod's redirect rules.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/internal/version"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mesh-proxy",
		Short: "mesh-proxy is the meshctl sidecar proxy",
		Long: `mesh-proxy runs beside an application container. It takes over the pod's
traffic, speaks mutual TLS to other meshed pods, and reports metrics and a live
request stream on its admin port (4191).

Every flag can also be set with an environment variable: MESH_PROXY_ and the
flag's name in capitals with underscores (--drain-timeout: MESH_PROXY_DRAIN_TIMEOUT).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(), newInitCommand(), version.Command("mesh-proxy"))
	return root
}
