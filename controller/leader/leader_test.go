package leader

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
)

// eventually polls cond every 10ms until it holds, failing after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

func lease(t *testing.T, client kubernetes.Interface) *coordinationv1.Lease {
	t.Helper()
	l, err := client.CoordinationV1().Leases("meshctl").Get(context.Background(), "route-status", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// leaderGauge is what reg reports of controller_leader{lease="route-status"}
// (the text exposition; empty when it is not registered).
func leaderGauge(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "controller_leader" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "lease" && l.GetValue() == "route-status" {
					if m.GetGauge().GetValue() == 1 {
						return "1"
					}
					return "0"
				}
			}
		}
	}
	return ""
}

func TestRunRequiresItsFields(t *testing.T) {
	client := fake.NewClientset()
	for name, e := range map[string]*Election{
		"no client":    {Namespace: "meshctl", Name: "route-status", Identity: "a"},
		"no namespace": {Client: client, Name: "route-status", Identity: "a"},
		"no name":      {Client: client, Namespace: "meshctl", Identity: "a"},
		"no identity":  {Client: client, Namespace: "meshctl", Name: "route-status"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := e.Run(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "required") {
			t.Errorf("%s: Run = %v, want an error naming the required fields", name, err)
		}
		if e.Leading() {
			t.Errorf("%s: leading", name)
		}
	}
	if n, _ := client.CoordinationV1().Leases("meshctl").List(context.Background(), metav1.ListOptions{}); len(n.Items) != 0 {
		t.Errorf("a Lease was made: %v", n.Items)
	}
}

// TestAnElectionLeadsOnceAndReleasesTheLeaseWhenCancelled: alone, an
// Election takes the Lease; Leading and the gauge say so; OnLead is called
// once for the term, not at each renewal; cancelling its context makes Run
// return, Leading false, and releases the Lease.
func TestAnElectionLeadsOnceAndReleasesTheLeaseWhenCancelled(t *testing.T) {
	client := fake.NewClientset()
	reg := prometheus.NewRegistry()
	var leads atomic.Int32
	e := &Election{Client: client, Namespace: "meshctl", Name: "route-status", Identity: "controller-a",
		OnLead: func() { leads.Add(1) }, Log: slog.New(slog.DiscardHandler), Registerer: reg}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()

	eventually(t, 10*time.Second, "leading", e.Leading)
	eventually(t, 5*time.Second, "OnLead called", func() bool { return leads.Load() == 1 })
	if h := holder(lease(t, client)); h != "controller-a" {
		t.Errorf("the Lease is held by %q, want controller-a", h)
	}
	if g := leaderGauge(t, reg); g != "1" {
		t.Errorf(`controller_leader{lease="route-status"} = %q while leading, want 1`, g)
	}
	// Wait for a renewal: the term goes on, OnLead is not called again.
	renewed := lease(t, client).Spec.RenewTime.DeepCopy()
	eventually(t, 3*LeaseDuration, "the Lease renewed", func() bool {
		r := lease(t, client).Spec.RenewTime
		return r != nil && r.After(renewed.Time)
	})
	if n := leads.Load(); n != 1 || !e.Leading() {
		t.Errorf("after a renewal: OnLead called %d times, leading %v; want once, leading", n, e.Leading())
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(renewDeadline + 5*time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	if e.Leading() {
		t.Error("still leading after Run returned")
	}
	if h := holder(lease(t, client)); h != "" {
		t.Errorf("the Lease is still held by %q after Run returned; want it released", h)
	}
	if g := leaderGauge(t, reg); g != "" {
		t.Errorf("controller_leader still registered after Run returned: %q", g)
	}
}

// TestTheGaugeSaysZeroWhileAnotherLeads: a replica that does not hold the
// Lease reports 0.
func TestTheGaugeSaysZeroWhileAnotherLeads(t *testing.T) {
	far := metav1.NewMicroTime(time.Now().Add(time.Hour))
	other, secs := "controller-b", int32(3600)
	client := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "meshctl", Name: "route-status"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &other, LeaseDurationSeconds: &secs, RenewTime: &far, AcquireTime: &far},
	})
	reg := prometheus.NewRegistry()
	e := &Election{Client: client, Namespace: "meshctl", Name: "route-status", Identity: "controller-a",
		Log: slog.New(slog.DiscardHandler), Registerer: reg}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	eventually(t, 10*time.Second, "the gauge registered", func() bool { return leaderGauge(t, reg) != "" })
	if g := leaderGauge(t, reg); g != "0" || e.Leading() {
		t.Errorf("another holds the Lease: gauge %q, leading %v; want 0, false", g, e.Leading())
	}
	if h := holder(lease(t, client)); h != other {
		t.Errorf("the Lease was taken from its holder: %q", h)
	}
}

// TestOnLeadIsCalledOncePerTerm drives the callbacks as client-go does, one
// term after another.
func TestOnLeadIsCalledOncePerTerm(t *testing.T) {
	var leads atomic.Int32
	e := &Election{Namespace: "meshctl", Name: "route-status", Identity: "a", OnLead: func() { leads.Add(1) }, Log: slog.New(slog.DiscardHandler)}
	for term := 1; term <= 3; term++ {
		ctx, cancel := context.WithCancel(context.Background())
		e.started(ctx)
		if !e.Leading() || leads.Load() != int32(term) {
			t.Fatalf("term %d: leading %v, OnLead called %d times", term, e.Leading(), leads.Load())
		}
		cancel() // client-go cancels the term's context before OnStoppedLeading
		e.stopped()
		if e.Leading() {
			t.Fatalf("term %d: leading after it stopped", term)
		}
	}
}

// TestAStartArrivingAfterItsTermEndedDoesNotLead: client-go calls
// OnStartedLeading on a goroutine of its own, which may run after the
// term's context was cancelled and OnStoppedLeading ran; that late start
// must neither set leading nor call OnLead.
func TestAStartArrivingAfterItsTermEndedDoesNotLead(t *testing.T) {
	var leads atomic.Int32
	e := &Election{Namespace: "meshctl", Name: "route-status", Identity: "a", OnLead: func() { leads.Add(1) }, Log: slog.New(slog.DiscardHandler)}
	term, cancel := context.WithCancel(context.Background())
	cancel()
	e.stopped()
	e.started(term)
	if e.Leading() || leads.Load() != 0 {
		t.Errorf("a late start: leading %v, OnLead called %d times; want neither", e.Leading(), leads.Load())
	}
	// The next term leads as usual.
	next, cancelNext := context.WithCancel(context.Background())
	defer cancelNext()
	e.started(next)
	if !e.Leading() || leads.Load() != 1 {
		t.Errorf("the next term: leading %v, OnLead called %d times; want leading, once", e.Leading(), leads.Load())
	}
}
