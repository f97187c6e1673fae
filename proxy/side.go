package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/meshctl/meshctl/internal/spiffeid"
	"github.com/meshctl/meshctl/proxy/authz"
	"github.com/meshctl/meshctl/proxy/detect"
	"github.com/meshctl/meshctl/proxy/endpoints"
	"github.com/meshctl/meshctl/proxy/h1"
	"github.com/meshctl/meshctl/proxy/h1server"
	"github.com/meshctl/meshctl/proxy/h2server"
	"github.com/meshctl/meshctl/proxy/httpproxy"
	"github.com/meshctl/meshctl/proxy/meshtls"
	"github.com/meshctl/meshctl/proxy/metrics"
	"github.com/meshctl/meshctl/proxy/origdst"
	"github.com/meshctl/meshctl/proxy/resetguard"
	"github.com/meshctl/meshctl/proxy/tcpproxy"
)

// side is one direction's listener: it accepts connections, finds where they
// go, detects their protocol and hands them to the matching server.
type side struct {
	name string // metrics.Inbound or metrics.Outbound
	cfg  SideConfig
	p    *Proxy
	log  *slog.Logger

	ln       net.Listener
	fixed    *endpoints.Set // the explicit upstream, if any
	fixedDst netip.AddrPort // its address, when it is an IP
	httpLn   *chanListener
	http     *http.Server
	// h1 serves plaintext HTTP/1 connections from applications; what it
	// does not serve itself (upgrades, CONNECT, 100-continue, large heads)
	// it hands to http.
	h1 *h1server.Server
	// h2 serves HTTP/2: the connections of other proxies (ALPN
	// meshctl/h2) and applications' prior-knowledge h2c.
	h2 *h2server.Server

	// mu guards conns, the connections accepted and not yet closed.
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup // one per tracked connection
}

func newSide(p *Proxy, name string, cfg SideConfig) *side {
	s := &side{name: name, cfg: cfg, p: p, log: p.log.With("direction", name), conns: map[net.Conn]struct{}{}}
	if cfg.Upstream != "" {
		s.fixed = endpoints.Fixed(endpoints.Endpoint{Addr: cfg.Upstream, Identity: cfg.UpstreamIdentity})
		s.fixedDst, _ = netip.ParseAddrPort(cfg.Upstream)
		// An explicit upstream the endpoints table maps (a Service address)
		// is balanced over the table's endpoints, with its policy.
		if t, ok := p.cfg.Endpoints.(*endpoints.Table); ok && name == metrics.Outbound && t.Has(s.fixedDst) && cfg.UpstreamIdentity == (spiffeid.ID{}) {
			s.fixed = t.Resolve(context.Background(), s.fixedDst)
		}
	}
	return s
}

// listen binds the listener and prepares the servers.
func (s *side) listen() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("%s listener: %w", s.name, err)
	}
	s.ln = ln
	s.httpLn = newChanListener(ln.Addr())
	pc := s.p.cfg
	// net/http's server takes only the HTTP/1 connections h1 hands over.
	s.http = &http.Server{
		Handler:           s.p.http,
		ReadHeaderTimeout: pc.ReadHeaderTimeout,
		IdleTimeout:       pc.IdleTimeout,
		MaxHeaderBytes:    pc.MaxHeaderBytes,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ic, ok := c.(interface{ connInfo() *httpproxy.ConnInfo }); ok {
				return httpproxy.WithConnInfo(ctx, ic.connInfo())
			}
			return ctx
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.h2 = h2server.New(h2server.Config{
		Handler:              s.p.http,
		MaxConcurrentStreams: pc.MaxConcurrentStreams,
		MaxHeaderBytes:       pc.MaxHeaderBytes,
		IdleTimeout:          pc.IdleTimeout,
		CountError: func(errType string) {
			s.p.metrics.ProtocolError(s.name, "h2", errType)
		},
		Log: s.log,
	})
	s.h1 = &h1server.Server{
		Handler:           s.p.http,
		ReadHeaderTimeout: pc.ReadHeaderTimeout,
		IdleTimeout:       pc.IdleTimeout,
		ConnContext:       s.http.ConnContext,
		HandOff:           s.handOffHTTP1,
		Refused: func(c net.Conn, status int, reason h1.Reason) {
			c.(h1Conn).metrics.ProtocolError("http1", strconv.Itoa(status))
			s.log.Debug("HTTP/1 request refused", "client", c.RemoteAddr(), "status", status, "reason", reason)
		},
		// As serverConn's own reads decide (see CancelOnReset).
		ClientGone: func(err error) bool { return clientGone(err, pc.AllowHalfClose) },
		Log:        s.log,
	}
	return nil
}

