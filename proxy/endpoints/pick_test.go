package endpoints

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/meshctl/meshctl/proxy/balance"
	"github.com/meshctl/meshctl/proxy/servicepolicy"
)

func TestAcquireWaitsForEndpointsThenFailsFast(t *testing.T) {
	s := NewSet()
	q := Queue{Timeout: 5 * time.Second, Capacity: 10}
	// A request waiting on an empty set gets the endpoint that arrives.
	got := make(chan error, 1)
	go func() {
		l, err := s.Acquire(context.Background(), q, "")
		if err == nil && l.Addr != "10.0.0.1:80" {
			err = errors.New("wrong endpoint " + l.Addr)
		}
		got <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.waiting.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	s.Update([]Endpoint{{Addr: "10.0.0.1:80"}})
	if err := <-got; err != nil {
		t.Fatalf("waiting request: %v", err)
	}
	// Nothing arrives: the wait ends after the timeout with the cause.
	s.Update(nil)
	start := time.Now()
	_, err := s.Acquire(context.Background(), Queue{Timeout: 50 * time.Millisecond, Capacity: 10}, "")
	if !errors.Is(err, ErrNoEndpoints) || time.Since(start) < 50*time.Millisecond {
		t.Errorf("Acquire on an empty set: %v after %v, want ErrNoEndpoints after 50ms", err, time.Since(start))
	}
	// Beyond the capacity, requests fail at once.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = s.Acquire(ctx, Queue{Timeout: time.Minute, Capacity: 2}, "") }()
	}
	for s.waiting.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Acquire(ctx, Queue{Timeout: time.Minute, Capacity: 2}, ""); !errors.Is(err, ErrQueueFull) {
		t.Errorf("third waiter: %v, want ErrQueueFull", err)
	}
	cancel()
	wg.Wait()
}

func TestEjectedEndpointsStayOutAcrossUpdates(t *testing.T) {
	s := NewSet(Endpoint{Addr: "10.0.0.1:80"}, Endpoint{Addr: "10.0.0.2:80"})
	s.SetPolicy("web.demo:80", servicepolicy.Policy{Accrual: balance.Accrual{MaxFailures: 2, Backoff: balance.Backoff{Min: time.Hour}}})
	for s.Ejected() == 0 {
		l, err := s.Acquire(context.Background(), Queue{}, "")
		if err != nil {
			t.Fatal(err)
		}
		l.Done(l.Addr == "10.0.0.1:80")
	}
	// Discovery sends the same endpoints again, plus one: the failing one
	// stays out; the others take every request.
	s.Update([]Endpoint{{Addr: "10.0.0.3:80"}, {Addr: "10.0.0.2:80"}, {Addr: "10.0.0.1:80"}})
	if s.Ejected() != 1 || s.Name() != "web.demo:80" || s.Policy().Accrual.MaxFailures != 2 {
		t.Fatalf("after the update: %d ejected, name %q, policy %+v", s.Ejected(), s.Name(), s.Policy())
	}
	for range 50 {
		l, err := s.Acquire(context.Background(), Queue{}, "")
		if err != nil || l.Addr == "10.0.0.1:80" {
			t.Fatalf("picked %q (%v)", l.Addr, err)
		}
		l.Done(false)
	}
	// When only the failing one is left, requests fail with the cause.
	s.Update([]Endpoint{{Addr: "10.0.0.1:80"}})
	if _, err := s.Acquire(context.Background(), Queue{Timeout: 30 * time.Millisecond, Capacity: 1}, ""); !errors.Is(err, ErrAllFailing) {
		t.Errorf("Acquire with every endpoint ejected: %v, want ErrAllFailing", err)
	}
}

func TestPlainSetsNeverBackOff(t *testing.T) {
	s := Plain("10.1.2.3:443")
	for range 20 {
		l, err := s.Acquire(context.Background(), Queue{}, "")
		if err != nil || l.Addr != "10.1.2.3:443" {
			t.Fatalf("plain set: %+v %v", l, err)
		}
		l.ConnectFailed()
	}
	s = NewSet(Endpoint{Addr: "10.0.0.1:80"})
	s.Passthrough("10.96.0.1:80")
	if ep, ok := s.Pick(); !ok || ep.Addr != "10.96.0.1:80" {
		t.Errorf("after Passthrough: %+v", ep)
	}
	// The retry budget follows the policy: none without retries, kept while its sizing stays.
	if s.Budget() != nil {
		t.Error("a budget without retries")
	}
	pol, _ := servicepolicy.Parse(map[string]string{servicepolicy.RetryHTTP: "5xx"})
	s.SetPolicy("x", pol)
	b := s.Budget()
	s.SetPolicy("x", pol)
	if b == nil || s.Budget() != b {
		t.Error("the budget was not kept across an unchanged policy")
	}
}
