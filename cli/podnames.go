package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// podNames names the pods behind addresses (tap -o wide): one API call per
// address not seen lately (the pods whose status.podIP it is, in every
// namespace), remembered for podNameTTL in a bounded cache, misses
// included. After a failed lookup (no permission to list pods in every
// namespace, say) it says so once and asks no more.
type podNames struct {
	client kubernetes.Interface
	cache  *lru.Cache[string, podName]
	warn   io.Writer
	failed bool
	now    func() time.Time
}

// podName is a cached answer: NAMESPACE/NAME, or "".
type podName struct {
	name string
	at   time.Time
}

const (
	// podNamesCacheSize bounds the addresses remembered.
	podNamesCacheSize = 4096
	// podNameTTL is how long an answer is trusted: pod addresses are
	// reused.
	podNameTTL = time.Minute
	// podNameTimeout bounds one lookup: tap's lines wait for it.
	podNameTimeout = 5 * time.Second
)

func newPodNames(client kubernetes.Interface, warn io.Writer) *podNames {
	cache, _ := lru.New[string, podName](podNamesCacheSize) // the size is positive
	return &podNames{client: client, cache: cache, warn: warn, now: time.Now}
}

// name is NAMESPACE/NAME of the pod at addr (host or host:port), "" when
// no pod has that address of its own (the node and its host-network pods,
// a host outside the cluster) or it cannot be told.
func (n *podNames) name(ctx context.Context, addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "" || net.ParseIP(host) == nil {
		return ""
	}
	if v, ok := n.cache.Get(host); ok && n.now().Sub(v.at) < podNameTTL {
		return v.name
	}
	if n.failed || n.client == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, podNameTimeout)
	defer cancel()
	pods, err := n.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("status.podIP", host).String()})
	if err != nil {
		if ctx.Err() == nil || ctx.Err() == context.DeadlineExceeded {
			n.failed = true
			fmt.Fprintf(n.warn, "warning: -o wide cannot name the pods behind addresses (%v): they are left out\n", err)
		}
		return ""
	}
	name := ""
	for _, p := range pods.Items {
		if !p.Spec.HostNetwork {
			name = p.Namespace + "/" + p.Name
			break
		}
	}
	n.cache.Add(host, podName{name: name, at: n.now()})
	return name
}