// h1Conn is a client connection served by the HTTP/1 server: it lets the
// server wait for the next request on the socket itself, and counts what
// the server reads there.
type h1Conn struct{ *serverConn }

// SyscallConn returns the socket's raw connection.
func (c h1Conn) SyscallConn() (syscall.RawConn, error) {
	return c.serverConn.Conn.(*net.TCPConn).SyscallConn()
}

// CountRead counts bytes the server read from the socket directly.
func (c h1Conn) CountRead(n int) { c.read(n) }

// handOffHTTP1 gives net/http's server a connection at a request the
// HTTP/1 server does not serve, with the bytes read of it.
func (s *side) handOffHTTP1(c net.Conn, buffered []byte) {
	sc := c.(h1Conn).serverConn
	sc.replay = buffered // counted when the HTTP/1 server read them
	sc.info.ServerCancels.Store(false)
	if !s.httpLn.push(sc) {
		sc.Close() // shutting down
	}
}

// serve runs the accept loop and the HTTP/1 server until the listener closes.
func (s *side) serve() error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.httpLn) }()
	var tempDelay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				<-errc
				return nil
			}
			// Out of file descriptors and the like: back off, keep serving.
			tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "error", err, "retry_in", tempDelay)
			time.Sleep(tempDelay)
			continue
		}
		tempDelay = 0
		s.track(c)
		go s.handle(c.(*net.TCPConn))
	}
}

func (s *side) track(c net.Conn) {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
}

