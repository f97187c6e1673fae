// Package version reports which release a meshctl binary was built from.
package version

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
)

// Version is the release this binary was built from. `make build` sets it at
// link time with -ldflags "-X github.com/meshctl/meshctl/internal/version.Version=...";
// a plain `go build` leaves it at "dev", the tag local images use.
var Version = "dev"

// Print writes one line naming the binary, its version and the Go runtime that built it.
func Print(w io.Writer, binary string) error {
	_, err := fmt.Fprintf(w, "%s %s (%s, %s/%s)\n", binary, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// Command returns a `version` subcommand for the named binary.
func Command(binary string) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of " + binary,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return Print(cmd.OutOrStdout(), binary)
		},
	}
}
