// Package discovery is the proxy's side of the destination service: for each
// outbound destination it sees, it subscribes to the controller's
// /v1/destinations stream over mutual TLS (HTTP/2 with net/http's built-in
// implementation, one connection for all subscriptions) and keeps an endpoints.Set up to date with what the
// controller says. Subscriptions live in a bounded LRU cache. When the
// controller is unreachable, sets keep what they last knew and the stream
// reconnects with backoff. A destination inside the cluster's networks
// fails closed: until the controller has said what it is, its requests and
// connections wait (as long as the proxy's queue timeout allows) and then
// fail, rather than go out in plaintext; one outside them goes to its
// original address as it is.
package discovery

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/internal/certs"
	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/meshtls"
	"github.com/meshctl/meshctl/proxy/servicepolicy"
)

// Config configures a Client.
type Config struct {
	// Addr is the controller's control API, host:port. Required.
	Addr string
	// ControllerID is the SPIFFE ID the controller must prove. Required.
	ControllerID spiffeid.ID
	// Identity is the workload certificate presented to the controller. Required.
	Identity certs.Source
	// FirstAnswer bounds how long the first connection to a new destination
	// waits for the controller before going on: to the destination as it is
	// outside ClusterNetworks, else to a set that is still empty (its
	// requests wait in the queue for the controller's answer). Default: 1s.
	FirstAnswer time.Duration
	// ClusterNetworks are the cluster's pod and Service networks:
	// destinations in them are never reached in plaintext before the
	// controller says they are outside the mesh. Default: none (every
	// destination not yet answered goes as it is), which only tests want;
	// mesh-proxy passes meshnames.DefaultClusterNetworks or its flag.
	ClusterNetworks endpoints.Networks
	// CacheSize bounds the destinations followed at once; the least recently
	// used one is dropped beyond it. Default: 500.
	CacheSize int
	// MaxBackoff bounds the wait between reconnections. Default: 10s.
	MaxBackoff time.Duration
	// Log receives the client's logs. Default: discard.
	Log *slog.Logger
	// Namespace is the client's namespace: it picks the consumer routes
	// that apply to this proxy's requests (api.Route.Consumer). Default:
	// the namespace of Identity's SPIFFE ID (spiffe://<td>/ns/<ns>/sa/<sa>).
	Namespace string
	// Pod and InboundPolicy, when both set, follow the pod's inbound policy
	// (/v1/inbound-policy): every version is handed to InboundPolicy.
	Pod           string
	InboundPolicy func(api.InboundPolicy)
}

// Client resolves destinations through the controller. It implements
// endpoints.Resolver.
type Client struct {
	cfg  Config
	http *http.Client
	ctx  context.Context // ends with Run; every subscription's parent
	stop context.CancelFunc
	wg   sync.WaitGroup // subscriptions
	// down is set while the controller cannot be reached, so that new
	// destinations do not each wait FirstAnswer for nothing.
	down atomic.Bool

	mu    sync.Mutex // guards cache (Get and Add together)
	cache *lru.Cache[netip.AddrPort, *subscription]
}

// subscription follows one destination.
type subscription struct {
	dst       netip.AddrPort
	set       *endpoints.Set
	answered  chan struct{} // closed at the first answer
	answerOne sync.Once
	cancel    context.CancelFunc
}

