package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/command"
)

type topOptions struct {
	tap      tapOptions
	once     bool
	duration time.Duration
	output   string
	sortBy   string
}

func newTopCommand(g *globalOptions) *cobra.Command {
	o := &topOptions{}
	cmd := &cobra.Command{
		Use:   "top TARGET",
		Short: "The requests a workload serves, aggregated live",
		Long: `Aggregate the tap streams of every pod of the target (deploy/NAME, pod/NAME,
ns/NAME) into a table refreshed every second: source, destination, method,
path, count, best, worst and last latency, success rate, sorted by count.
Counts are exact while no proxy reaches --max-rps; beyond it, rows are marked
sampled and scaled by what the proxies report they dropped.

On a terminal it runs full screen: keys c, b, w, s and p sort by count, best,
worst, success rate and path; q quits. When standard output is not a terminal,
or with --once, it collects for --duration and prints once (-o table, wide, json or yaml):
what scripts and tests use.

It shows the requests the target's pods receive, or with --to those they send.
` + peerHelp,
		Example: `  meshctl top deploy/web -n demo
  meshctl top deploy/web -n demo --once --duration 10s -o json
  meshctl top deploy/load -n demo --to svc/web`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			if o.duration <= 0 {
				return command.Usagef("--duration must be above zero")
			}
			if cmd.Flags().Changed("output") && !o.once && isTerminal(cmd.OutOrStdout()) {
				return command.Usagef("-o is for --once (on a terminal, top shows its live view)")
			}
			if !slices.Contains(tapstream.SortKeys, o.sortBy) {
				return command.Usagef("--sort %q: want one of %s", o.sortBy, strings.Join(tapstream.SortKeys, ", "))
			}
			if err := o.tap.validate(); err != nil {
				return err
			}
			return runTop(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.tap.addFlags(cmd, g)
	f := cmd.Flags()
	f.BoolVar(&o.once, "once", false, "collect for --duration, print once, and exit")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "with --once (or no terminal): how long to collect")
	addOutputFlag(f, &o.output, "")
	f.Lookup("output").Usage = "with --once: " + f.Lookup("output").Usage
	f.StringVar(&o.sortBy, "sort", "count", strings.Join(tapstream.SortKeys, ", "))
	cmd.ValidArgsFunction = completeTarget(&o.tap.kube)
	addCompletions(cmd, &o.tap.kube)
	_ = cmd.RegisterFlagCompletionFunc("sort", completeWords(tapstream.SortKeys...))
	return cmd
}

func runTop(ctx context.Context, o *topOptions, args []string, stdout, stderr io.Writer) error {
	pods, err := o.tap.tapPods(ctx, args, stderr)
	if err != nil {
		return err
	}
	kc, err := o.tap.kube.streamClients()
	if err != nil {
		return err
	}
	streams := kc.typed
	live := !o.once && isTerminal(stdout)
	direction := "inbound"
	if o.tap.peers.to != "" {
		direction = "outbound"
	}
	top := tapstream.NewTop(direction)
	filter, err := o.tap.filter(ctx, streams)
	if err != nil {
		return err
	}
	if live {
		follow := func(ctx context.Context, add func(tapstream.PodEvent), fail func(tapstream.Pod, error)) {
			events := make(chan tapstream.PodEvent, 256)
			done := make(chan struct{})
			go func() {
				tapstream.Follow(ctx, pods, openTap(streams), filter, events, fail, nil)
				close(done)
			}()
			for {
				select {
				case e := <-events:
					add(e)
				case <-done:
					return
				}
			}
		}
		title := fmt.Sprintf("meshctl top %s — %d pods", strings.Join(args, " "), len(pods))
		return runLiveTop(ctx, title, o.sortBy, top, follow, os.Stdin, stdout)
	}
	runCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	events := make(chan tapstream.PodEvent, 256)
	done := make(chan struct{})
	go func() {
		tapstream.Follow(runCtx, pods, openTap(streams), filter, events,
			func(p tapstream.Pod, err error) { fmt.Fprintf(stderr, "pod %s/%s: %v\n", p.Namespace, p.Name, err) },
			func() { fmt.Fprintf(stderr, "collecting for %s from %d pods ...\n", o.duration, len(pods)) })
		close(done)
	}()
	for {
		select {
		case e := <-events:
			top.Add(e)
		case <-done:
			for drained := false; !drained; {
				select {
				case e := <-events:
					top.Add(e)
				default:
					drained = true
				}
			}
			return printTop(stdout, o.output, top.Rows(o.sortBy))
		}
	}
}

// printTop prints top --once's rows in format (-o).
func printTop(w io.Writer, format string, rows []tapstream.Row) error {
	switch format {
	case outputJSON:
		return tapstream.WriteJSON(w, rows)
	case outputYAML:
		return writeYAML(w, rows)
	}
	return tapstream.WriteTable(w, rows)
}
