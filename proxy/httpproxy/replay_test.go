package httpproxy

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestReplayBodySendsTheSameBytesEachTry(t *testing.T) {
	body := strings.Repeat("0123456789", 1000)
	r := newReplayBody(strings.NewReader(body))
	// The first try reads part of the body, then the upstream answers.
	first := r.try()
	buf := make([]byte, 3000)
	if _, err := io.ReadFull(first, buf); err != nil {
		t.Fatal(err)
	}
	first.Close()
	if !first.released() || !r.replayable() {
		t.Fatal("a small body is not replayable")
	}
	// The second try gets all of it: what was kept, then the rest.
	second, err := io.ReadAll(r.try())
	if err != nil || string(second) != body {
		t.Fatalf("second try read %d bytes (%v), want the %d of the body", len(second), err, len(body))
	}
	third, _ := io.ReadAll(r.try())
	if string(third) != body {
		t.Fatal("the third try's body differs")
	}
}

func TestReplayBodyGivesUpBeyondItsLimit(t *testing.T) {
	body := bytes.Repeat([]byte("x"), MaxReplayBytes+1)
	r := newReplayBody(bytes.NewReader(body))
	got, err := io.ReadAll(r.try())
	if err != nil || len(got) != len(body) {
		t.Fatalf("the first try read %d bytes (%v)", len(got), err)
	}
	if r.replayable() {
		t.Fatal("a body past the limit is replayable")
	}
	if _, err := r.try().Read(make([]byte, 10)); err != errNotReplayable {
		t.Errorf("reading it again: %v, want errNotReplayable", err)
	}
}
