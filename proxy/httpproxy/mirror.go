package httpproxy

import (
	"context"
	"net/http"

	"github.com/meshctl/meshctl/internal/api"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/metrics"
)

// mirror sends fire-and-forget copies of r to its route's mirrors (each
// taking its share of the requests, PerMillion, sampled at random: see
// sampled), so that a mirror can never slow, fail or change the request
// itself:
//   - only requests without a body are copied: a body is streamed to the
//     backend as it arrives, and waiting for it to copy it would delay the
//     request; requests with one are counted dropped;
//   - at most Config.MaxMirrors copies are in flight per proxy: beyond, a
//     copy is dropped (counted), never queued;
//   - each copy has Config.MirrorTimeout to be answered, and its answer is
//     discarded.
//
// Call it with the route's own edits made and before r is sent (the copy
// is taken of r's headers and URL as they are then).
func (p *Proxy) mirror(r *http.Request, hasBody bool, info *ConnInfo, route *endpoints.Route) {
	for i := range route.Mirrors {
		m := &route.Mirrors[i]
		if !sampled(m.PerMillion, p.mirrorDraw) {
			continue
		}
		if hasBody {
			info.Metrics.Mirror(m.Backend.Name, metrics.MirrorDropped)
			continue
		}
		select {
		case p.mirrorSlots <- struct{}{}:
		default:
			info.Metrics.Mirror(m.Backend.Name, metrics.MirrorDropped)
			continue
		}
		// The copy keeps the request's values (its connection's info, for
		// the dialers and metrics) but not its cancellation: the client
		// going away need not stop it, its own timeout does.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.mirrorTimeout)
		in := r.Clone(ctx)
		in.Body, in.ContentLength = nil, 0
		editHeaders(in.Header, m.Backend.RequestHeaders)
		p.mirrors.Add(1)
		go func() {
			defer p.mirrors.Done()
			defer func() { <-p.mirrorSlots }()
			defer cancel()
			info.Metrics.Mirror(m.Backend.Name, p.sendMirror(ctx, in, m.Backend.Set))
		}()
	}
}

// sampled reports whether a request is copied to a mirror taking
// perMillion parts per million of the requests; draw draws uniformly in
// [0, n). A share of api.PerMillionAll or more takes every request without
// a draw; 0 or less, none.
func sampled(perMillion int, draw func(n int) int) bool {
	if perMillion >= api.PerMillionAll {
		return true
	}
	return perMillion > 0 && draw(api.PerMillionAll) < perMillion
}

// sendMirror sends one copy to an endpoint of set, at once or not at all,
// and returns its result in metrics.
func (p *Proxy) sendMirror(ctx context.Context, in *http.Request, set *endpoints.Set) string {
	lease, err := set.Acquire(ctx, endpoints.Queue{}, "")
	if err != nil {
		return metrics.MirrorFailed
	}
	lease = p.Own(lease)
	out := outbound(withEndpoint(ctx, lease.Endpoint), in, lease.Addr)
	res, err := p.RoundTrip(out)
	if err != nil {
		if _, ok := err.(*dialError); ok {
			lease.ConnectFailed()
		} else {
			lease.Done(true)
		}
		p.log.Debug("mirrored request failed", "mirror", set.Name(), "endpoint", lease.Addr, "error", err)
		return metrics.MirrorFailed
	}
	drain(res.Body)
	failed := res.StatusCode >= 500
	lease.Done(failed)
	if failed {
		return metrics.MirrorFailed
	}
	return metrics.MirrorSent
}

// WaitMirrors waits until the mirrored copies in flight are done (each is
// bounded by Config.MirrorTimeout).
func (p *Proxy) WaitMirrors() { p.mirrors.Wait() }
