package localcluster

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/meshctl/meshctl/internal/mountinfo"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// trackingCgroupName is the cgroup every process of the cluster starts in: the
// tool joins it before starting anything, so the daemons, containerd's shims
// and anything they spawn stay in it (runc moves containers to the kubelet's
// "kubepods" cgroups, which Down empties too). Down kills what is left in
// both, by PID, so that nothing survives a crashed session.
const trackingCgroupName = "meshctl-cluster"

// kubeletCgroupName is the parent of the pod cgroups the kubelet makes with the cgroupfs driver.
const kubeletCgroupName = "kubepods"

// cgroupMounts returns the mount points of every cgroup hierarchy (v1 and v2).
func cgroupMounts() ([]string, error) {
	mounts, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			out = append(out, m.Point)
		}
	}
	return out, nil
}

// joinTrackingCgroup moves this process into the tracking cgroup, creating it.
// It uses the pids hierarchy on cgroup v1 and the unified one on cgroup v2.
func joinTrackingCgroup() error {
	var dir string
	switch {
	case fileExists("/sys/fs/cgroup/pids/cgroup.procs"):
		dir = filepath.Join("/sys/fs/cgroup/pids", trackingCgroupName)
	case fileExists("/sys/fs/cgroup/cgroup.controllers"):
		dir = filepath.Join("/sys/fs/cgroup", trackingCgroupName)
	default:
		return errors.New("no pids cgroup hierarchy found (neither /sys/fs/cgroup/pids nor cgroup v2)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("join cgroup %s: %w", dir, err)
	}
	return nil
}

// clusterCgroups returns the tracking and kubelet cgroup directories that
// exist, in every hierarchy.
func clusterCgroups() ([]string, error) {
	mounts, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range mounts {
		for _, name := range []string{trackingCgroupName, kubeletCgroupName} {
			if d := filepath.Join(m, name); fileExists(d) {
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// cgroupPIDs lists the processes in the cgroup trees rooted at roots.
func cgroupPIDs(roots []string) []int {
	seen := map[int]bool{}
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
				return nil
			}
			f, err := os.Open(path)
			if err != nil {
				return nil
			}
			defer f.Close()
			s := bufio.NewScanner(f)
			for s.Scan() {
				if pid, err := strconv.Atoi(strings.TrimSpace(s.Text())); err == nil && pid > 0 {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	pids := make([]int, 0, len(seen))
	for pid := range seen {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// killCgroups kills every process in the cluster's cgroups until they are
// empty, then removes the cgroups. It returns how many processes it killed.
func killCgroups(timeout time.Duration) (int, error) {
	roots, err := clusterCgroups()
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	killed := map[int]bool{}
	deadline := time.Now().Add(timeout)
	for {
		pids := cgroupPIDs(roots)
		var others []int
		for _, pid := range pids {
			if pid != self {
				others = append(others, pid)
			}
		}
		if len(others) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return len(killed), fmt.Errorf("processes %v are still in the cluster's cgroups after %s", others, timeout)
		}
		for _, pid := range others {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				killed[pid] = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var errs []error
	for _, root := range roots {
		if err := removeCgroupTree(root); err != nil {
			errs = append(errs, err)
		}
	}
	return len(killed), errors.Join(errs...)
}

// removeCgroupTree removes a cgroup directory and its children, deepest first.
// Cgroup directories are removed with rmdir even though they hold files.
func removeCgroupTree(root string) error {
	var dirs []string
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("remove cgroup %s: %w", d, err)
		}
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Crash kills every process of the cluster at once with SIGKILL, as a power
// cut or a killed session would, leaving all its state behind. Tests use it
// to show that Up recovers.
func Crash() (int, error) {
	roots, err := clusterCgroups()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pid := range cgroupPIDs(roots) {
		if pid != os.Getpid() && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n, nil
}
