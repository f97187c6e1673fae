package certs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"
)

// Files is a Source backed by PEM files, re-read when their contents change.
type Files struct {
	certPath, keyPath, rootsPath string
	interval                     time.Duration
	log                          *slog.Logger

	current atomic.Pointer[Bundle]
	// raw is the file contents the current bundle came from; only Run touches it.
	raw [3][]byte
}

// FilesConfig configures Files.
type FilesConfig struct {
	Cert, Key, Roots string // paths, all required
	// Interval is how often the files are checked. Default: 2s.
	Interval time.Duration
	// Log receives reloads and rejected files. Default: discard.
	Log *slog.Logger
}

// NewFiles loads the files; they must hold a valid bundle.
func NewFiles(cfg FilesConfig) (*Files, error) {
	if cfg.Cert == "" || cfg.Key == "" || cfg.Roots == "" {
		return nil, fmt.Errorf("certificate, key and trust roots files are all required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	f := &Files{certPath: cfg.Cert, keyPath: cfg.Key, rootsPath: cfg.Roots, interval: cfg.Interval, log: cfg.Log}
	if _, err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Bundle returns the current bundle.
func (f *Files) Bundle() *Bundle { return f.current.Load() }

// Run re-reads the files every interval until ctx ends. A change that does
// not make a valid bundle is logged and ignored: the last good one stays.
func (f *Files) Run(ctx context.Context) error {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			changed, err := f.reload()
			if err != nil {
				f.log.Warn("certificate files changed but are not usable; keeping the current ones", "error", err)
				continue
			}
			if changed {
				b := f.Bundle()
				f.log.Info("certificate reloaded", "spiffe_id", b.ID.String(), "not_after", b.Leaf().NotAfter, "roots", len(b.RootCerts))
				if err := b.Verify(); err != nil {
					f.log.Warn("the new certificate does not chain to the trust roots", "error", err)
				}
			}
		}
	}
}

// reload reads the files and swaps in a new bundle when they changed.
func (f *Files) reload() (bool, error) {
	var raw [3][]byte
	for i, p := range []string{f.certPath, f.keyPath, f.rootsPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", p, err)
		}
		raw[i] = b
	}
	if f.current.Load() != nil && bytes.Equal(raw[0], f.raw[0]) && bytes.Equal(raw[1], f.raw[1]) && bytes.Equal(raw[2], f.raw[2]) {
		return false, nil
	}
	b, err := NewBundle(raw[0], raw[1], raw[2])
	if err != nil {
		return false, err
	}
	f.raw = raw
	f.current.Store(b)
	return true, nil
}
