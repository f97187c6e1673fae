package main

import (
	"strings"
	"testing"
)

func TestParseDefaultGateway(t *testing.T) {
	route := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0000F40A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	00000000	0100F40A	0003	0	0	0	00000000	0	0	0
`
	got, err := parseDefaultGateway(strings.NewReader(route))
	if err != nil || got.String() != "10.244.0.1" {
		t.Errorf("gateway = %v, %v; want 10.244.0.1", got, err)
	}
	if _, err := parseDefaultGateway(strings.NewReader("Iface\tDestination\tGateway\n")); err == nil {
		t.Error("no default route: want an error")
	}
}
