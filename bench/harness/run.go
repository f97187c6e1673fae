// Package harness runs the proxy benchmark: it starts the backend, then each
// setup (direct, meshctl, nginx, HAProxy) in turn, applies the same loads to
// each, and reports latencies, throughput per CPU-second and memory.
package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"github.com/meshctl/meshctl/bench/loadgen"
)

// Config configures a benchmark run.
type Config struct {
	// MeshProxy is the mesh-proxy binary. Required.
	MeshProxy string
	// Backend is the backend binary. Required.
	Backend string
	// Dir receives configs, certificates and process logs. Required.
	Dir string
	// Duration of each constant-rate load. Default: 30s.
	Duration time.Duration
	// MaxDuration of the maximum-throughput load. Default: 15s.
	MaxDuration time.Duration
	// Rate of the constant-rate loads. Default: 1000.
	Rate float64
	// Setups to run, by name; empty means all.
	Setups []string
	// Runs is how many times every setup is measured, alternately in order
	// and in reverse order; the summary takes each figure's median over
	// them. Default and minimum: 3.
	Runs int
	// Extras also measures the cost of tapping and of 10,000 idle connections.
	Extras bool
	// Log receives progress.
	Log *slog.Logger
}

// Latencies are percentiles in milliseconds.
type Latencies struct {
	P50, P90, P99, P999 float64
	Errors              int
}

// SetupResult is what one setup measured in one run.
type SetupResult struct {
	Name string
	H1   Latencies
	H2   Latencies
	// MaxRPS is the throughput at 32 connections; RPSPerCPUSecond divides
	// it by the average CPU one hop used.
	MaxRPS          float64
	RPSPerCPUSecond float64
	// RSSMB is the peak RSS of each hop after the 1000 rps load.
	RSSMB []float64
}

// Run is one pass over the setups.
type Run struct {
	Order   []string
	Results map[string]*SetupResult
}

// Extras are the meshctl-only measurements.
type Extras struct {
	TapP99Ratio, TapCPURatio float64
	P99NoTap, P99Tap         float64
	CPUNoTap, CPUTap         float64
	IdleConns                int
	// IdleRSSOpenMB is the RSS right after the idle connections opened,
	// IdleRSSMB after they sat idle for IdleSettle.
	IdleRSSMB, IdleRSSOpenMB, IdleRSSBeforeMB float64
	// P50Idle and P99Idle are the same 1000 rps load's while they are
	// open; P50NoTap its p50 before.
	P50NoTap, P50Idle, P99Idle float64
}

// IdleSettle is how long the idle connections sit before the RSS holding
// them is read: the proxy parks a connection idle for 100 ms (see
// proxy/h1server's ParkAfter), and the idle poller's deadline sweep runs
// once a second.
const IdleSettle = 3 * time.Second

// Report is the whole benchmark.
type Report struct {
	Started time.Time
	Runs    []Run
	Extras  *Extras
}

