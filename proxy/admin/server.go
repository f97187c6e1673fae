package admin

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/meshctl/meshctl/proxy/meshtls"
)

// Server serves the admin endpoints on one listener, to plaintext and to
// mutual-TLS clients alike (see the package comment).
type Server struct {
	srv *http.Server
	tls *tls.Config
}

// NewServer returns a server for cfg's endpoints. With cfg.Identity, TLS
// clients are served with the proxy's certificate and must present one that
// chains to the trust roots; without it, they are turned away.
func NewServer(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{srv: &http.Server{
		Handler:           Handler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ConnContext:       withConn,
		ErrorLog:          slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}}
	if cfg.Identity != nil {
		s.tls = meshtls.AdminServerConfig(cfg.Identity)
	}
	return s
}

// Serve accepts on ln until Shutdown (then it returns http.ErrServerClosed).
func (s *Server) Serve(ln net.Listener) error {
	return s.srv.Serve(&listener{Listener: ln, tls: s.tls})
}

// Shutdown stops accepting and waits, up to ctx, for requests in flight to
// finish, then closes what is left (a /tap stream never finishes by itself).
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return err
}
