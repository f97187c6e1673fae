package command

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/internal/version"
)

// Root returns the root command of the binary name: it prints neither
// usage nor errors itself (Execute prints the error), and has cmds and a
// version subcommand.
func Root(name, short, long string, cmds ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:           name,
		Short:         short,
		Long:          long,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(cmds...)
	root.AddCommand(version.Command(name))
	return root
}

// Execute runs root with a context cancelled on SIGINT or SIGTERM and
// returns the exit status for main: 0, or 1 after writing "Error: " and the
// error to stderr.
func Execute(root *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return execute(ctx, root, os.Stderr)
}

func execute(ctx context.Context, root *cobra.Command, stderr io.Writer) int {
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "Error:", err)
		return 1
	}
	return 0
}
