package api

import (
	"encoding/json"
	"testing"
)

// TestMirrorShareOnTheWire: the controller sends a mirror's share both as
// per_million and as the legacy percent (rounded, at least 1 when the
// share is above 0, so that a proxy of the previous release never reads a
// small share as unset, every request); a proxy reads per_million first,
// and percent × 10,000 only when per_million is unset.
func TestMirrorShareOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		perMillion, percent int
	}{
		{0, 0}, {1, 1}, {4_999, 1}, {5_000, 1}, {14_999, 1}, {15_000, 2}, {333_333, 33}, {666_667, 67}, {PerMillionAll, 100},
	} {
		if got := LegacyPercent(tc.perMillion); got != tc.percent {
			t.Errorf("LegacyPercent(%d) = %d, want %d", tc.perMillion, got, tc.percent)
		}
	}
	for _, tc := range []struct {
		wire  string
		share int
	}{
		{`{"per_million": 5000, "percent": 1}`, 5_000},
		{`{"percent": 3}`, 30_000},
		{`{"percent": 250}`, PerMillionAll},
		{`{}`, 0}, // every request
	} {
		var m Mirror
		if err := json.Unmarshal([]byte(tc.wire), &m); err != nil {
			t.Fatal(err)
		}
		if got := m.Share(); got != tc.share {
			t.Errorf("%s: share %d, want %d", tc.wire, got, tc.share)
		}
	}
	js, err := json.Marshal(Mirror{PerMillion: 5_000, Percent: LegacyPercent(5_000)})
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		Percent int `json:"percent"`
	}
	if err := json.Unmarshal(js, &old); err != nil || old.Percent != 1 {
		t.Errorf("an old proxy reads percent %d (%v) from %s, want 1", old.Percent, err, js)
	}
}
