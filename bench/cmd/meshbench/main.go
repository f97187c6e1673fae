// Command meshbench runs the proxy benchmark (`make bench`): meshctl's two
// meshed hops against nginx's and HAProxy's, with the direct path as the
// baseline. It writes bench/RESULTS.md and ends by printing one line of JSON.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/meshctl/meshctl/bench/harness"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "meshbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	var cfg harness.Config
	var setups, results, profile string
	flag.StringVar(&cfg.MeshProxy, "mesh-proxy", "bin/mesh-proxy", "mesh-proxy binary")
	flag.StringVar(&cfg.Backend, "backend", "bin/bench-backend", "backend binary")
	flag.StringVar(&cfg.Dir, "dir", "", "working directory for configs and logs (default: a new temporary one)")
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "length of each constant-rate load")
	flag.DurationVar(&cfg.MaxDuration, "max-duration", 15*time.Second, "length of the maximum-throughput load")
	flag.Float64Var(&cfg.Rate, "rate", 1000, "requests per second of the constant-rate loads")
	flag.StringVar(&setups, "setups", "", "comma-separated setups to run (meshctl,nginx,haproxy); empty: all")
	flag.IntVar(&cfg.Runs, "runs", 3, "how many times to measure every setup (at least 3); the summary is each figure's median with its spread")
	flag.BoolVar(&cfg.Extras, "extras", true, "also measure the cost of tapping and of 10,000 idle connections")
	flag.StringVar(&results, "results", "bench/RESULTS.md", "where to write the results table ('' for nowhere)")
	flag.StringVar(&profile, "profile", "", "instead of the benchmark, save CPU profiles of meshctl's two hops at full load in this directory")
	flag.Parse()
	if setups != "" {
		cfg.Setups = strings.Split(setups, ",")
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("component", "meshbench")
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "meshbench-")
		if err != nil {
			return err
		}
		cfg.Dir = dir
	}
	if profile != "" {
		if err := harness.Profile(ctx, cfg, profile, 15); err != nil {
			return fmt.Errorf("%w (process logs in %s)", err, cfg.Dir)
		}
		cfg.Log.Info("wrote profiles", "dir", profile)
		return nil
	}
	if err := harness.EnsurePackages(ctx, cfg.Log); err != nil {
		return err
	}
	rep, err := harness.Main(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w (process logs in %s)", err, cfg.Dir)
	}
	if results != "" {
		if err := os.WriteFile(results, []byte(rep.Markdown(strings.Join(os.Args, " "))), 0o644); err != nil {
			return err
		}
		cfg.Log.Info("wrote the results table", "file", results)
	}
	fmt.Println(rep.Summarize().JSON())
	return nil
}
