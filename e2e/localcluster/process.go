package localcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procIdentity names one process across time: a PID alone may be reused by an
// unrelated process after ours died, the PID plus its start time may not.
type procIdentity struct {
	pid   int
	start uint64 // clock ticks since boot, field 22 of /proc/PID/stat
}

// startTime reads a live process's start time; ok is false when the process
// does not exist or is a zombie.
func startTime(pid int) (start uint64, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces and parentheses; fields after
	// the last ')' are fixed.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return 0, false
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	return start, err == nil
}

// alive reports whether the process is still the one that was started.
func (id procIdentity) alive() bool {
	start, ok := startTime(id.pid)
	return ok && start == id.start
}

// startComponent starts c detached from this process (its own session, its
// output appended to its log file) and records its identity in a PID file.
func startComponent(p paths, c component) (procIdentity, error) {
	if err := os.MkdirAll(p.logDir(), 0o755); err != nil {
		return procIdentity{}, fmt.Errorf("create log directory: %w", err)
	}
	if err := os.MkdirAll(p.pidDir(), 0o755); err != nil {
		return procIdentity{}, fmt.Errorf("create PID directory: %w", err)
	}
	logf, err := os.OpenFile(p.logFile(c.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return procIdentity{}, fmt.Errorf("open log of %s: %w", c.name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n==== %s starting %s %s\n", time.Now().UTC().Format(time.RFC3339), c.path, strings.Join(c.args, " "))
	cmd := exec.Command(c.path, c.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return procIdentity{}, fmt.Errorf("start %s: %w", c.name, err)
	}
	id := procIdentity{pid: cmd.Process.Pid}
	start, ok := startTime(id.pid)
	if !ok {
		_ = cmd.Wait()
		return procIdentity{}, fmt.Errorf("%s exited at once; see %s", c.name, p.logFile(c.name))
	}
	id.start = start
	// The component must outlive this tool: do not wait for it.
	if err := cmd.Process.Release(); err != nil {
		return id, fmt.Errorf("release %s: %w", c.name, err)
	}
	content := fmt.Sprintf("%d %d\n", id.pid, id.start)
	if err := os.WriteFile(p.pidFile(c.name), []byte(content), 0o644); err != nil {
		return id, fmt.Errorf("record PID of %s: %w", c.name, err)
	}
	return id, nil
}

// readPIDFile returns the identity recorded for a component.
func readPIDFile(path string) (procIdentity, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return procIdentity{}, err
	}
	var id procIdentity
	if _, err := fmt.Sscanf(string(data), "%d %d", &id.pid, &id.start); err != nil {
		return procIdentity{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return id, nil
}

// runningComponents returns the recorded components whose processes are still alive.
func runningComponents(p paths) map[string]procIdentity {
	out := map[string]procIdentity{}
	entries, _ := os.ReadDir(p.pidDir())
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".pid")
		if !ok {
			continue
		}
		id, err := readPIDFile(filepath.Join(p.pidDir(), e.Name()))
		if err == nil && id.alive() {
			out[name] = id
		}
	}
	return out
}

// stopProcess sends SIGTERM and waits up to grace for the process to exit,
// then sends SIGKILL. It reports whether it had to kill.
func stopProcess(id procIdentity, grace time.Duration) (killed bool, err error) {
	if !id.alive() {
		return false, nil
	}
	if err := syscall.Kill(id.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("signal %d: %w", id.pid, err)
	}
	if waitGone(id, grace) {
		return false, nil
	}
	if err := syscall.Kill(id.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return true, fmt.Errorf("kill %d: %w", id.pid, err)
	}
	if !waitGone(id, 10*time.Second) {
		return true, fmt.Errorf("process %d survived SIGKILL", id.pid)
	}
	return true, nil
}

// waitGone polls until the process has exited or the timeout passes.
func waitGone(id procIdentity, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for id.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
