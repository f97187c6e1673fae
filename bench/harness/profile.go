package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/meshctl/meshctl/bench/loadgen"
)

// Profile loads meshctl's two hops at full speed and saves a CPU profile of
// each proxy (outbound.pprof, inbound.pprof) in out, for `go tool pprof`.
func Profile(ctx context.Context, cfg Config, out string, seconds int) error {
	if err := raiseFileLimit(); err != nil {
		return err
	}
	p, err := writePKI(cfg.Dir)
	if err != nil {
		return err
	}
	env := &environment{dir: cfg.Dir, pki: p, meshBin: cfg.MeshProxy, proxyCPU: 1, meshArgs: []string{"--debug-pprof"}}
	backend, err := startPinned(cfg.Dir, "backend", 1, []string{"GOMAXPROCS=1"}, cfg.Backend, "--listen", backendAddr)
	if err != nil {
		return err
	}
	defer backend.stop()
	if err := waitPort(backendAddr, 10*time.Second); err != nil {
		return err
	}
	hops, h1, _, err := startMeshctl(env)
	defer func() {
		for _, h := range hops {
			h.stop()
		}
	}()
	if err != nil {
		return err
	}
	loadDone := make(chan error, 1)
	go func() {
		res, err := loadgen.Run(ctx, loadgen.Config{URL: h1, Conns: 32, Duration: time.Duration(seconds+3) * time.Second, Warmup: time.Second})
		if err == nil && cfg.Log != nil {
			// With it, each profile's CPU time divides into a cost per request.
			cfg.Log.Info("load while profiling", "requests_per_second", int(res.RPS()), "errors", res.Errors)
		}
		loadDone <- err
	}()
	time.Sleep(2 * time.Second) // let the load reach full speed
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for name, admin := range map[string]string{"outbound": "127.0.0.1:14191", "inbound": "127.0.0.1:14192"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, seconds))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(out, name+".pprof"))
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			if _, err := io.Copy(f, resp.Body); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return <-loadDone
}
