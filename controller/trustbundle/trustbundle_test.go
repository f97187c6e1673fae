package trustbundle

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func configMap(ns, roots string, lbls map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "mesh-trust-roots", Namespace: ns, Labels: lbls},
		Data:       map[string]string{"roots.pem": roots},
	}
}

func TestCopiesFollowTheSource(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(configMap("meshctl", "A", nil), configMap("byhand", "mine", nil))
	factory := NewFactory(client, "mesh-trust-roots", 0)
	c, err := New(client, factory, "meshctl", "mesh-trust-roots", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	factory.WaitForCacheSync(ctx.Done())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	roots := func(ns string) string {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "mesh-trust-roots", metav1.GetOptions{})
		if err != nil {
			return "<" + err.Error() + ">"
		}
		return cm.Data["roots.pem"]
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if err := c.Ensure(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if got := roots("shop"); got != "A" {
		t.Fatalf("copy in shop = %q, want A", got)
	}
	if err := c.Ensure(ctx, "byhand"); err != nil {
		t.Fatal(err)
	}
	if got := roots("byhand"); got != "A" {
		t.Errorf("a hand-made ConfigMap of the bundle's name holds %q, want the bundle A", got)
	}
	if err := c.Ensure(ctx, "meshctl"); err != nil {
		t.Fatal(err)
	}

	// A rotation: the source changes, every copy follows.
	if _, err := client.CoreV1().ConfigMaps("meshctl").Update(ctx, configMap("meshctl", "A+B", nil), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the copies to follow the source", func() bool { return roots("shop") == "A+B" && roots("byhand") == "A+B" })

	// Someone edits the copy: it is put back.
	if _, err := client.CoreV1().ConfigMaps("shop").Update(ctx, configMap("shop", "tampered", map[string]string{CopyLabel: "true"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the tampered copy to be restored", func() bool { return roots("shop") == "A+B" })
}

// startCopier runs a Copier on client until the test ends.
func startCopier(t *testing.T, client *fake.Clientset, log *slog.Logger) *Copier {
	t.Helper()
	return startCopierResync(t, client, log, 0)
}

// startCopierResync is startCopier with the factory's resync period.
func startCopierResync(t *testing.T, client *fake.Clientset, log *slog.Logger, resync time.Duration) *Copier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	factory := NewFactory(client, "mesh-trust-roots", resync)
	c, err := New(client, factory, "meshctl", "mesh-trust-roots", log)
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; factory.Shutdown() })
	return c
}

// TestAHostileConfigMapMadeBeforeTheControllerIsReplaced: someone who may
// create ConfigMaps in a namespace makes mesh-trust-roots there, holding
// their own root, before the controller starts (before any pod there is
// meshed). The controller must make it the real bundle, label and all,
// without waiting for an injection, and say so at warn.
func TestAHostileConfigMapMadeBeforeTheControllerIsReplaced(t *testing.T) {
	hostile := configMap("shop", "ATTACKER ROOT", map[string]string{"app": "evil"})
	hostile.BinaryData = map[string][]byte{"extra.pem": []byte("ATTACKER ROOT")}
	yes := true
	frozen := configMap("frozen", "ATTACKER ROOT", nil)
	frozen.Immutable = &yes
	frozen.UID = "frozen-uid"
	client := fake.NewClientset(configMap("meshctl", "REAL ROOT", nil), hostile, frozen)
	var logs syncBuffer
	startCopier(t, client, slog.New(slog.NewTextHandler(&logs, nil)))

	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range []string{"shop", "frozen"} {
		for {
			cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "mesh-trust-roots", metav1.GetOptions{})
			if err == nil && cm.Data["roots.pem"] == "REAL ROOT" && len(cm.Data) == 1 && len(cm.BinaryData) == 0 && cm.Labels[CopyLabel] == "true" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s/mesh-trust-roots is still %+v (%v), want exactly the real bundle with the copy label", ns, cm, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// An immutable one cannot be updated (the API server refuses): it is replaced.
	replaced := false
	for _, a := range client.Actions() {
		replaced = replaced || a.GetVerb() == "delete" && a.GetNamespace() == "frozen"
	}
	if !replaced {
		t.Error("the immutable ConfigMap was not deleted and made again")
	}
	// The warning is logged once the update is done: it may come a moment
	// after the object changed.
	for !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "namespace=shop") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about overwriting a ConfigMap that was not the copy:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEnsureIsIdempotent(t *testing.T) {
	client := fake.NewClientset(configMap("meshctl", "A", nil))
	c := startCopier(t, client, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	if err := c.Ensure(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := c.lister.ConfigMaps("shop").Get("mesh-trust-roots"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the copy never reached the cache")
		}
	}
	writes := func() int {
		n := 0
		for _, a := range client.Actions() {
			if v := a.GetVerb(); v == "create" || v == "update" || v == "delete" || v == "patch" {
				n++
			}
		}
		return n
	}
	before := writes()
	for range 3 {
		if err := c.Ensure(ctx, "shop"); err != nil {
			t.Fatal(err)
		}
	}
	if n := writes() - before; n != 0 {
		t.Errorf("Ensure with the copy in place made %d writes, want 0", n)
	}
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestEnsureWithoutSourceFails(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	client := fake.NewClientset()
	factory := NewFactory(client, "mesh-trust-roots", 0)
	c, err := New(client, factory, "meshctl", "mesh-trust-roots", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer cancel() // before Shutdown, which waits for the informers to stop
	factory.WaitForCacheSync(ctx.Done())
	if err := c.Ensure(ctx, "shop"); err == nil {
		t.Error("Ensure without a source succeeded")
	}
}

// refuseWrites makes the fake client refuse the first n creates and updates
// of the bundle's ConfigMap in namespace ns, and counts every attempt.
func refuseWrites(client *fake.Clientset, ns string, n int32) (attempts *atomic.Int32) {
	attempts = new(atomic.Int32)
	refuse := func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() != ns {
			return false, nil, nil
		}
		if attempts.Add(1) <= n {
			return true, nil, apierrors.NewServiceUnavailable("refused for the test")
		}
		return false, nil, nil
	}
	client.PrependReactor("create", "configmaps", refuse)
	client.PrependReactor("update", "configmaps", refuse)
	return attempts
}

// TestAFailedCopyIsRetried: the API server refuses the first writes of a
// copy; the copier tries again with backoff, and the copy is right within
// seconds, long before the informer's resync (ten minutes) could wake it,
// with a warning naming the namespace and the error for every failure.
func TestAFailedCopyIsRetried(t *testing.T) {
	client := fake.NewClientset(configMap("meshctl", "NEW ROOT", nil),
		configMap("shop", "OLD ROOT", map[string]string{CopyLabel: "true"}))
	const refusals = 4 // more than the informer's events at start could wake a copier without retries
	attempts := refuseWrites(client, "shop", refusals)
	var logs syncBuffer
	startCopierResync(t, client, slog.New(slog.NewTextHandler(&logs, nil)), 10*time.Minute)

	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cm, err := client.CoreV1().ConfigMaps("shop").Get(ctx, "mesh-trust-roots", metav1.GetOptions{})
		if err == nil && cm.Data["roots.pem"] == "NEW ROOT" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d write attempts the copy in shop is %+v (%v), want NEW ROOT; logs:\n%s", attempts.Load(), cm, err, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := attempts.Load(); n != refusals+1 {
		t.Errorf("%d write attempts, want %d refused and 1 that succeeded", n, refusals)
	}
	warned := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "level=WARN") && strings.Contains(line, "namespace=shop") && strings.Contains(line, "refused for the test") {
			warned++
		}
	}
	if warned != refusals {
		t.Errorf("%d warnings naming the namespace and the error, want %d:\n%s", warned, refusals, logs.String())
	}
}

// TestRunReturnsWhenCtxEnds: Run returns nil once ctx ends, even with a
// copy waiting in backoff (its every write refused).
func TestRunReturnsWhenCtxEnds(t *testing.T) {
	client := fake.NewClientset(configMap("meshctl", "NEW ROOT", nil),
		configMap("shop", "OLD ROOT", map[string]string{CopyLabel: "true"}))
	attempts := refuseWrites(client, "shop", 1<<30)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory := NewFactory(client, "mesh-trust-roots", 10*time.Minute)
	c, err := New(client, factory, "meshctl", "mesh-trust-roots", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer cancel() // before Shutdown, which waits for the informers to stop
	factory.WaitForCacheSync(ctx.Done())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	deadline := time.Now().Add(5 * time.Second)
	for attempts.Load() < 3 { // refused, then retried with backoff
		if time.Now().After(deadline) {
			t.Fatalf("%d write attempts in shop, want the copy retried", attempts.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}