// withDefaults returns the configuration with its unset fields at their
// defaults.
func (c Config) withDefaults() Config {
	if c.FirstAnswer == 0 {
		c.FirstAnswer = time.Second
	}
	if c.CacheSize == 0 {
		c.CacheSize = 500
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 10 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// New checks the configuration. Call Run to keep the subscriptions going.
func New(cfg Config) (*Client, error) {
	if cfg.Addr == "" || cfg.Identity == nil || cfg.ControllerID == (spiffeid.ID{}) {
		return nil, errors.New("discovery: Addr, ControllerID and Identity are required")
	}
	cfg = cfg.withDefaults()
	c := &Client{cfg: cfg}
	c.ctx, c.stop = context.WithCancel(context.Background())
	cache, err := lru.NewWithEvict(cfg.CacheSize, func(_ netip.AddrPort, s *subscription) { s.cancel() })
	if err != nil {
		return nil, err
	}
	c.cache = cache
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true) // HTTP/2 only: every subscription on one connection
	c.http = &http.Client{Transport: &http.Transport{
		TLSClientConfig: meshtls.ClientConfig(cfg.Identity, cfg.ControllerID, "h2", tls.NewLRUClientSessionCache(4)),
		Protocols:       protocols,
		// A controller that vanished without closing its connections (its
		// pod killed) is noticed by pings, not by the kernel.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 5 * time.Second},
	}}
	return c, nil
}

// Run keeps the subscriptions going until ctx ends, then stops them all.
func (c *Client) Run(ctx context.Context) error {
	if c.cfg.Pod != "" && c.cfg.InboundPolicy != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.followInboundPolicy(c.ctx)
		}()
	}
	select {
	case <-ctx.Done():
	case <-c.ctx.Done():
	}
	c.stop()
	c.wg.Wait()
	c.http.CloseIdleConnections()
	return nil
}

// Resolve returns the endpoints of dst, subscribing to it on first use. The
// first call for a destination waits up to FirstAnswer (or until ctx ends)
// for the controller; until it answers, the set holds dst itself.
func (c *Client) Resolve(ctx context.Context, dst netip.AddrPort) *endpoints.Set {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	c.mu.Lock()
	sub, ok := c.cache.Get(dst)
	if !ok {
		if c.ctx.Err() != nil { // stopped
			c.mu.Unlock()
			return c.unanswered(dst)
		}
		sub = c.subscribe(dst)
		c.cache.Add(dst, sub)
	}
	c.mu.Unlock()
	select {
	case <-sub.answered:
		return sub.set
	default:
	}
	if c.down.Load() {
		return sub.set
	}
	t := time.NewTimer(c.cfg.FirstAnswer)
	defer t.Stop()
	select {
	case <-sub.answered:
	case <-t.C:
		if c.cfg.ClusterNetworks.Contains(dst.Addr()) {
			c.cfg.Log.Debug("no answer from the controller in time; requests wait for it", "destination", dst)
		} else {
			c.cfg.Log.Debug("no answer from the controller in time; forwarding as is", "destination", dst)
		}
	case <-ctx.Done():
	}
	return sub.set
}

// List returns the destinations followed and their endpoints.
func (c *Client) List() map[string][]endpoints.Endpoint {
	c.mu.Lock()
	subs := c.cache.Values()
	c.mu.Unlock()
	out := make(map[string][]endpoints.Endpoint, len(subs))
	for _, s := range subs {
		out[s.dst.String()] = s.set.Endpoints()
	}
	return out
}

// unanswered is dst's set before the controller answers: empty (requests
// wait for the answer) inside the cluster's networks, dst as it is outside.
func (c *Client) unanswered(dst netip.AddrPort) *endpoints.Set {
	if c.cfg.ClusterNetworks.Contains(dst.Addr()) {
		return endpoints.Awaiting(dst.String())
	}
	return endpoints.Plain(dst.String())
}

// subscribe starts following dst.
func (c *Client) subscribe(dst netip.AddrPort) *subscription {
	ctx, cancel := context.WithCancel(c.ctx)
	sub := &subscription{dst: dst, set: c.unanswered(dst), answered: make(chan struct{}), cancel: cancel}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.follow(ctx, sub)
	}()
	return sub
}

// follow keeps a stream open for sub, reconnecting with jittered
// exponential backoff; the set keeps its endpoints in between. A refusal
// that retrying cannot change ends it.
func (c *Client) follow(ctx context.Context, sub *subscription) {
	log := c.cfg.Log.With("destination", sub.dst)
	c.reconnect(ctx, "destination", log, func(ctx context.Context) (bool, error) { return c.stream(ctx, sub) },
		func(answered bool, err error) (stop bool) {
			var perm *permanentError
			if errors.As(err, &perm) {
				if c.cfg.ClusterNetworks.Contains(sub.dst.Addr()) {
					// Inside the cluster, a refusal is no reason for plaintext.
					log.Warn("the controller refused a destination inside the cluster; its requests fail", "error", err)
				} else {
					log.Warn("the controller refused the destination; forwarding as is", "error", err)
					sub.set.Passthrough(sub.dst.String())
				}
				sub.answer()
				return true
			}
			if !answered {
				c.down.Store(true)
			}
			return false
		})
}

