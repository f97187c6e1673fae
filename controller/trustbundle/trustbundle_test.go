package trustbundle

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
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
	if got := roots("byhand"); got != "mine" {
		t.Errorf("a hand-made ConfigMap was changed to %q", got)
	}
	if err := c.Ensure(ctx, "meshctl"); err != nil {
		t.Fatal(err)
	}

	// A rotation: the source changes, the copy follows, the hand-made one does not.
	if _, err := client.CoreV1().ConfigMaps("meshctl").Update(ctx, configMap("meshctl", "A+B", nil), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the copy to follow the source", func() bool { return roots("shop") == "A+B" })
	if got := roots("byhand"); got != "mine" {
		t.Errorf("a hand-made ConfigMap was changed to %q", got)
	}

	// Someone edits the copy: it is put back.
	if _, err := client.CoreV1().ConfigMaps("shop").Update(ctx, configMap("shop", "tampered", map[string]string{CopyLabel: "true"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually("the tampered copy to be restored", func() bool { return roots("shop") == "A+B" })
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
