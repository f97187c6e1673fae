package command

import (
	"context"
	"errors"
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

// Exit statuses, the same for every meshctl binary.
const (
	// ExitFailure: the command failed (a check failed, the cluster said no).
	ExitFailure = 1
	// ExitUsage: the command line is wrong (an unknown command or flag, a
	// bad flag value, the wrong arguments): nothing was done.
	ExitUsage = 2
	// ExitNotFound: something the command was asked about does not exist
	// (a resource, a pod, the control plane).
	ExitNotFound = 3
)

// ExitCodesHelp documents the exit statuses, for --help.
const ExitCodesHelp = `Exit status: 0 success; 1 failure; 2 bad usage (unknown command or flag, bad
value or arguments: nothing was done); 3 something asked about was not found.`

// UsageError is a command line that cannot be run: exit status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage marks err (when not nil) as the command line's fault.
func Usage(err error) error {
	if err == nil {
		return nil
	}
	return &UsageError{Err: err}
}

// Usagef is Usage of a formatted error.
func Usagef(format string, args ...any) error { return Usage(fmt.Errorf(format, args...)) }

// NotFoundError is something asked about that does not exist: exit status 3.
type NotFoundError struct{ Err error }

func (e *NotFoundError) Error() string { return e.Err.Error() }
func (e *NotFoundError) Unwrap() error { return e.Err }

// NotFound marks err (when not nil) as "not found".
func NotFound(err error) error {
	if err == nil {
		return nil
	}
	return &NotFoundError{Err: err}
}

// ExitStatus is the exit status err calls for (0 for nil).
func ExitStatus(err error) int {
	var usage *UsageError
	var missing *NotFoundError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &usage):
		return ExitUsage
	case errors.As(err, &missing):
		return ExitNotFound
	}
	return ExitFailure
}

// Execute runs root with a context cancelled on SIGINT or SIGTERM and
// returns the exit status for main (see ExitStatus), after writing
// "Error: " and the error to stderr.
func Execute(root *cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return execute(ctx, root, os.Stderr)
}

func execute(ctx context.Context, root *cobra.Command, stderr io.Writer) int {
	// Whatever fails before a command's hooks run is the command line's
	// fault: an unknown command or flag, a flag's value, the arguments.
	started := false
	prevE, prev := root.PersistentPreRunE, root.PersistentPreRun
	root.PersistentPreRun = nil
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		started = true
		switch {
		case prevE != nil:
			return prevE(cmd, args)
		case prev != nil:
			prev(cmd, args)
		}
		return nil
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return Usage(err) })
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if !started {
		err = Usage(err)
	}
	fmt.Fprintln(stderr, "Error:", err)
	return ExitStatus(err)
}
