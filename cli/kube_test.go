package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestClientsShareOneConnection: every command's clients come from one rest
// config (its timeout, QPS and burst); long streams have no request timeout;
// no kubeconfig at all says what to do.
func TestClientsShareOneConnection(t *testing.T) {
	k := &kubeOptions{global: &globalOptions{kubeconfig: nowhere(t)}}
	kc, err := k.clients()
	if err != nil {
		t.Fatal(err)
	}
	if kc.typed == nil || kc.dynamic == nil || kc.metadata == nil {
		t.Fatalf("missing clients: %+v", kc)
	}
	if kc.config.Host != "https://127.0.0.1:1" || kc.config.Timeout != 30*time.Second || kc.config.QPS != 50 || kc.config.Burst != 100 {
		t.Errorf("rest config: host %s, timeout %s, QPS %v, burst %d", kc.config.Host, kc.config.Timeout, kc.config.QPS, kc.config.Burst)
	}
	streams, err := k.streamClients()
	if err != nil {
		t.Fatal(err)
	}
	if streams.config.Timeout != 0 || streams.config.QPS != 50 {
		t.Errorf("stream rest config: timeout %s, QPS %v; want no timeout", streams.config.Timeout, streams.config.QPS)
	}
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	_, err = (&kubeOptions{}).clients()
	if err == nil || !strings.Contains(err.Error(), "pass --kubeconfig") {
		t.Errorf("no kubeconfig: %v, want a hint", err)
	}
}

// TestRootFlagsReachEveryCommand: --kubeconfig, --context and
// --control-plane-namespace are the root's, given before or after the
// command's name, and each command connects with them.
func TestRootFlagsReachEveryCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: a, cluster: {server: "https://127.0.0.1:1"}}, {name: b, cluster: {server: "https://127.0.0.2:2"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: ctx-a, context: {cluster: a, user: u}}, {name: ctx-b, context: {cluster: b, user: u, namespace: shop}}]
current-context: ctx-a
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--kubeconfig", path, "--context", "ctx-b", "--control-plane-namespace", "mesh-system", "stat", "deploy"},
		{"stat", "deploy", "--kubeconfig", path, "--context", "ctx-b", "--control-plane-namespace", "mesh-system"},
	} {
		root := NewRootCommand()
		cmd, rest, err := root.Find(args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		// Only the root's flags reach a command's kubeOptions: read them
		// back through the global options the command was built with.
		g := &globalOptions{}
		for _, name := range []string{"kubeconfig", "context", "control-plane-namespace"} {
			if f := cmd.Flags().Lookup(name); f == nil {
				t.Fatalf("%v: no --%s", args, name)
			}
		}
		g.kubeconfig, _ = cmd.Flags().GetString("kubeconfig")
		g.context, _ = cmd.Flags().GetString("context")
		g.controlNS, _ = cmd.Flags().GetString("control-plane-namespace")
		k := &kubeOptions{global: g}
		cfg, err := k.restConfig()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Host != "https://127.0.0.2:2" || k.defaultNamespace() != "shop" || k.controlNS() != "mesh-system" || k.contextName() != "ctx-b" {
			t.Errorf("%v: host %s, namespace %s, control plane %s, context %s; want ctx-b's cluster and namespace, mesh-system",
				args, cfg.Host, k.defaultNamespace(), k.controlNS(), k.contextName())
		}
	}
}
