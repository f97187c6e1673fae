package localcluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// pollInterval is how often readiness conditions are checked.
const pollInterval = 250 * time.Millisecond

// waitFor polls check until it succeeds or timeout passes. Between polls it
// makes sure the components named in watch are still running, so that a
// component that crashed fails the wait at once, with the end of its log.
func waitFor(ctx context.Context, p paths, what string, timeout time.Duration, watch []string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		running := runningComponents(p)
		for _, name := range watch {
			if _, ok := running[name]; !ok {
				return fmt.Errorf("waiting for %s: %s is not running:\n%s", what, name, logTail(p, name, 30))
			}
		}
		select {
		case <-ctx.Done():
			var tails strings.Builder
			for _, name := range watch {
				tails.WriteString(logTail(p, name, 20))
			}
			return fmt.Errorf("waiting for %s: gave up after %s: %w\n%s", what, timeout, last, tails.String())
		case <-time.After(pollInterval):
		}
	}
}

// logTail returns the last n lines of a component's log, framed for humans.
func logTail(p paths, name string, n int) string {
	data, err := os.ReadFile(p.logFile(name))
	if err != nil {
		return fmt.Sprintf("--- %s: no log (%v)\n", name, err)
	}
	var lines []string
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("--- last %d lines of %s:\n%s\n", len(lines), p.logFile(name), strings.Join(lines, "\n"))
}

// httpOK is a check that GETs url and wants 200.
func httpOK(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// apiReady checks the API server's /readyz.
func apiReady(cs kubernetes.Interface) func(context.Context) error {
	return func(ctx context.Context) error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("readyz: %w: %s", err, bytes.TrimSpace(body))
		}
		return nil
	}
}

// nodeReady checks that the node exists and reports Ready.
func nodeReady(cs kubernetes.Interface) func(context.Context) error {
	return func(ctx context.Context) error {
		node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("node %s not ready: %s", NodeName, c.Message)
			}
		}
		return fmt.Errorf("node %s has no Ready condition yet", NodeName)
	}
}

// dnsAnswers checks that cluster DNS, reached through its Service address,
// resolves the kubernetes Service to its ClusterIP.
func dnsAnswers(ctx context.Context) error {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(DNSServiceIP, "53"))
		},
	}
	name := "kubernetes.default.svc." + ClusterDomain
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	if !slices.Contains(addrs, APIServiceIP) {
		return fmt.Errorf("%s resolved to %v, want %s", name, addrs, APIServiceIP)
	}
	return nil
}

// errNotRunning reports a cluster that is not (fully) up.
var errNotRunning = errors.New("the local cluster is not running")

// ComponentLog returns the last lines of one component's log (e.g.
// "kube-proxy"), for a test that wants to know what it did.
func ComponentLog(cfg Config, name string, lines int) string {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err.Error()
	}
	return logTail(paths{cfg}, name, lines)
}

// Diagnose returns the last lines of every component's log, for a test or a
// person to see why the cluster is unhealthy.
func Diagnose(cfg Config, lines int) string {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err.Error()
	}
	p := paths{cfg}
	var b strings.Builder
	for _, c := range components(p, cachedBinDirs(cfg)) {
		b.WriteString(logTail(p, c.name, lines))
	}
	return b.String()
}
