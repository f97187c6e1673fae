package repocheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// allowed are this repository's tracked files that may be large or
// binary, each for a reason. None today.
var allowed = []string{}

// TestThisRepositoryTracksNoBuildOutput is CI's check: no tracked file of
// this repository is a compiled executable or over MaxSize.
func TestThisRepositoryTracksNoBuildOutput(t *testing.T) {
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		// Never a silent skip: CI and developers run the tests in a clone.
		t.Fatalf("this check needs the repository's git work tree and git: %v", err)
	}
	problems, err := Check(strings.TrimSpace(string(root)), allowed)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("tracked: %s (remove it with git rm --cached, and ignore it in .gitignore)", p)
	}
}

// TestCheckFindsBinariesAndLargeFiles commits each kind of file to a
// scratch repository and checks what Check says about it.
func TestCheckFindsBinariesAndLargeFiles(t *testing.T) {
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.email=t@example.org", "-c", "user.name=t"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	files := map[string]struct {
		content []byte
		mode    os.FileMode
		bad     bool
	}{
		"main.go":              {[]byte("package main\n"), 0o644, false},
		"run.sh":               {[]byte("#!/bin/sh\necho hi\n"), 0o755, false},
		"testapp":              {append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...), 0o755, true},
		"elf-object":           {append([]byte("\x7fELF\x02\x01\x01"), make([]byte, 100)...), 0o644, true}, // not executable: refused for being ELF
		"lib.a":                {[]byte("!<arch>\nstuff"), 0o644, true},
		"tool.exe":             {[]byte("MZ\x90\x00"), 0o644, true},
		"MZ-notes.txt":         {[]byte("MZ is where the notes start\n"), 0o644, false},
		"app.wasm":             {[]byte("\x00asm\x01\x00\x00\x00"), 0o644, true},
		"bin.gz":               {[]byte{0x1f, 0x8b, 8, 0, 0, 0}, 0o644, true},
		"bin.zip":              {[]byte("PK\x03\x04\x14\x00"), 0o644, true},
		"bin.xz":               {[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0}, 0o644, true},
		"lfs-pointer":          {[]byte("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 19000000\n"), 0o644, true},
		"macho":                {[]byte{0xcf, 0xfa, 0xed, 0xfe, 7, 0, 0, 1}, 0o644, true},
		"noscript":             {[]byte("echo no shebang\n"), 0o755, true},
		"big.json":             {[]byte(strings.Repeat("x", MaxSize+1)), 0o644, true},
		"exactly-the-limit":    {[]byte(strings.Repeat("x", MaxSize)), 0o644, false},
		"allowed/fixture.bin":  {append([]byte("\x7fELF"), make([]byte, MaxSize)...), 0o644, false},
		"empty":                {nil, 0o644, false},
		"empty-but-executable": {nil, 0o755, true},
	}
	for name, f := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f.content, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	git("add", ".")
	git("commit", "-q", "-m", "files")
	problems, err := Check(dir, []string{"allowed/fixture.bin"})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, p := range problems {
		found[p.Path] = p.Why
	}
	for name, f := range files {
		if why, bad := found[name]; bad != f.bad {
			t.Errorf("%s: refused=%v (%q), want %v", name, bad, why, f.bad)
		}
	}
}
