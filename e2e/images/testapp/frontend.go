package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serveGRPC answers the standard gRPC health service on addr until ctx ends:
// the demo's gRPC backend.
func serveGRPC(ctx context.Context, addr string, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving gRPC", "addr", addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	hs.Shutdown()
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		srv.Stop()
	}
	return nil
}

// downstream is what a frontend calls for each request it serves.
type downstream struct {
	http      *http.Client
	url       string
	health    healthpb.HealthClient
	behaviour *behaviour
}

// behaviour makes a server slow or failing in known proportions, so that
// tests can compare what they measure with the truth.
type behaviour struct {
	failEvery, slowEvery int
	delay, slowDelay     time.Duration
	failRate             float64 // answer 500 to this fraction, at random
	served               atomic.Int64
	// failAll, switched at run time (POST /control?fail=true), answers 500
	// to everything.
	failAll atomic.Bool
}

// apply waits as configured and returns the status to answer.
func (b *behaviour) apply(ctx context.Context) int {
	if b == nil {
		return http.StatusOK
	}
	n := b.served.Add(1)
	wait := b.delay
	if b.slowEvery > 0 && n%int64(b.slowEvery) == 0 {
		wait = b.slowDelay
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if b.failEvery > 0 && n%int64(b.failEvery) == 0 || b.failAll.Load() || b.failRate > 0 && rand.Float64() < b.failRate {
		return http.StatusInternalServerError
	}
	return http.StatusOK
}

func newDownstream(url, grpcAddr string) (*downstream, func(), error) {
	d := &downstream{http: &http.Client{Timeout: 5 * time.Second}, url: url}
	closeFn := func() {}
	if grpcAddr != "" {
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, nil, fmt.Errorf("gRPC client for %s: %w", grpcAddr, err)
		}
		d.health = healthpb.NewHealthClient(cc)
		closeFn = func() { cc.Close() }
	}
	return d, closeFn, nil
}

// call makes the downstream calls; any failure fails the request.
func (d *downstream) call(ctx context.Context) error {
	if d.url != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url, nil)
		if err != nil {
			return err
		}
		res, err := d.http.Do(req)
		if err != nil {
			return fmt.Errorf("GET %s: %w", d.url, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", d.url, res.Status)
		}
	}
	if d.health != nil {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		res, err := d.health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("gRPC health check: %w", err)
		}
		if res.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("gRPC health check: %s", res.Status)
		}
	}
	return nil
}
