//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The e2e report: figures the suite measures (latencies, durations, memory)
// that are measurements of this machine rather than behaviour, written as
// JSON at the end of the run. The docs quote them with the report's date;
// the tests assert only bounds a real regression would cross.
var report = struct {
	sync.Mutex
	figures map[string]figure
	tests   map[string]*testing.T // who measured each figure, asked at the end whether it failed
}{figures: map[string]figure{}, tests: map[string]*testing.T{}}

// figure is one measurement in the e2e report.
type figure struct {
	Test  string  `json:"test"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Bound is what the test asserts (e.g. "<= 5 s"), "" when it only reports.
	Bound string `json:"bound,omitempty"`
	// Date and Commit say when and on what the figure was measured: a run of
	// a few tests keeps the other figures of the file from earlier runs.
	Date   string `json:"date"`
	Commit string `json:"commit"`
	// Failed says the test that measured it failed: the figure is kept for
	// the post-mortem, never to be quoted.
	Failed bool `json:"failed,omitempty"`
}

// reportDoc is the report file.
type reportDoc struct {
	Machine string `json:"machine"`
	Figures []struct {
		Name string `json:"name"`
		figure
	} `json:"figures"`
}

// measure records a figure of this run under name (a stable key such as
// "resilience.ejection_s"); bound says what the test asserts of it.
func measure(t *testing.T, name string, value float64, unit, bound string) {
	t.Helper()
	report.Lock()
	defer report.Unlock()
	report.tests[name] = t
	report.figures[name] = figure{Test: t.Name(), Value: value, Unit: unit, Bound: bound, Date: time.Now().UTC().Format(time.DateOnly)}
	t.Logf("report: %s = %.4g %s (%s)", name, value, unit, orNone(bound))
}

func orNone(bound string) string {
	if bound == "" {
		return "reported only"
	}
	return "asserted " + bound
}

// reportFile is where the suite writes its report: $E2E_REPORT, or
// e2e/reports/e2e-report.json, which is committed like the conformance
// suite's reports so that the docs can quote it.
func reportFile(repo string) string {
	if p := os.Getenv("E2E_REPORT"); p != "" {
		return p
	}
	return filepath.Join(repo, "e2e", "reports", "e2e-report.json")
}

// writeReport merges the figures measured in this run into the report file
// (a figure measured again replaces the old one), each with its date and
// commit, so that a figure quoted elsewhere can be traced.
func writeReport(repo string) error {
	report.Lock()
	defer report.Unlock()
	if len(report.figures) == 0 {
		return nil
	}
	path := reportFile(repo)
	all := map[string]figure{}
	var old reportDoc
	if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &old) == nil {
		for _, f := range old.Figures {
			all[f.Name] = f.figure
		}
	}
	commit, _ := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output()
	for n, f := range report.figures {
		f.Commit = strings.TrimSpace(string(commit))
		f.Failed = report.tests[n].Failed()
		all[n] = f
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	doc := reportDoc{Machine: fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())}
	doc.Figures = make([]struct {
		Name string `json:"name"`
		figure
	}, len(names))
	for i, n := range names {
		doc.Figures[i].Name, doc.Figures[i].figure = n, all[n]
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // bounds read "<= 5", not "\u003c= 5"
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("e2e report: %w", err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("e2e report: %w", err)
	}
	fmt.Fprintf(os.Stderr, "e2e: %d figures measured, written to %s\n", len(report.figures), path)
	return nil
}
