//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// quietBusy is the share of CPU time above which the node is not quiet. An
// idle local cluster keeps its two cores 5 to 10 % busy; tearing down 200
// pods keeps them at 100 % for most of a minute after the API server has
// forgotten the pods.
const quietBusy = 0.35

// waitForQuietNode waits, at most max, until the local cluster's node (this
// machine) has spent two seconds in a row at most quietBusy busy, and
// returns how long that took. A latency measurement starts after it, so
// that it measures the code under test, not what an earlier test left the
// node doing. A node that does not quiet down is logged, not failed: the
// measurement's own bound then decides.
func waitForQuietNode(t *testing.T, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	quiet := 0
	var last float64
	prev, err := cpuTimes()
	if err != nil {
		t.Logf("cannot tell whether the node is quiet: %v", err)
		return 0
	}
	for time.Since(start) < max {
		time.Sleep(time.Second)
		now, err := cpuTimes()
		if err != nil {
			t.Logf("cannot tell whether the node is quiet: %v", err)
			return time.Since(start)
		}
		last = now.busySince(prev)
		prev = now
		if last > quietBusy {
			quiet = 0
			continue
		}
		if quiet++; quiet == 2 {
			if waited := time.Since(start); waited > 3*time.Second {
				t.Logf("the node was quiet (CPU %.0f %% busy) after %s", 100*last, waited.Round(time.Second))
			}
			return time.Since(start)
		}
	}
	t.Logf("the node was still %.0f %% busy after %s; measuring anyway", 100*last, max)
	return time.Since(start)
}

// cpuSample is the machine's CPU time so far, in clock ticks.
type cpuSample struct{ busy, total uint64 }

// busySince is the share of the CPU time since prev that was not idle.
func (s cpuSample) busySince(prev cpuSample) float64 {
	if s.total <= prev.total {
		return 0
	}
	return float64(s.busy-prev.busy) / float64(s.total-prev.total)
}

// cpuTimes reads the machine's CPU time from /proc/stat: user, nice,
// system, idle, iowait, irq, softirq and steal (guest time is already in
// user).
func cpuTimes() (cpuSample, error) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSample{}, err
	}
	line, _, _ := bytes.Cut(raw, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 9 || fields[0] != "cpu" {
		return cpuSample{}, fmt.Errorf("/proc/stat begins %q", line)
	}
	var s cpuSample
	for i, f := range fields[1:9] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuSample{}, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		s.total += v
		if i != 3 && i != 4 { // idle, iowait
			s.busy += v
		}
	}
	return s, nil
}
