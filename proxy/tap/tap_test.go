package tap

import (
	"testing"

	"github.com/meshctl/meshctl/internal/api"
)

// TestFilterMatchesIdentitiesExactly: a ServiceAccount's path matches its
// identity in any trust domain and no other (not web-v2's: a prefix would),
// a namespace's path (ending in "/") every identity of that namespace, and
// the direction its own; a request whose start is refused shows no event.
func TestFilterMatchesIdentitiesExactly(t *testing.T) {
	ev := func(dir, client, server string) api.TapEvent {
		return api.TapEvent{Type: api.TapStart, Direction: dir, ClientID: client, ServerID: server, Path: "/"}
	}
	withAuthority := func(a string) api.TapEvent {
		return api.TapEvent{Type: api.TapStart, Direction: "outbound", Authority: a, Path: "/"}
	}
	web, webV2, other := "spiffe://td/ns/demo/sa/web", "spiffe://td/ns/demo/sa/web-v2", "spiffe://td/ns/demo2/sa/web"
	for _, tc := range []struct {
		f   Filter
		e   api.TapEvent
		hit bool
	}{
		{Filter{ServerIDPath: "/ns/demo/sa/web"}, ev("outbound", "", web), true},
		{Filter{ServerIDPath: "/ns/demo/sa/web"}, ev("outbound", "", "spiffe://other.td/ns/demo/sa/web"), true},
		{Filter{ServerIDPath: "/ns/demo/sa/web"}, ev("outbound", "", webV2), false},
		{Filter{ServerIDPath: "/ns/demo/sa/web"}, ev("outbound", "", other), false},
		{Filter{ServerIDPath: "/ns/demo/sa/web"}, ev("outbound", "", ""), false},
		{Filter{ServerIDPath: "/ns/demo/"}, ev("outbound", "", webV2), true},
		{Filter{ServerIDPath: "/ns/demo/"}, ev("outbound", "", other), false},
		{Filter{ClientIDPath: "/ns/demo/sa/web"}, ev("inbound", web, ""), true},
		{Filter{ClientIDPath: "/ns/demo/sa/web"}, ev("inbound", "", ""), false},
		{Filter{Direction: "inbound"}, ev("outbound", "", web), false},
		{Filter{Direction: "outbound"}, ev("outbound", "", web), true},
		{Filter{Authority: "web"}, withAuthority("web:80"), true},
		{Filter{Authority: "WEB:80"}, withAuthority("web:80"), true},
		{Filter{Authority: "web:80"}, withAuthority("web:8080"), false},
		{Filter{Authority: "web"}, withAuthority("web-v2:80"), false},
		{Filter{Authority: "web"}, withAuthority("web"), true},
	} {
		if got := tc.f.match(&tc.e); got != tc.hit {
			t.Errorf("%+v on %s %s→%s: %v, want %v", tc.f, tc.e.Direction, tc.e.ClientID, tc.e.ServerID, got, tc.hit)
		}
	}

	h := NewHub()
	tp := h.Subscribe(Filter{ServerIDPath: "/ns/demo/sa/web"}, 1000)
	for _, e := range []api.TapEvent{
		{Type: api.TapStart, ID: 1, Direction: "outbound", ServerID: webV2},
		{Type: api.TapStart, ID: 2, Direction: "outbound", ServerID: web},
		{Type: api.TapEnd, ID: 1}, {Type: api.TapEnd, ID: 2},
	} {
		h.Publish(e)
	}
	var got []uint64
	for len(tp.Events()) > 0 {
		got = append(got, (<-tp.Events()).ID)
	}
	if len(got) != 2 || got[0] != 2 || got[1] != 2 {
		t.Errorf("events of requests %v, want request 2's start and end only", got)
	}
}
