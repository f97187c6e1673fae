package localcluster

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point  string
	fstype string
}

// readMountInfo parses /proc/self/mountinfo.
func readMountInfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	return parseMountInfo(bufio.NewScanner(f))
}

// parseMountInfo reads mountinfo lines: "36 35 98:0 /mnt1 /mnt2 rw,noatime
// master:1 - ext3 /dev/root rw,errors=continue"; field 5 is the mount point and
// the first field after "-" is the filesystem type.
func parseMountInfo(s *bufio.Scanner) ([]mountEntry, error) {
	var out []mountEntry
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 7 {
			continue
		}
		e := mountEntry{point: unescapeMount(fields[4])}
		for i := 6; i < len(fields)-1; i++ {
			if fields[i] == "-" {
				e.fstype = fields[i+1]
				break
			}
		}
		out = append(out, e)
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	return out, nil
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount at or below the given directories, deepest
// first, repeating while mount propagation brings more to light.
func unmountUnder(dirs ...string) (int, error) {
	count := 0
	for round := 0; round < 10; round++ {
		mounts, err := readMountInfo()
		if err != nil {
			return count, err
		}
		var targets []string
		for _, m := range mounts {
			for _, d := range dirs {
				if m.point == d || strings.HasPrefix(m.point, d+"/") {
					targets = append(targets, m.point)
					break
				}
			}
		}
		if len(targets) == 0 {
			return count, nil
		}
		sort.Slice(targets, func(i, j int) bool { return len(targets[i]) > len(targets[j]) })
		var errs []error
		for _, t := range targets {
			err := syscall.Unmount(t, syscall.MNT_DETACH)
			switch {
			case err == nil:
				count++
			case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENOENT):
				// Already gone with its parent.
			default:
				errs = append(errs, fmt.Errorf("unmount %s: %w", t, err))
			}
		}
		if len(errs) > 0 {
			return count, errors.Join(errs...)
		}
	}
	return count, fmt.Errorf("mounts under %v keep reappearing", dirs)
}