// Main runs the benchmark: every setup cfg.Runs times (at least 3), every
// other run in reverse order.
func Main(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Duration == 0 {
		cfg.Duration = 30 * time.Second
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = 15 * time.Second
	}
	if cfg.Rate == 0 {
		cfg.Rate = 1000
	}
	cfg.Runs = max(cfg.Runs, 3)
	if err := raiseFileLimit(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	p, err := writePKI(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("certificates: %w", err)
	}
	env := &environment{dir: cfg.Dir, pki: p, meshBin: cfg.MeshProxy, proxyCPU: 1}
	backend, err := startPinned(cfg.Dir, "backend", 1, []string{"GOMAXPROCS=1"}, cfg.Backend, "--listen", backendAddr)
	if err != nil {
		return nil, err
	}
	defer backend.stop()
	if err := waitPort(backendAddr, 10*time.Second); err != nil {
		return nil, err
	}
	var chosen []setup
	for _, s := range setups {
		if len(cfg.Setups) == 0 || slices.Contains(cfg.Setups, s.name) || s.name == "direct" {
			chosen = append(chosen, s)
		}
	}
	rep := &Report{Started: time.Now().UTC()}
	for pass := range cfg.Runs {
		order := slices.Clone(chosen)
		if pass%2 == 1 {
			slices.Reverse(order)
		}
		run := Run{Results: map[string]*SetupResult{}}
		for _, s := range order {
			run.Order = append(run.Order, s.name)
			cfg.Log.Info("measuring", "run", pass+1, "setup", s.name)
			r, err := measure(ctx, cfg, env, s)
			if err != nil {
				return rep, fmt.Errorf("run %d, %s: %w", pass+1, s.name, err)
			}
			run.Results[s.name] = r
		}
		rep.Runs = append(rep.Runs, run)
	}
	if cfg.Extras {
		cfg.Log.Info("measuring the cost of tapping and of idle connections")
		ex, err := measureExtras(ctx, cfg, env)
		if err != nil {
			return rep, fmt.Errorf("extras: %w", err)
		}
		rep.Extras = ex
	}
	return rep, nil
}

// measure runs the three loads against one setup.
func measure(ctx context.Context, cfg Config, env *environment, s setup) (*SetupResult, error) {
	hops, h1, h2, err := s.start(env)
	defer func() {
		for _, h := range hops {
			h.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	res := &SetupResult{Name: s.name}
	r1, err := loadgen.Run(ctx, loadgen.Config{URL: h1, Rate: cfg.Rate, Conns: 16, Duration: cfg.Duration})
	if err != nil {
		return nil, fmt.Errorf("HTTP/1.1 at %v rps: %w", cfg.Rate, err)
	}
	res.H1 = latencies(r1)
	for _, h := range hops {
		res.RSSMB = append(res.RSSMB, h.peakRSSMB())
	}
	before := cpuOf(hops)
	rmax, err := loadgen.Run(ctx, loadgen.Config{URL: h1, Conns: 32, Duration: cfg.MaxDuration, Warmup: time.Second})
	if err != nil {
		return nil, fmt.Errorf("maximum throughput: %w", err)
	}
	used := cpuOf(hops) - before
	res.MaxRPS = rmax.RPS()
	if len(hops) > 0 && used > 0 {
		// The warm-up's CPU is in `used` too; count its requests at the
		// measured rate.
		total := rmax.RPS() * (cfg.MaxDuration + time.Second).Seconds()
		res.RPSPerCPUSecond = total / (used / float64(len(hops)))
	}
	r2, err := loadgen.Run(ctx, loadgen.Config{URL: h2, Rate: cfg.Rate, Conns: 16, Duration: cfg.Duration, HTTP2: true})
	if err != nil {
		return nil, fmt.Errorf("h2c at %v rps: %w", cfg.Rate, err)
	}
	res.H2 = latencies(r2)
	return res, nil
}

func cpuOf(hops []*proc) float64 {
	var s float64
	for _, h := range hops {
		s += h.cpuSeconds()
	}
	return s
}

func latencies(r loadgen.Result) Latencies {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latencies{P50: ms(r.Percentile(50)), P90: ms(r.Percentile(90)), P99: ms(r.Percentile(99)), P999: ms(r.Percentile(99.9)), Errors: r.Errors}
}

// measureExtras: the cost of a /tap client on both meshctl hops at 1000 rps,
// and the outbound proxy's RSS holding 10,000 idle keep-alive connections.
func measureExtras(ctx context.Context, cfg Config, env *environment) (*Extras, error) {
	hops, h1, _, err := startMeshctl(env)
	defer func() {
		for _, h := range hops {
			h.stop()
		}
	}()
	if err != nil {
		return nil, err
	}
	ex := &Extras{}
	phase := func() (Latencies, float64, error) {
		before := cpuOf(hops)
		r, err := loadgen.Run(ctx, loadgen.Config{URL: h1, Rate: cfg.Rate, Conns: 16, Duration: cfg.Duration})
		if err != nil {
			return Latencies{}, 0, err
		}
		return latencies(r), cpuOf(hops) - before, nil
	}
	noTap, cpuNoTap, err := phase()
	if err != nil {
		return nil, err
	}
	ex.P50NoTap, ex.P99NoTap, ex.CPUNoTap = noTap.P50, noTap.P99, cpuNoTap
	tapCtx, stopTaps := context.WithCancel(ctx)
	for _, admin := range []string{"127.0.0.1:14191", "127.0.0.1:14192"} {
		req, _ := http.NewRequestWithContext(tapCtx, http.MethodGet, "http://"+admin+"/tap", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			stopTaps()
			return nil, fmt.Errorf("attach tap: %w", err)
		}
		go func() { io.Copy(io.Discard, resp.Body); resp.Body.Close() }()
	}
	withTap, cpuTap, err := phase()
	ex.P99Tap, ex.CPUTap = withTap.P99, cpuTap
	stopTaps()
	if err != nil {
		return nil, err
	}
	ex.TapP99Ratio, ex.TapCPURatio = ex.P99Tap/ex.P99NoTap, ex.CPUTap/ex.CPUNoTap

	ex.IdleRSSBeforeMB = hops[0].rssMB()
	conns, err := openIdle(10000, "127.0.0.1:10001")
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	ex.IdleConns = len(conns)
	ex.IdleRSSOpenMB = hops[0].rssMB()
	select {
	case <-time.After(IdleSettle):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ex.IdleRSSMB = hops[0].rssMB()
	// New requests meanwhile: the same load as the tap's baseline.
	idle, _, err := phase()
	if err != nil {
		return nil, fmt.Errorf("load beside the idle connections: %w", err)
	}
	ex.P50Idle, ex.P99Idle = idle.P50, idle.P99
	return ex, nil
}

// raiseFileLimit lets the harness and its children hold many connections.
// Up to the hard limit: this VM cannot raise that (no CAP_SYS_RESOURCE).
func raiseFileLimit() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Max < 12000 {
		return fmt.Errorf("the open-file limit is %d; 10,000 idle connections need more", lim.Max)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-file limit: %w", err)
	}
	return nil
}

// EnsurePackages installs nginx, HAProxy and util-linux's taskset when
// missing, without starting their services.
func EnsurePackages(ctx context.Context, log *slog.Logger) error {
	var missing []string
	for bin, pkg := range map[string]string{"nginx": "nginx", "haproxy": "haproxy", "taskset": "util-linux"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	log.Info("installing Debian packages", "packages", missing)
	const policy = "/usr/sbin/policy-rc.d"
	if _, err := os.Stat(policy); os.IsNotExist(err) {
		if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return err
		}
		defer os.Remove(policy)
	}
	for _, args := range [][]string{{"update", "-q"}, append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %v: %w", args, err)
		}
	}
	return nil
}