// reconnect calls stream until ctx ends, waiting a jittered backoff
// between calls that doubles up to Config.MaxBackoff and starts again
// from the minimum after a stream that delivered something. ended sees
// each ended stream's result first (nil: nothing to do); when it returns
// true, reconnect stops.
func (c *Client) reconnect(ctx context.Context, what string, log *slog.Logger, stream func(context.Context) (answered bool, err error), ended func(answered bool, err error) (stop bool)) {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for {
		answered, err := stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if ended != nil && ended(answered, err) {
			return
		}
		if answered {
			backoff = minBackoff
		}
		log.Debug(what+" stream ended; reconnecting", "error", err, "in", backoff)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, c.cfg.MaxBackoff)
	}
}

// permanentError is an answer that retrying will not change.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }

// open starts a JSON-lines stream of the control API; a refusal is an
// error carrying the controller's reason (permanent for a 400).
func (c *Client) open(ctx context.Context, path string, query url.Values) (*http.Response, error) {
	u := url.URL{Scheme: "https", Host: c.cfg.Addr, Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &permanentError{err}
	}
	res, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		var e api.Error
		_ = json.NewDecoder(io.LimitReader(res.Body, 4096)).Decode(&e)
		err := fmt.Errorf("controller answered %s: %s", res.Status, e.Error)
		if res.StatusCode == http.StatusBadRequest {
			return nil, &permanentError{err}
		}
		return nil, err
	}
	return res, nil
}

// stream reads one destination stream until it ends; answered says whether
// it delivered anything.
func (c *Client) stream(ctx context.Context, sub *subscription) (answered bool, err error) {
	res, err := c.open(ctx, api.DestinationsPath, url.Values{"target": {sub.dst.String()}})
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var d api.Destination
		if err := dec.Decode(&d); err != nil {
			return answered, err
		}
		eps, known := Translate(sub.dst, d, c.cfg.Log)
		if known {
			sub.set.Update(eps)
			pol, errs := servicepolicy.Parse(d.Annotations)
			for _, err := range errs {
				c.cfg.Log.Warn("ignoring a bad traffic-policy annotation", "service", d.Service, "error", err)
			}
			sub.set.SetPolicy(name(sub.dst, d), pol)
			sub.set.SetRoutes(TranslateRoutes(sub.dst, d.Routes, c.namespace(), c.cfg.Log))
		} else {
			sub.set.Passthrough(sub.dst.String())
		}
		answered = true
		c.down.Store(false)
		sub.answer()
		c.cfg.Log.Debug("destination updated", "destination", sub.dst, "service", d.Service, "endpoints", len(eps))
	}
}

// followInboundPolicy keeps the pod's inbound policy stream open,
// reconnecting with jittered backoff; the last policy stays in force in
// between.
func (c *Client) followInboundPolicy(ctx context.Context) {
	c.reconnect(ctx, "inbound policy", c.cfg.Log, c.streamInboundPolicy, nil)
}

func (c *Client) streamInboundPolicy(ctx context.Context) (answered bool, err error) {
	res, err := c.open(ctx, api.InboundPolicyPath, url.Values{"pod": {c.cfg.Pod}})
	if err != nil {
		c.cfg.Log.Warn("no inbound policy from the controller", "error", err)
		return false, err
	}
	defer res.Body.Close()
	dec := json.NewDecoder(res.Body)
	for {
		var p api.InboundPolicy
		if err := dec.Decode(&p); err != nil {
			return answered, err
		}
		answered = true
		c.cfg.InboundPolicy(p)
		c.cfg.Log.Debug("inbound policy updated", "default", p.Default, "rules", len(p.Rules), "probes", len(p.Probes))
	}
}

