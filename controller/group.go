package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// group owns the goroutines Run starts: it knows which are still running,
// signals when the first returns, and keeps every error they return.
type group struct {
	// ctx is Run's: a goroutine returning before it ends, even with nil,
	// stopped before the controller was asked to, which is an error.
	ctx context.Context
	// first is closed when the first goroutine returns.
	first     chan struct{}
	firstOnce sync.Once
	// exited wakes wait when a goroutine returns.
	exited chan struct{}

	mu      sync.Mutex
	running map[string]int // by name
	errs    []error        // in the order the goroutines returned
}

func newGroup(ctx context.Context) *group {
	return &group{ctx: ctx, first: make(chan struct{}), exited: make(chan struct{}, 1), running: map[string]int{}}
}

// start runs fn on a goroutine of the group.
func (g *group) start(name string, fn func() error) {
	g.mu.Lock()
	g.running[name]++
	g.mu.Unlock()
	go func() {
		err := fn()
		switch asked := g.ctx.Err(); {
		case asked == nil && err == nil:
			err = fmt.Errorf("%s stopped before the controller was asked to", name)
		case asked != nil && errors.Is(err, asked):
			err = nil // it stopped as asked
		}
		g.mu.Lock()
		if err != nil {
			g.errs = append(g.errs, err)
		}
		if g.running[name]--; g.running[name] == 0 {
			delete(g.running, name)
		}
		g.mu.Unlock()
		g.firstOnce.Do(func() { close(g.first) })
		select {
		case g.exited <- struct{}{}:
		default:
		}
	}()
}

// err joins the errors the goroutines returned so far (nil if none did).
func (g *group) err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}

// wait returns nil once every goroutine has returned, or an error naming
// those still running when ctx ends.
func (g *group) wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		left := slices.Sorted(maps.Keys(g.running))
		g.mu.Unlock()
		if len(left) == 0 {
			return nil
		}
		select {
		case <-g.exited:
		case <-ctx.Done():
			return fmt.Errorf("still running after %v: %s", shutdownTimeout, strings.Join(left, ", "))
		}
	}
}

// countObjects exports how many objects an informer caches, which is what
