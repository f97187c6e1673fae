package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Timing: a leader that dies without releasing the lease is replaced
// within about LeaseDuration; one that stops releases it at once.
const (
	LeaseDuration = 15 * time.Second
	renewDeadline = 10 * time.Second
	retryPeriod   = 2 * time.Second
)

// Election campaigns for a Lease until its context ends. Leading reports
// whether this replica holds it.
type Election struct {
	// Client reads and writes the Lease. Required.
	Client kubernetes.Interface
	// Namespace and Name of the Lease. Required.
	Namespace, Name string
	// Identity of this replica (its pod name). Required.
	Identity string
	// OnLead is called each time this replica starts to lead; it must not
	// block. Default: nothing.
	OnLead func()
	// Log gets the changes of leadership. Default: slog.Default().
	Log *slog.Logger
	// Registerer, when set, gets the gauge controller_leader{lease=Name}:
	// 1 while this replica leads, 0 otherwise. It is registered while Run
	// runs. Default: nil, no metric.
	Registerer prometheus.Registerer

	// mu guards leading. client-go calls OnStartedLeading on a goroutine
	// of its own, possibly after OnStoppedLeading; the term's context is
	// cancelled before OnStoppedLeading runs, so a late start is ignored.
	mu      sync.Mutex
	leading bool
}

// Leading reports whether this replica holds the lease.
func (e *Election) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

func (e *Election) started(term context.Context) {
	e.mu.Lock()
	started := term.Err() == nil
	e.leading = e.leading || started
	e.mu.Unlock()
	if started {
		e.log().Info("leading", "lease", e.Namespace+"/"+e.Name, "identity", e.Identity)
		if e.OnLead != nil {
			e.OnLead()
		}
	}
}

func (e *Election) stopped() {
	e.mu.Lock()
	e.leading = false
	e.mu.Unlock()
}

func (e *Election) log() *slog.Logger {
	if e.Log == nil {
		return slog.Default()
	}
	return e.Log
}

// Run campaigns until ctx ends; a lost lease is campaigned for again.
// The lease is released when ctx ends, so a successor need not wait for it
// to expire.
func (e *Election) Run(ctx context.Context) error {
	if e.Client == nil || e.Namespace == "" || e.Name == "" || e.Identity == "" {
		return errors.New("leader: Client, Namespace, Name and Identity are required")
	}
	if e.Registerer != nil {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "controller_leader", Help: "Whether this replica holds the Lease (1) or not (0).",
			ConstLabels: prometheus.Labels{"lease": e.Name},
		}, func() float64 {
			if e.Leading() {
				return 1
			}
			return 0
		})
		if err := e.Registerer.Register(g); err != nil {
			return fmt.Errorf("leader election %s: register its metric: %w", e.Name, err)
		}
		defer e.Registerer.Unregister(g)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name},
		Client:     e.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, Name: e.Name, ReleaseOnCancel: true,
			LeaseDuration: LeaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: e.started,
				OnStoppedLeading: e.stopped,
			},
		})
		if err != nil {
			return fmt.Errorf("leader election %s: %w", e.Name, err)
		}
		le.Run(ctx) // returns when the lease is lost or ctx ends
		if ctx.Err() == nil {
			e.log().Warn("lost the lease; campaigning again", "lease", e.Namespace+"/"+e.Name)
		}
	}
	return nil
}