// namespace is the client's namespace (Config.Namespace).
func (c *Client) namespace() string {
	if c.cfg.Namespace != "" {
		return c.cfg.Namespace
	}
	if b := c.cfg.Identity.Bundle(); b != nil {
		return b.ID.Namespace
	}
	return ""
}

func (s *subscription) answer() { s.answerOne.Do(func() { close(s.answered) }) }

// name is a destination's name in metrics: its Service and port when it is
// one, else its address.
func name(dst netip.AddrPort, d api.Destination) string {
	if d.Service != "" {
		return d.Service + ":" + strconv.Itoa(int(dst.Port()))
	}
	return dst.String()
}

// Sets returns the sets of the destinations followed.
func (c *Client) Sets() []*endpoints.Set {
	c.mu.Lock()
	subs := c.cache.Values()
	c.mu.Unlock()
	out := make([]*endpoints.Set, len(subs))
	for i, s := range subs {
		out[i] = s.set
	}
	return out
}

// TranslateRoutes turns the controller's routes into the set's, keeping
// only the group that applies to a client in namespace: the consumer
// routes of that namespace when there are any, else the producer routes
// (Consumer ""). Routes of other consumers are left out.
func TranslateRoutes(dst netip.AddrPort, routes []api.Route, namespace string, log *slog.Logger) []endpoints.RouteSpec {
	consumer := false
	for _, r := range routes {
		if namespace != "" && r.Consumer == namespace {
			consumer = true
			break
		}
	}
	want := ""
	if consumer {
		want = namespace
	}
	backend := func(b api.Backend) endpoints.BackendSpec {
		eps, _ := Translate(dst, api.Destination{Known: true, Endpoints: b.Endpoints}, log)
		return endpoints.BackendSpec{Name: b.Service, Weight: b.Weight, RequestHeaders: b.RequestHeaders, Endpoints: eps, Invalid: b.Invalid}
	}
	var out []endpoints.RouteSpec
	for _, r := range routes {
		if r.Consumer != want {
			continue
		}
		spec := endpoints.RouteSpec{
			Name: r.Name, Match: r.Match, RequestHeaders: r.RequestHeaders, ResponseHeaders: r.ResponseHeaders,
			Redirect: r.Redirect, Rewrite: r.Rewrite, Timeouts: r.Timeouts, Retry: r.Retry,
			Backends: make([]endpoints.BackendSpec, len(r.Backends)),
		}
		for j, b := range r.Backends {
			spec.Backends[j] = backend(b)
		}
		for _, m := range r.Mirrors {
			spec.Mirrors = append(spec.Mirrors, endpoints.MirrorSpec{Backend: backend(m.Backend), PerMillion: m.Share()})
		}
		out = append(out, spec)
	}
	return out
}

// Translate turns the controller's answer for dst into endpoints; known is
// false for a destination outside the cluster, which is dst itself,
// unmeshed. An endpoint whose identity does not parse is left out rather
// than reached in plaintext.
func Translate(dst netip.AddrPort, d api.Destination, log *slog.Logger) (eps []endpoints.Endpoint, known bool) {
	if !d.Known {
		return []endpoints.Endpoint{{Addr: dst.String()}}, false
	}
	eps = make([]endpoints.Endpoint, 0, len(d.Endpoints))
	for _, e := range d.Endpoints {
		if _, err := netip.ParseAddrPort(e.Addr); err != nil {
			log.Warn("the controller sent a bad endpoint address; skipping it", "destination", dst, "addr", e.Addr)
			continue
		}
		ep := endpoints.Endpoint{Addr: e.Addr, Opaque: e.Opaque, Workload: e.Workload, Weight: e.Weight}
		if e.Identity != "" {
			id, err := spiffeid.Parse(e.Identity)
			if err != nil {
				log.Warn("the controller sent a bad identity; skipping the endpoint", "destination", dst, "addr", e.Addr, "error", err)
				continue
			}
			ep.Identity = id
		}
		eps = append(eps, ep)
	}
	return eps, true
}
