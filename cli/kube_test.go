package cli

import (
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
