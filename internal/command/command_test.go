package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func TestExecuteExitStatusAndError(t *testing.T) {
	fail := &cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return errors.New("boom") }}
	ok := &cobra.Command{Use: "ok", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
	bad := &cobra.Command{Use: "bad", RunE: func(*cobra.Command, []string) error { return Usagef("-o %q: want json", "x") }}
	gone := &cobra.Command{Use: "gone", RunE: func(*cobra.Command, []string) error {
		return fmt.Errorf("reading it: %w", NotFound(errors.New(`deployment "web" not found`)))
	}}
	for _, tc := range []struct {
		args   []string
		status int
		stderr string
	}{
		{[]string{"ok"}, 0, ""},
		{[]string{"fail"}, 1, "Error: boom\n"},
		{[]string{"nosuch"}, 2, "Error: unknown command \"nosuch\" for \"bin\"\n"},
		{[]string{"ok", "--nosuch"}, 2, "Error: unknown flag: --nosuch\n"},
		{[]string{"ok", "extra"}, 2, "Error: unknown command \"extra\" for \"bin ok\"\n"},
		{[]string{"bad"}, 2, "Error: -o \"x\": want json\n"},
		{[]string{"gone"}, 3, "Error: reading it: deployment \"web\" not found\n"},
	} {
		root := Root("bin", "short", "long", fail, ok, bad, gone)
		hooked := false // a root's own hook still runs, and a failure after it is no usage error
		root.PersistentPreRunE = func(*cobra.Command, []string) error { hooked = true; return nil }
		var out, errb bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errb)
		root.SetArgs(tc.args)
		if got := execute(context.Background(), root, &errb); got != tc.status || errb.String() != tc.stderr {
			t.Errorf("%v: status %d, stderr %q; want %d, %q", tc.args, got, errb.String(), tc.status, tc.stderr)
		}
		if out.Len() != 0 {
			t.Errorf("%v: printed usage %q", tc.args, out.String())
		}
		if ran := tc.status != 2 || tc.args[0] == "bad"; hooked != ran {
			t.Errorf("%v: the root's PersistentPreRunE ran %v", tc.args, hooked)
		}
	}
}

func TestRootHasVersion(t *testing.T) {
	root := Root("bin", "short", "long")
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil || !strings.HasPrefix(out.String(), "bin ") {
		t.Errorf("version: %q, %v", out.String(), err)
	}
}

// TestExecuteCancelsOnSIGTERM: the command's context ends when the process
// gets SIGTERM, and a command that returns then exits 0.
func TestExecuteCancelsOnSIGTERM(t *testing.T) {
	wait := &cobra.Command{Use: "wait", RunE: func(cmd *cobra.Command, _ []string) error {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			return err
		}
		select {
		case <-cmd.Context().Done():
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("SIGTERM did not cancel the context")
		}
	}}
	root := Root("bin", "short", "long", wait)
	root.SetArgs([]string{"wait"})
	if got := Execute(root); got != 0 {
		t.Errorf("Execute = %d, want 0", got)
	}
}
