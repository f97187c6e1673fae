package cli

import (
	"context"
	"fmt"
	"io"
	"net"

	lru "github.com/hashicorp/golang-lru/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// podNames names the pods behind addresses (tap -o wide): one API call per
// address not seen before (the pods whose status.podIP it is, in every
// namespace), remembered in a bounded cache, misses included.
type podNames struct {
	client kubernetes.Interface
	cache  *lru.Cache[string, string]
	// warn hears, once, that addresses cannot be named (no permission to
	// list pods in every namespace, say).
	warn   io.Writer
	warned bool
}

// podNamesCacheSize bounds the addresses remembered.
const podNamesCacheSize = 4096

func newPodNames(client kubernetes.Interface, warn io.Writer) *podNames {
	cache, _ := lru.New[string, string](podNamesCacheSize) // the size is positive
	return &podNames{client: client, cache: cache, warn: warn}
}

// name is NAMESPACE/NAME of the pod at addr (host or host:port), "" when
// no pod has that address (the node, a host outside the cluster) or it
// cannot be told. A host-network pod shares its node's address: one that
// is not is preferred.
func (n *podNames) name(ctx context.Context, addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "" || net.ParseIP(host) == nil {
		return ""
	}
	if v, ok := n.cache.Get(host); ok {
		return v
	}
	pods, err := n.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("status.podIP", host).String()})
	if err != nil {
		if !n.warned && ctx.Err() == nil {
			n.warned = true
			fmt.Fprintf(n.warn, "warning: -o wide cannot name the pods behind addresses (%v): they are left out\n", err)
		}
		return ""
	}
	name := ""
	for _, p := range pods.Items {
		if name == "" || !p.Spec.HostNetwork {
			name = p.Namespace + "/" + p.Name
		}
		if !p.Spec.HostNetwork {
			break
		}
	}
	n.cache.Add(host, name)
	return name
}
