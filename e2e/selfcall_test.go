//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/meshctl/meshctl/identity/ca"
)

// TestPodsCallingTheirOwnService: a meshed replica whose Service leads back
// to itself gets its answers like any other caller (a proxy must not dial
// its own pod with mutual TLS past its own inbound side). One replica: every
// request comes back to the caller; three: about a third does.
func TestPodsCallingTheirOwnService(t *testing.T) {
	anchor := mustCA(t)(ca.NewTrustAnchor("cluster.local", 24*time.Hour))
	issuer := mustCA(t)(ca.NewIssuer(anchor, "cluster.local", 12*time.Hour))
	deployControlPlane(t, "24h", issuer, anchor)
	ns := meshedNamespace(t, "self")
	const count = 200
	applyTemplate(t, "selfcall.yaml", map[string]any{"Namespace": ns, "Sizes": []int{1, 3}, "Count": count})
	for _, size := range []int{1, 3} {
		name := fmt.Sprintf("self%d", size)
		waitReady(t, ns, name, 3*time.Minute)
		pods := podsOf(t, ns, "app="+name)
		if len(pods) != size {
			t.Fatalf("%d pods of %s, want %d", len(pods), name, size)
		}
		for _, pod := range pods {
			var final selfCallReport
			eventually(t, pod+"'s "+fmt.Sprint(count)+" calls to its own Service", 2*time.Minute, func(ctx context.Context) error {
				r, err := finalLoadReport(ctx, ns, pod)
				final = r
				return err
			})
			t.Logf("%d replica(s): %s sent %d requests to its Service: %d errors, statuses %v, answered by %v",
				size, pod, final.Requests, final.Errors, final.Statuses, final.Backends)
			if final.Requests != count || final.Errors != 0 || final.Statuses["200"] != count {
				t.Errorf("%s: %d requests, %d errors, statuses %v; want %d answered 200", pod, final.Requests, final.Errors, final.Statuses, count)
			}
			self := final.Backends[pod]
			switch {
			case size == 1 && self != count:
				t.Errorf("%s: %d of %d answered by itself, want all: %v", pod, self, count, final.Backends)
			case size > 1 && (self == 0 || self == count):
				t.Errorf("%s: %d of %d answered by itself, want a share: %v", pod, self, count, final.Backends)
			}
		}
	}
}

// selfCallReport is the load generator's final report.
type selfCallReport struct {
	Final    bool           `json:"final"`
	Requests int            `json:"requests"`
	Errors   int            `json:"errors"`
	Backends map[string]int `json:"backends"`
	Statuses map[string]int `json:"statuses"`
}

// finalLoadReport reads the final report of a pod's "load" container.
func finalLoadReport(ctx context.Context, ns, pod string) (selfCallReport, error) {
	logs, err := cluster.client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "load"}).DoRaw(ctx)
	if err != nil {
		return selfCallReport{}, err
	}
	s := bufio.NewScanner(bytes.NewReader(logs))
	for s.Scan() {
		var r selfCallReport
		if json.Unmarshal(s.Bytes(), &r) == nil && r.Final {
			return r, nil
		}
	}
	return selfCallReport{}, errors.New("no final report yet")
}
