package portspec

import "testing"

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("22, 8000-8080,443")
	if err != nil {
		t.Fatal(err)
	}
	want := []PortRange{{22, 22}, {8000, 8080}, {443, 443}}
	if len(got) != len(want) {
		t.Fatalf("ParsePorts = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("ParsePorts[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"0", "70000", "9-3", "x", "1-"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) = nil error", bad)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	f.Add("22,8000-8080")
	f.Fuzz(func(t *testing.T, s string) {
		ranges, err := ParsePorts(s)
		if err != nil {
			return
		}
		for _, r := range ranges {
			if r.From == 0 || r.To < r.From {
				t.Fatalf("ParsePorts(%q) gave invalid range %v", s, r)
			}
		}
	})
}
