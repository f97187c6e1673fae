package cli

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/meshctl/meshctl/cli/proxystats"
	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/command"
	"github.com/meshctl/meshctl/internal/meshnames"
	"github.com/meshctl/meshctl/internal/spiffeid"
)

// peerFlags are --to and --from (a resource at the other end of the
// requests), their namespaces, and --authority: one contract for stat,
// tap, top and edges.
type peerFlags struct {
	to, toNamespace     string
	from, fromNamespace string
	authority           string
}

const peerHelp = `--to TYPE/NAME keeps the requests the target's pods sent to that resource, and
--from TYPE/NAME those they received from it, matched exactly (not by prefix):
  deploy/NAME   the Deployment's pods: by their identity (the ServiceAccount they
                run as) and, where the proxies know it, their workload name
  sa/NAME       every pod running as that ServiceAccount
  ns/NAME       every meshed pod of that namespace
  svc/NAME      (--to only) requests addressed to that Service: NAME, NAME.NS,
                NAME.NS.svc or NAME.NS.svc.<cluster domain>, any port
The resource is in the target's namespace unless --to-namespace/--from-namespace
says otherwise. A destination's identity is known only over mutual TLS: --to
deploy/ or sa/ leaves out plaintext requests. svc/ matches the authority the
request was sent with (its Host). --authority HOST[:PORT] keeps the requests
with that authority (any port when none is given; case does not matter).`

func (p *peerFlags) addFlags(fs *pflag.FlagSet, from bool) {
	fs.StringVar(&p.to, "to", "", "only requests sent to this resource: deploy/NAME, sa/NAME, ns/NAME or svc/NAME (exact)")
	fs.StringVar(&p.toNamespace, "to-namespace", "", "namespace of --to's resource (default: the target's)")
	if from {
		fs.StringVar(&p.from, "from", "", "only requests received from this resource: deploy/NAME, sa/NAME or ns/NAME (exact)")
		fs.StringVar(&p.fromNamespace, "from-namespace", "", "namespace of --from's resource (default: the target's)")
	}
	fs.StringVar(&p.authority, "authority", "", "only requests with this authority: HOST[:PORT] (any port without one)")
}

func (p *peerFlags) validate() error {
	if p.from != "" && p.to != "" {
		return command.Usagef("give --from or --to, not both")
	}
	if p.toNamespace != "" && p.to == "" {
		return command.Usagef("--to-namespace needs --to")
	}
	if p.fromNamespace != "" && p.from == "" {
		return command.Usagef("--from-namespace needs --from")
	}
	for _, f := range []struct{ flag, value, namespace string }{{"--to", p.to, p.toNamespace}, {"--from", p.from, p.fromNamespace}} {
		if f.value == "" {
			continue
		}
		kind, _, err := parsePeer(f.flag, f.value)
		if err != nil {
			return err
		}
		if kind == "ns" && f.namespace != "" {
			return command.Usagef("%s %s names a namespace: %s-namespace does not go with it", f.flag, f.value, f.flag)
		}
	}
	return nil
}

// peer is a resolved --to or --from: what it matches.
type peer struct {
	// idPath is the SPIFFE ID path ("/ns/NS/sa/SA") a pod of it proves;
	// ending in "/", a prefix (a namespace's). Empty: matched by hosts.
	idPath string
	// workload, for a Deployment, is the workload name the proxies'
	// dst_workload label carries.
	workload string
	// hosts are the names a Service is addressed by.
	hosts []string
}

// resolvePeer reads --to or --from (flag names which) as TYPE/NAME in ns,
// asking the cluster what identity a Deployment's pods run as;
// sameNamespace says ns is the target's (a Service's bare name means it).
func resolvePeer(ctx context.Context, client kubernetes.Interface, flag, value, ns, clusterDomain string, sameNamespace bool) (*peer, error) {
	kind, name, err := parsePeer(flag, value)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "deploy":
		d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, command.NotFound(fmt.Errorf("%s %s: %w", flag, value, err))
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, value, err)
		}
		sa := d.Spec.Template.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		return &peer{idPath: "/ns/" + ns + "/sa/" + sa, workload: name}, nil
	case "sa":
		return &peer{idPath: "/ns/" + ns + "/sa/" + name}, nil
	case "ns":
		return &peer{idPath: "/ns/" + name + "/"}, nil
	}
	svc := name + "." + ns + ".svc"
	hosts := []string{name + "." + ns, svc, svc + "." + clusterDomain, svc + "." + clusterDomain + "."}
	if sameNamespace {
		// The bare name is the Service only for clients of its namespace.
		hosts = append(hosts, name)
	}
	return &peer{hosts: hosts}, nil
}

