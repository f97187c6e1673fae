//go:build e2e

package e2e

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"slices"
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
	procs := processCPU()
	defer func() {
		if waited := time.Since(start); waited > 10*time.Second {
			t.Logf("what kept the node busy for %s: %s", waited.Round(time.Second), busiestSince(procs, 5))
		}
	}()
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

// busySince is the share of the CPU time since prev that was not idle. A
// counter that did not move forward says nothing, and nothing is not
// "quiet": it counts as fully busy.
func (s cpuSample) busySince(prev cpuSample) float64 {
	if s.total <= prev.total || s.busy < prev.busy {
		return 1
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

// processCPU reads every process's CPU time so far (user and system, in
// clock ticks) from /proc, by "pid name".
func processCPU() map[string]uint64 {
	out := map[string]uint64{}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // gone since the listing
		}
		// pid (comm) state ppid ... utime is field 14, stime 15; comm may
		// hold spaces and parentheses, so count from its closing one.
		lp, rp := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
		if lp < 0 || rp < lp {
			continue
		}
		fields := strings.Fields(string(raw[rp+1:]))
		if len(fields) < 13 {
			continue
		}
		utime, _ := strconv.ParseUint(fields[11], 10, 64)
		stime, _ := strconv.ParseUint(fields[12], 10, 64)
		out[d.Name()+" "+string(raw[lp+1:rp])] = utime + stime
	}
	return out
}

// busiestSince names the n processes that used the most CPU since the
// sample before, with the seconds each used (100 ticks a second).
func busiestSince(before map[string]uint64, n int) string {
	type use struct {
		name  string
		ticks uint64
	}
	var uses []use
	for name, ticks := range processCPU() {
		if ticks > before[name] {
			uses = append(uses, use{name, ticks - before[name]})
		}
	}
	slices.SortFunc(uses, func(a, b use) int { return cmp.Compare(b.ticks, a.ticks) })
	var parts []string
	for _, u := range uses[:min(n, len(uses))] {
		parts = append(parts, fmt.Sprintf("%s %.1f s", u.name, float64(u.ticks)/100))
	}
	return strings.Join(parts, ", ")
}
