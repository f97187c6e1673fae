// Package logging makes the binaries' loggers from their --log-level and
// --log-format flags.
package logging

import (
	"fmt"
	"log/slog"
	"os"
)

// New returns a logger writing to stderr at level ("debug", "info", "warn",
// "error") in format ("json" or "text").
func New(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want json or text", format)
}