// release forgets a closed connection; it is called once per tracked connection.
func (s *side) release(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// closeAll closes every connection still open (the end of a drain).
func (s *side) closeAll() int {
	s.mu.Lock()
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	return len(conns)
}

// destination returns where a connection goes and the port it was meant for.
func (s *side) destination(c *net.TCPConn) (*endpoints.Set, uint16, error) {
	if s.fixed != nil {
		port := s.fixedDst.Port()
		if !s.fixedDst.IsValid() {
			_, p, _ := net.SplitHostPort(s.cfg.Upstream)
			n, _ := strconv.ParseUint(p, 10, 16)
			port = uint16(n)
		}
		return s.fixed, port, nil
	}
	dst, err := origdst.Get(c)
	if err != nil {
		return nil, 0, err
	}
	if s.name == metrics.Inbound {
		// To the address the client meant, which must be the pod's own IP,
		// never loopback: what the application listens for on 127.0.0.1
		// only stays private to the pod, even from a neighbour that sends
		// packets for 127.0.0.1 to the pod's MAC address.
		if local := s.p.cfg.LocalAddrs; len(local) > 0 && !slices.Contains(local, dst.Addr().Unmap()) {
			return nil, 0, fmt.Errorf("the connection was for %s, not one of the pod's addresses", dst)
		}
		return endpoints.Plain(dst.String()), dst.Port(), nil
	}
	return s.p.cfg.Endpoints.Resolve(context.Background(), dst), dst.Port(), nil
}

// handle serves one accepted connection.
func (s *side) handle(c *net.TCPConn) {
	sc := &serverConn{Conn: c, side: s}
	dst, port, err := s.destination(c)
	if err != nil {
		s.p.warn("connection refused: no destination", "direction", s.name, "client", c.RemoteAddr(), "error", err)
		s.finish(sc, metrics.ConnLabels{Direction: s.name})
		return
	}
	proto := detect.Opaque
	var peeked []byte
	if !s.p.opaque[port] && !dst.Opaque() {
		buf := peekBuffers.Get().(*[]byte)
		proto, peeked, err = detect.Detect(c, s.p.cfg.DetectTimeout, *buf)
		*buf = peeked
		sc.peekBuf, sc.peeked = buf, peeked
		if err != nil {
			s.log.Debug("detection failed", "client", c.RemoteAddr(), "error", err)
			s.finish(sc, metrics.ConnLabels{Direction: s.name})
			return
		}
	}
	if s.name == metrics.Inbound && proto == detect.TLS && s.p.cfg.Identity != nil {
		if protos, err := detect.ClientHelloALPN(peeked); err == nil && slices.ContainsFunc(protos, meshtls.IsMeshALPN) {
			s.serveMeshed(sc, dst, port)
			return
		}
	}
	labels := metrics.ConnLabels{Direction: s.name}
	info := &httpproxy.ConnInfo{Direction: s.name, Upstream: dst, Port: port}
	if s.name == metrics.Inbound {
		info.FromNode = s.p.fromNode(c.RemoteAddr())
	}
	if id := dst.Identity(); s.name == metrics.Outbound && id != (spiffeid.ID{}) {
		labels.TLS, labels.ServerID, info.ServerID = true, id.String(), id.String()
	}
	if s.name == metrics.Inbound && s.p.requireTLS[port] {
		// Plaintext gets in only as one of the kubelet's declared probes:
		// a bare connection on a TCP probe's port here, an HTTP request on
		// a probe's path per request.
		if proto != detect.HTTP1 && proto != detect.HTTP2 {
			if g := s.p.cfg.InboundPolicy; g == nil || !g.IsProbe(authz.Request{Port: port, FromNode: info.FromNode, TLS: proto == detect.TLS}) {
				s.p.metrics.TLSError(s.name, "plaintext_refused")
				s.finish(sc, labels)
				return
			}
		} else {
			info.Refuse = "this port accepts only mutual TLS from meshed clients"
		}
	}
	sc.open(labels, info)
	switch proto {
	case detect.HTTP1:
		sc.info.Hooks = sc
		sc.info.ServerCancels.Store(true)
		// What detection read is counted as read now, as the replay of it
		// through serverConn.Read counts it for net/http.
		buffered := append([]byte(nil), sc.peeked...)
		sc.releasePeek()
		sc.read(len(buffered))
		s.h1.ServeConn(h1Conn{sc}, buffered)
	case detect.HTTP2:
		s.serveH2(sc, sc.info)
	default:
		admitted, connectOnly := s.admit(port, "", info.FromNode, proto == detect.TLS)
		if !admitted {
			sc.releasePeek()
			sc.Close()
			return
		}
		if connectOnly {
			s.probeConnect(sc, dst)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.p.cfg.QueueTimeout)
		lease, err := dst.Acquire(ctx, endpoints.Queue{Timeout: s.p.cfg.QueueTimeout, Capacity: 1000}, "")
		cancel()
		if err != nil {
			s.p.warn("connection failed: no endpoint could take it; closing", "direction", s.name, "destination", dst.Name(), "client", c.RemoteAddr(), "error", err)
			sc.releasePeek()
			sc.Close()
			return
		}
		s.pipe(sc, c, s.p.http.Own(lease), peeked)
	}
}

// finish closes a connection that is not served, counting it.
func (s *side) finish(sc *serverConn, labels metrics.ConnLabels) {
	sc.releasePeek()
	sc.open(labels, &httpproxy.ConnInfo{Direction: s.name})
	sc.Close()
}

// serveMeshed terminates the mutual TLS of a connection from another proxy
// and serves what it carries: HTTP/2 requests, or one opaque stream, for the
// application on the connection's destination.
func (s *side) serveMeshed(sc *serverConn, dst *endpoints.Set, port uint16) {
	tc := tls.Server(sc, s.p.serverTLS)
	// A deadline rather than HandshakeContext: the latter closes the
	// connection from another goroutine, racing this one's bookkeeping.
	_ = sc.SetDeadline(time.Now().Add(s.p.cfg.TLSHandshakeTimeout))
	err := tc.Handshake()
	_ = sc.SetDeadline(time.Time{})
	if err != nil {
		reason := meshtls.Reason(err)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			reason = "handshake_timeout"
		}
		s.p.metrics.TLSError(s.name, reason)
		s.log.Debug("meshed handshake failed", "client", sc.RemoteAddr(), "reason", reason, "error", err)
		s.finish(sc, metrics.ConnLabels{Direction: s.name, TLS: true})
		return
	}
	cs := tc.ConnectionState()
	peer, err := meshtls.PeerID(cs)
	if err != nil { // verified in the handshake; cannot happen
		s.finish(sc, metrics.ConnLabels{Direction: s.name, TLS: true})
		return
	}
	info := &httpproxy.ConnInfo{Direction: s.name, Upstream: dst, ClientID: peer.String(), Port: port}
	sc.open(metrics.ConnLabels{Direction: s.name, TLS: true, ClientID: peer.String()}, info)
	var peeked []byte
	if cs.NegotiatedProtocol == meshtls.ALPNOpaque && !s.p.opaque[port] {
		// Only the server declares its ports opaque. A client that asks for
		// an opaque stream to any other port gets it looked at like a
		// plaintext connection: HTTP is served request by request, under
		// the inbound policy (an upgrade, e.g. a WebSocket, arrives this
		// way), and what is not HTTP is refused where the policy can only
		// be enforced per request.
		var proto detect.Protocol
		proto, peeked, err = detect.Detect(tc, s.p.cfg.DetectTimeout, nil)
		if err != nil {
			s.log.Debug("detection on a meshed opaque stream failed", "client", sc.RemoteAddr(), "error", err)
			tc.Close()
			return
		}
		if proto == detect.HTTP1 || proto == detect.HTTP2 {
			if proto == detect.HTTP1 {
				info.Hooks = sc
			}
			hc := &meshedConn{Plain: meshtls.Plain{Conn: tc}, sc: sc, peeked: peeked}
			if proto == detect.HTTP2 {
				s.serveH2(hc, info)
			} else if !s.httpLn.push(hc) {
				tc.Close()
			}
			return
		}
	}
	if cs.NegotiatedProtocol == meshtls.ALPNOpaque {
		defer sc.Close()
		if admitted, _ := s.admit(port, peer.String(), false, false); !admitted {
			tc.Close()
			return
		}
		ep, _ := dst.Pick() // inbound: the application, always one endpoint
		up, err := net.DialTimeout("tcp", ep.Addr, 5*time.Second)
		if err != nil {
			tc.Close()
			s.log.Debug("application unreachable", "upstream", ep.Addr, "error", err)
			return
		}
		if _, _, err := tcpproxy.Pipe(meshtls.Plain{Conn: tc}, up, peeked); err != nil {
			s.log.Debug("meshed opaque stream ended with an error", "error", err)
		}
		return
	}
	s.serveH2(&meshedConn{Plain: meshtls.Plain{Conn: tc}, sc: sc}, info)
}

