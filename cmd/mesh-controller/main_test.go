package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

// TestKlogGoesThroughTheControllersLogger: client-go's klog lines come out
// as the controller's JSON lines on stderr.
func TestKlogGoesThroughTheControllersLogger(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	defer func() { os.Stderr = stderr }()
	cmd := &cobra.Command{Use: "run"}
	cmd.Flags().String("log-level", "info", "")
	cmd.Flags().String("log-format", "json", "")
	if err := routeKlog(cmd, nil); err != nil {
		t.Fatal(err)
	}
	klog.ErrorS(errors.New("lease expired"), "leader election lost")
	klog.Flush()
	w.Close()
	out, _ := io.ReadAll(r)
	line := strings.TrimSpace(string(out))
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("klog wrote %q, not one JSON line: %v", line, err)
	}
	if rec["msg"] != "leader election lost" || rec["level"] != "ERROR" || rec["err"] != "lease expired" {
		t.Errorf("klog's line = %v", rec)
	}
	if err := routeKlog(&cobra.Command{Use: "version"}, nil); err != nil {
		t.Errorf("a command without log flags: %v", err)
	}
}
