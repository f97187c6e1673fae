package httpproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/metrics"
	"github.com/meshctl/meshctl/proxy/retry"
	"github.com/meshctl/meshctl/proxy/servicepolicy"
)

// dialError is a connection to an endpoint that could not be made: nothing
// of the request was sent, so it is safe to send it elsewhere.
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Kinds of timeout, in metrics.
const (
	timeoutRequest = "request"
	timeoutTry     = "try"
)

// forward sends r where its route says (an endpoint of the destination
// when it has no route for the client), again to others as the route's or
// else the destination's policy allows (retries within the destination's
// budget, of any method under a route's retry, only of a body kept whole
// for replay; a timeout per try and for the whole request), and writes the
// final answer to rec. It returns the endpoint the final answer came from,
// if one was reached.
func (p *Proxy) forward(ctx context.Context, rec *recorder, r *http.Request, info *ConnInfo) (endpoints.Endpoint, bool) {
	set := info.Upstream
	grpc := isGRPC(r.Header)
	hasBody := rec.body != nil && r.ContentLength != 0
	route, found := set.Route(r)
	if !found {
		noRoute(rec, grpc)
		return endpoints.Endpoint{}, false
	}
	target := set
	if route != nil {
		if route.Redirect != nil {
			redirect(rec, r, route, info.Port)
			return endpoints.Endpoint{}, false
		}
		backend := route.Choose()
		if backend == nil {
			info.Metrics.Unavailable(set.Name(), "no_backends")
			p.warn("request failed: its route has no backend to send it to", "destination", set.Name(), "route", route.Name)
			proxyError(rec, "no backends")
			http.Error(rec, "meshctl proxy: the request's route has no backend to send it to", http.StatusInternalServerError)
			return endpoints.Endpoint{}, false
		}
		if backend.Invalid {
			info.Metrics.Unavailable(set.Name(), "invalid_backend")
			p.warn("request failed: its route's backend names no Service port", "destination", set.Name(), "route", route.Name, "backend", backend.Name)
			proxyError(rec, "invalid backend")
			http.Error(rec, "meshctl proxy: the request's route sent it to a backend that names no Service port", http.StatusInternalServerError)
			return endpoints.Endpoint{}, false
		}
		target = backend.Set
		editHeaders(r.Header, route.RequestHeaders)
		rewrite(r, route)
		if len(route.Mirrors) > 0 {
			p.mirror(r, hasBody, info, route)
		}
		editHeaders(r.Header, backend.RequestHeaders)
	}
	pol := policyFor(set.Policy(), route)
	if pol.requestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, pol.requestTimeout)
		defer cancel()
	}
	var budget *retry.Budget
	var replay *replayBody
	var header http.Header // the request's headers as sent, for each try to copy
	if pol.retries && pol.retry.Limit > 0 && ((grpc && pol.retry.GRPC != 0) || pol.retry.Method(r.Method)) {
		if budget = set.Budget(); budget != nil {
			budget.Deposit(time.Now())
			header = r.Header.Clone()
			if hasBody {
				replay = newReplayBody(rec.body)
			}
		}
	}
	lease, err := target.Acquire(ctx, p.queue, "")
	if err != nil {
		p.unavailable(ctx, rec, info, set, grpc, err)
		return endpoints.Endpoint{}, false
	}
	lease = p.Own(lease)
	for try := 0; ; try++ {
		tryCtx := newTry(ctx, pol.retry.PerTryTimeout)
		in := r
		if header != nil {
			// Each try gets its own headers: outbound edits them, and a
			// previous try's transport may still be reading its own.
			in = r.WithContext(r.Context())
			in.Header = header.Clone()
		}
		out := outbound(withEndpoint(tryCtx.ctx(ctx), lease.Endpoint), in, lease.Addr)
		var body *tryBody
		switch {
		case replay != nil:
			body = replay.try()
			out.Body = body
		case hasBody && out.Body != nil:
			// On the copy only: net/http inspects its own request's body
			// after the handler, to drain it.
			out.Body = rec.body
		}
		res, err := p.RoundTrip(out)
		timedOut := tryCtx.stop()
		if timedOut && err == nil {
			drain(res.Body) // too late: its context is cancelled
			res, err = nil, context.DeadlineExceeded
		}
		var de *dialError
		connectFailed := errors.As(err, &de)
		switch {
		case connectFailed:
			lease.ConnectFailed()
		case err != nil:
			lease.Responded(true) // the time it took to fail counts against it
			lease.Done(true)
		default:
			lease.Responded(classify(res.StatusCode, res.Header) == metrics.Failure)
		}
		if timedOut {
			info.Metrics.Timeout(set.Name(), timeoutTry)
		}

		// Send it again? Only with the body whole, the budget willing, and
		// another endpoint ready now: otherwise this answer is the answer.
		if budget != nil && try < pol.retry.Limit && ctx.Err() == nil && (replay == nil || replay.replayable()) &&
			retryable(pol.retry, grpc, res, err, connectFailed, timedOut) && (body == nil || body.released()) &&
			backoff(ctx, pol.backoff) {
			if next, nerr := target.Acquire(ctx, endpoints.Queue{}, lease.Addr); nerr == nil {
				if budget.Withdraw(time.Now()) {
					if res != nil {
						lease.Done(true)
						drain(res.Body)
					}
					tryCtx.cancel()
					info.Metrics.Retry(set.Name())
					rec.retries++
					lease = p.Own(next)
					continue
				}
				next.Cancel()
				info.Metrics.RetryBudgetExhausted(set.Name())
				rec.budgetExhausted = true
			}
		}

		if err != nil {
			tryCtx.cancel()
			switch {
			case errors.Is(ctx.Err(), context.DeadlineExceeded):
				info.Metrics.Timeout(set.Name(), timeoutRequest)
				p.warn("request failed: its timeout expired", "destination", set.Name(), "endpoint", lease.Addr, "timeout", pol.requestTimeout)
				p.timeout(rec, grpc, "request timeout")
			case timedOut:
				p.warn("request failed: its last try's timeout expired", "destination", set.Name(), "endpoint", lease.Addr, "timeout", pol.retry.PerTryTimeout)
				p.timeout(rec, grpc, "try timeout")
			default:
				p.errorHandler(rec, r, lease.Endpoint, err)
			}
			return lease.Endpoint, true
		}
		if route != nil {
			editHeaders(res.Header, route.ResponseHeaders)
		}
		p.respond(rec, out, res, lease)
		tryCtx.cancel()
		return lease.Endpoint, true
	}
}