// serveH2 serves an HTTP/2 connection (an application's h2c, or another
// proxy's over mutual TLS), guarded against rapid resets. This goroutine
// reads the connection until it ends.
func (s *side) serveH2(c net.Conn, info *httpproxy.ConnInfo) {
	if err := s.h2.ServeConn(httpproxy.WithConnInfo(context.Background(), info), s.watchResets(c, info)); err != nil {
		s.log.Debug("HTTP/2 connection ended", "client", c.RemoteAddr(), "error", err)
	}
}

// watchResets guards an HTTP/2 connection against rapid resets: a client
// that resets most of its streams before their answers start is sent GOAWAY
// (ENHANCE_YOUR_CALM) and cut off.
func (s *side) watchResets(c net.Conn, info *httpproxy.ConnInfo) net.Conn {
	rg := resetguard.New(c, resetguard.Config{OnTrip: func(streams, resets int) {
		info.Metrics.ProtocolError("h2", "rapid_reset")
		s.p.warn("HTTP/2 client reset most of its streams before their answers: GOAWAY (ENHANCE_YOUR_CALM)",
			"direction", s.name, "client", c.RemoteAddr(), "client_id", info.ClientID, "streams", streams, "resets", resets)
	}})
	return &resetWatchedConn{Conn: rg, info: info}
}

