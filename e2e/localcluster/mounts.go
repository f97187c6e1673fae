package localcluster

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"syscall"

	"github.com/meshctl/meshctl/internal/mountinfo"
)

// unmountUnder detaches every mount at or below the given directories, deepest
// first, repeating while mount propagation brings more to light.
func unmountUnder(dirs ...string) (int, error) {
	count := 0
	for round := 0; round < 10; round++ {
		mounts, err := mountinfo.Read()
		if err != nil {
			return count, err
		}
		var targets []string
		for _, m := range mounts {
			for _, d := range dirs {
				if m.Point == d || strings.HasPrefix(m.Point, d+"/") {
					targets = append(targets, m.Point)
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
