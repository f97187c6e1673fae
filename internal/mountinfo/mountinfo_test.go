package mountinfo

import (
	"strings"
	"testing"
)

func TestParseReadsPointsAndTypes(t *testing.T) {
	in := `36 35 98:0 / /var/lib/meshctl-cluster/kubelet/pods/x/volumes/kubernetes.io~projected/kube\040api rw,relatime shared:1 - tmpfs tmpfs rw
37 35 0:31 / /sys/fs/cgroup/pids rw,nosuid master:3 - cgroup cgroup rw,pids
38 35 0:40 / /run/meshctl-cluster/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw,lowerdir=/a
`
	got, err := Parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{
		{"/var/lib/meshctl-cluster/kubelet/pods/x/volumes/kubernetes.io~projected/kube api", "tmpfs"},
		{"/sys/fs/cgroup/pids", "cgroup"},
		{"/run/meshctl-cluster/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs", "overlay"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(`36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`)
	f.Add(`1 2 3 / /a\040b\ rw - tmpfs x y`)
	f.Fuzz(func(t *testing.T, s string) {
		if _, err := Parse(strings.NewReader(s)); err != nil && !strings.Contains(err.Error(), "token too long") {
			t.Fatal(err)
		}
	})
}