// resetWatchedConn is an HTTP/2 connection watched for rapid resets.
type resetWatchedConn struct {
	*resetguard.Conn
	info *httpproxy.ConnInfo
}

func (c *resetWatchedConn) connInfo() *httpproxy.ConnInfo { return c.info }

// admit asks the inbound policy whether a connection that is not HTTP
// (from clientID, "" when not meshed; tls when it is TLS that is not the
// mesh's) may reach port; outbound, always. On a port whose policy can only
// be enforced per HTTP request (rate limits, path rules) it is refused
// unless the server declared the port opaque: admitted once, it could carry
// any number of requests. The kubelet's TCP probes get in connect-only:
// connectOnly says to make the connection and carry nothing over it.
func (s *side) admit(port uint16, clientID string, fromNode, tls bool) (admitted, connectOnly bool) {
	g := s.p.cfg.InboundPolicy
	if s.name != metrics.Inbound || g == nil {
		return true, false
	}
	d := g.Admit(authz.Request{Port: port, ClientID: clientID, FromNode: fromNode, TLS: tls})
	if !d.Allowed() {
		s.log.Debug("connection refused by inbound policy", "port", port, "client_id", clientID, "rule", d.Rule)
		return false, false
	}
	if d.Rule != authz.ProbeRule && !s.p.opaque[port] && g.HTTPOnly(port) {
		s.p.metrics.InboundDecision(authz.Denied, "http-only")
		s.log.Debug("connection refused: not HTTP on a port whose policy needs HTTP", "port", port, "client_id", clientID)
		return false, false
	}
	return true, d.ConnectOnly
}

// probeConnect answers the kubelet's TCP probe: it connects to the
// application, as the probe would, and closes both without carrying a
// byte; the probe sees the application's port open or closed.
func (s *side) probeConnect(sc *serverConn, dst *endpoints.Set) {
	defer sc.Close()
	sc.releasePeek()
	ep, ok := dst.Pick()
	if !ok {
		return
	}
	up, err := net.DialTimeout("tcp", ep.Addr, 5*time.Second)
	if err != nil {
		// Reset rather than close: the probe fails as it would without the proxy.
		_ = sc.Conn.(*net.TCPConn).SetLinger(0)
		return
	}
	up.Close()
}

// pipe forwards an opaque connection (including TLS that is not ours) byte
// for byte; to a meshed endpoint, inside mutual TLS.
func (s *side) pipe(sc *serverConn, c *net.TCPConn, lease endpoints.Lease, peeked []byte) {
	defer sc.Close()
	defer sc.releasePeek()
	ep := lease.Endpoint
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	var up net.Conn
	var err error
	if ep.Meshed() {
		var tc *tls.Conn
		tc, err = s.p.mesh.Dial(ctx, ep.Addr, ep.Identity, meshtls.ALPNOpaque)
		if err != nil {
			sc.metrics.TLSError(meshtls.Reason(err))
		} else {
			up = meshtls.Plain{Conn: tc}
		}
	} else {
		if s.name == metrics.Outbound && s.p.cfg.ClusterNetworks.ContainsHostPort(ep.Addr) && !s.p.http.IsLocal(ep.Addr) {
			sc.metrics.Plaintext(httpproxy.PlaintextReason(sc.info.Upstream))
		}
		var d net.Dialer
		up, err = d.DialContext(ctx, "tcp", ep.Addr)
	}
	cancel()
	if err != nil {
		lease.ConnectFailed()
		s.p.warn("connection failed: the upstream could not be reached", "direction", s.name, "endpoint", ep.Addr,
			"identity", ep.Identity.String(), "error", err)
		return
	}
	// An opaque connection counts as pending on its endpoint while it lasts.
	lease.Responded(false)
	defer lease.Done(false)
	// Pipe the raw client socket so the kernel can splice; count afterwards.
	n, m, err := tcpproxy.Pipe(c, up, peeked)
	sc.metrics.Read(int(n))
	sc.metrics.Write(int(m))
	if err != nil {
		s.log.Debug("opaque connection ended with an error", "upstream", ep.Addr, "error", err)
	}
}
