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

func TestParsePortList(t *testing.T) {
	got, err := ParsePortList(" 25, 3306,,443 ")
	if err != nil {
		t.Fatal(err)
	}
	if s := FormatPortList(got); s != "25,3306,443" {
		t.Errorf("ParsePortList = %v (%q), want 25,3306,443", got, s)
	}
	if got, err := ParsePortList(""); err != nil || got == nil || len(got) != 0 {
		t.Errorf("ParsePortList(\"\") = %#v, %v; want an empty, non-nil list", got, err)
	}
	for _, bad := range []string{"0", "70000", "8000-8080", "x", "-1"} {
		if _, err := ParsePortList(bad); err == nil {
			t.Errorf("ParsePortList(%q) = nil error", bad)
		}
	}
	if _, err := ParsePortList("22,x"); err == nil || err.Error() != `port "x": want a number from 1 to 65535` {
		t.Errorf("ParsePortList(22,x) error = %v", err)
	}
}

func FuzzParsePortList(f *testing.F) {
	f.Add("25,3306")
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePortList(s)
		if err != nil {
			return
		}
		again, err := ParsePortList(FormatPortList(ports))
		if err != nil || len(again) != len(ports) {
			t.Fatalf("ParsePortList(FormatPortList(%v)) = %v, %v", ports, again, err)
		}
		for i := range ports {
			if ports[i] == 0 || again[i] != ports[i] {
				t.Fatalf("port %d of %q: %d then %d", i, s, ports[i], again[i])
			}
		}
	})
}