// requestPolicy is the timeouts and retries that apply to one request.
type requestPolicy struct {
	requestTimeout time.Duration
	retry          retry.Policy
	retries        bool          // retry is on (a route's retry is, even without statuses: for connection failures)
	backoff        time.Duration // the wait before each retry
}

// policyFor is the policy of a request on route (nil: none) of a
// destination whose policy is svc: the route's timeouts and retry take
// precedence over the Service's annotations, which are the fallback. A
// route's retry (GEP-1731, which has no method rule) applies to every
// method, POST and gRPC calls included, whatever the Service's
// retry.meshctl.io/non-idempotent says; the Service's method rule applies
// only to the Service's own retries. Either way the Service's retry budget
// bounds the retries, and a request whose body outgrew MaxReplayBytes is
// never sent again (forward).
func policyFor(svc *servicepolicy.Policy, route *endpoints.Route) requestPolicy {
	pol := requestPolicy{requestTimeout: svc.RequestTimeout, retry: svc.Retry, retries: svc.Retry.Enabled()}
	if route == nil {
		return pol
	}
	switch {
	case route.RequestTimeout > 0:
		pol.requestTimeout = route.RequestTimeout
	case route.RequestTimeout < 0:
		pol.requestTimeout = 0 // the route's "0s": none
	}
	switch {
	case route.TryTimeout > 0:
		pol.retry.PerTryTimeout = route.TryTimeout
	case route.TryTimeout < 0:
		pol.retry.PerTryTimeout = 0
	}
	if rr := route.Retry; rr != nil {
		pol.retry.HTTP, pol.retry.GRPC, pol.retry.Limit = rr.HTTP, 0, rr.Limit
		pol.retry.NonIdempotent = true // every method: GEP-1731 has no method rule
		pol.retries, pol.backoff = true, rr.Backoff
	}
	return pol
}

// backoff waits d before a retry; false when ctx ended first.
func backoff(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// noRoute answers a request none of its destination's routes takes: 404,
// or for gRPC the UNIMPLEMENTED status its clients understand. Its
// response metrics count it; nothing is logged (a client's wrong path is
// no fault of the proxy's).
func noRoute(rec *recorder, grpc bool) {
	h := rec.Header()
	proxyError(rec, "no route")
	if grpc {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcUnimplemented))
		h.Set("Grpc-Message", "meshctl proxy: no route for the method")
		rec.WriteHeader(http.StatusOK)
		return
	}
	http.Error(rec, "meshctl proxy: no route for the request", http.StatusNotFound)
}