// parsePeer reads --to's or --from's TYPE/NAME, the type as deploy, sa,
// ns or svc.
func parsePeer(flag, value string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(value, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", "", command.Usagef("%s %q: want TYPE/NAME (deploy/NAME, sa/NAME, ns/NAME or svc/NAME)", flag, value)
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 || strings.Contains(name, ".") && strings.EqualFold(kind, "svc") {
		return "", "", command.Usagef("%s %q: %q is no Kubernetes name (the namespace goes in %s-namespace)", flag, value, name, flag)
	}
	switch strings.ToLower(kind) {
	case "deploy", "deployment", "deployments":
		return "deploy", name, nil
	case "sa", "serviceaccount", "serviceaccounts":
		return "sa", name, nil
	case "ns", "namespace", "namespaces":
		return "ns", name, nil
	case "svc", "service", "services":
		if flag != "--to" {
			return "", "", command.Usagef("%s %s: a Service sends no requests; give the deploy/, sa/ or ns/ that does", flag, value)
		}
		return "svc", name, nil
	case "po", "pod", "pods":
		return "", "", command.Usagef("%s %s: the proxies count requests by workload and identity, not by pod: give the pod's deploy/ or sa/", flag, value)
	}
	return "", "", command.Usagef("%s %q: unknown type %q: want deploy, sa, ns or svc", flag, value, kind)
}

// matchID says whether a SPIFFE ID is one of the peer's identities.
func (p *peer) matchID(id string) bool {
	return p.idPath != "" && spiffeid.PathMatches(p.idPath, id)
}

// matchAuthority says whether an authority (host[:port]) names the peer.
func (p *peer) matchAuthority(authority string) bool {
	host := hostOf(authority)
	for _, h := range p.hosts {
		if strings.EqualFold(host, h) {
			return true
		}
	}
	return false
}

// hostOf is an authority without its port.
func hostOf(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		return h
	}
	return authority
}

// matchAuthorityFlag says whether an authority is --authority's: the same
// host and port, or the same host when the flag gives no port.
func matchAuthorityFlag(flag, authority string) bool {
	if _, _, err := net.SplitHostPort(flag); err == nil {
		return strings.EqualFold(flag, authority)
	}
	return strings.EqualFold(flag, hostOf(authority))
}

// resolvedPeers are the flags resolved against the cluster.
type resolvedPeers struct {
	to, from  *peer
	authority string
}

// resolve reads the flags; ns is the target's namespace, controlNS the
// control plane's (whose settings say the cluster's domain).
func (p *peerFlags) resolve(ctx context.Context, client kubernetes.Interface, ns, controlNS string) (resolvedPeers, error) {
	r := resolvedPeers{authority: p.authority}
	var err error
	if p.to != "" {
		toNS := p.toNamespace
		if toNS == "" {
			toNS = ns
		}
		if r.to, err = resolvePeer(ctx, client, "--to", p.to, toNS, clusterDomainOf(ctx, client, controlNS), toNS == ns); err != nil {
			return r, err
		}
	}
	if p.from != "" {
		fromNS := p.fromNamespace
		if fromNS == "" {
			fromNS = ns
		}
		if r.from, err = resolvePeer(ctx, client, "--from", p.from, fromNS, "", fromNS == ns); err != nil {
			return r, err
		}
	}
	return r, nil
}

// series is the filter of metric series the flags ask for, default when
// none is given.
func (r resolvedPeers) series(def proxystats.Filter) proxystats.Filter {
	if r.to == nil && r.from == nil && r.authority == "" {
		return def
	}
	return func(s proxystats.Series) bool {
		if r.authority != "" && !matchAuthorityFlag(r.authority, s.Authority) {
			return false
		}
		switch {
		case r.to != nil:
			if s.Direction != "outbound" {
				return false
			}
			if r.to.hosts != nil {
				return r.to.matchAuthority(s.Authority)
			}
			if r.to.workload != "" && s.DstWorkload != "" && s.DstWorkload != r.to.workload {
				return false
			}
			return r.to.matchID(s.ServerID)
		case r.from != nil:
			return s.Direction == "inbound" && r.from.matchID(s.ClientID)
		case def != nil:
			return def(s)
		}
		return true
	}
}

// tapEvent is the same filter for a tap stream's request starts.
func (r resolvedPeers) tapEvent(e tapstream.Event) bool {
	if r.authority != "" && !matchAuthorityFlag(r.authority, e.Authority) {
		return false
	}
	switch {
	case r.to != nil:
		if e.Direction != "outbound" {
			return false
		}
		if r.to.hosts != nil {
			return r.to.matchAuthority(e.Authority)
		}
		return true // the identity is known at the end (KeepEnd)
	case r.from != nil:
		return e.Direction == "inbound" && r.from.matchID(e.ClientID)
	}
	return true
}

// clusterDomainOf is the cluster's DNS domain as install recorded it, else
// the default.
func clusterDomainOf(ctx context.Context, client kubernetes.Interface, controlNS string) string {
	inst, err := readInstalled(ctx, client, controlNS)
	if err == nil {
		if d := inst.kept["cluster-domain"]; d != "" {
			return d
		}
	}
	return meshnames.ClusterDomain
}