// respond streams the final response to the client and tells the balancer
// how it ended.
func (p *Proxy) respond(rec *recorder, out *http.Request, res *http.Response, lease endpoints.Lease) {
	ended := false
	defer func() {
		if !ended {
			lease.Done(true) // the response broke off (copyResponse panics)
		}
	}()
	if res.StatusCode == http.StatusSwitchingProtocols {
		ended = true
		lease.Done(false)
		if err := switchProtocols(rec, out, res); err != nil {
			p.log.Debug("upgrade failed", "host", out.Host, "error", err)
			if rec.status == 0 {
				p.errorHandler(rec, out, lease.Endpoint, err)
			}
		}
		return
	}
	copyResponse(rec, res)
	ended = true
	lease.Done(classify(rec.status, rec.Header()) == metrics.Failure)
}

// retryable reports whether a try's outcome is one the policy retries.
func retryable(pol retry.Policy, grpc bool, res *http.Response, err error, connectFailed, timedOut bool) bool {
	switch {
	case connectFailed || timedOut:
		return true // nothing was sent, or the try was given up on
	case err != nil:
		// The connection broke mid-request: as a 502 would be.
		return pol.Status(http.StatusBadGateway) || pol.GRPCCode(grpcUnavailable)
	case pol.Status(res.StatusCode):
		return true
	case grpc:
		// Only a trailers-only answer says its status before its body.
		code, err := strconv.Atoi(headerValue(res.Header, "Grpc-Status"))
		return err == nil && pol.GRPCCode(code)
	}
	return false
}

const (
	grpcDeadlineExceeded = 4
	grpcUnimplemented    = 12
	grpcUnavailable      = 14
)

// isGRPC reports whether a request is a gRPC call.
func isGRPC(h http.Header) bool {
	return strings.HasPrefix(headerValue(h, "Content-Type"), "application/grpc")
}

// drain discards what is left of a response that will not be used, so its
// connection can be reused, within reason.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 32<<10)
	body.Close()
}

// unavailable answers a request no endpoint could take.
func (p *Proxy) unavailable(ctx context.Context, rec *recorder, info *ConnInfo, set *endpoints.Set, grpc bool, err error) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		info.Metrics.Timeout(set.Name(), timeoutRequest)
		p.warn("request failed: its timeout expired waiting for an endpoint", "destination", set.Name())
		p.timeout(rec, grpc, "request timeout")
		return
	}
	reason := "unavailable"
	switch {
	case errors.Is(err, endpoints.ErrNoEndpoints):
		reason = "no_endpoints"
	case errors.Is(err, endpoints.ErrAllFailing):
		reason = "all_failing"
	case errors.Is(err, endpoints.ErrQueueFull):
		reason = "queue_full"
	}
	info.Metrics.Unavailable(set.Name(), reason)
	if ctx.Err() == nil {
		p.warn("request failed: no endpoint could take it", "destination", set.Name(), "reason", reason, "error", err)
	}
	if reason == "no_endpoints" {
		proxyError(rec, "no endpoints")
	} else {
		proxyError(rec, strings.ReplaceAll(reason, "_", " "))
	}
	http.Error(rec, "meshctl proxy: "+err.Error(), http.StatusServiceUnavailable)
}

// timeout answers a request that ran out of time: 504, or for gRPC the
// DEADLINE_EXCEEDED status its clients understand.
func (p *Proxy) timeout(rec *recorder, grpc bool, what string) {
	h := rec.Header()
	proxyError(rec, what)
	if grpc {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(grpcDeadlineExceeded))
		h.Set("Grpc-Message", "meshctl proxy: "+what)
		rec.WriteHeader(http.StatusOK)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	rec.WriteHeader(http.StatusGatewayTimeout)
	_, _ = rec.Write([]byte("meshctl proxy: " + what + "\n"))
}

// tryContext bounds one try until its response headers arrive; nil when
// tries have no timeout (then every method is a no-op).
type tryContext struct {
	context.Context
	cancelFn context.CancelFunc
	timer    *time.Timer
	fired    atomic.Bool
}

func newTry(parent context.Context, timeout time.Duration) *tryContext {
	if timeout <= 0 {
		return nil
	}
	t := &tryContext{}
	t.Context, t.cancelFn = context.WithCancel(parent)
	t.timer = time.AfterFunc(timeout, func() { t.fired.Store(true); t.cancelFn() })
	return t
}

// ctx is the try's context: its own, or the request's when it has none.
func (t *tryContext) ctx(request context.Context) context.Context {
	if t == nil {
		return request
	}
	return t
}

// stop ends the timeout (the headers arrived, or the try failed) and
// reports whether it had expired.
func (t *tryContext) stop() bool {
	if t == nil {
		return false
	}
	t.timer.Stop()
	return t.fired.Load()
}

// cancel ends the try's context, once its response is done with.
func (t *tryContext) cancel() {
	if t != nil {
		t.cancelFn()
	}
}
