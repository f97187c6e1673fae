package repocheck

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// MaxSize is the largest tracked file allowed without being listed.
const MaxSize = 1 << 20

// Problem is one tracked file that should not be.
type Problem struct {
	// Path relative to the repository's root.
	Path string
	// Why it is refused.
	Why string
}

func (p Problem) String() string { return p.Path + ": " + p.Why }

// Check lists the problems among the files git tracks in the repository
// at root. allowed names files (paths from the root) that may be large or
// binary: real fixtures, on purpose.
func Check(root string, allowed []string) ([]Problem, error) {
	out, err := exec.Command("git", "-C", root, "ls-files", "-s", "-z").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s: %w", root, err)
	}
	var problems []Problem
	for _, entry := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		// "<mode> <object> <stage>\t<path>"
		meta, path, ok := strings.Cut(entry, "\t")
		if !ok || slices.Contains(allowed, path) {
			continue
		}
		mode, _, _ := strings.Cut(meta, " ")
		if mode == "120000" || mode == "160000" { // symlink, submodule
			continue
		}
		why, err := inspect(filepath.Join(root, path), mode == "100755")
		if err != nil {
			return nil, err
		}
		if why != "" {
			problems = append(problems, Problem{Path: path, Why: why})
		}
	}
	return problems, nil
}

// magics are the first bytes of compiled executables and objects.
var magics = []struct {
	prefix []byte
	what   string
}{
	{[]byte("\x7fELF"), "an ELF executable or object"},
	{[]byte{0xfe, 0xed, 0xfa, 0xce}, "a Mach-O executable"},
	{[]byte{0xfe, 0xed, 0xfa, 0xcf}, "a Mach-O executable"},
	{[]byte{0xcf, 0xfa, 0xed, 0xfe}, "a Mach-O executable"},
	{[]byte{0xce, 0xfa, 0xed, 0xfe}, "a Mach-O executable"},
	{[]byte{0xca, 0xfe, 0xba, 0xbe}, "a Mach-O universal binary or Java class"},
	{[]byte("!<arch>\n"), "an ar archive (a compiled library)"},
	{[]byte("\x00asm"), "a WebAssembly module"},
	{[]byte{0x1f, 0x8b}, "a gzip archive"},
	{[]byte("PK\x03\x04"), "a zip archive"},
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, "an xz archive"},
	{[]byte("BZh"), "a bzip2 archive"},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "a zstd archive"},
	{[]byte("version https://git-lfs.github.com/spec/"), "a Git LFS pointer (the file itself lives outside git)"},
}

// inspect says why a file may not be tracked ("" when it may).
func inspect(path string, executable bool) (string, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return "", nil // deleted in the work tree: git will say so
	}
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", path, err)
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	head = head[:n]
	for _, m := range magics {
		if bytes.HasPrefix(head, m.prefix) {
			return m.what + ": a build output or an archive, not a source", nil
		}
	}
	// "MZ" also starts text; a PE executable has NUL bytes in its header.
	if bytes.HasPrefix(head, []byte("MZ")) && bytes.IndexByte(head, 0) >= 0 {
		return "a Windows (PE) executable: a build output, not a source", nil
	}
	if executable && !bytes.HasPrefix(head, []byte("#!")) {
		return "executable but not a script (no #! line)", nil
	}
	if st.Size() > MaxSize {
		return fmt.Sprintf("%d bytes, over the %d-byte limit (allow it by name if it is a real fixture)", st.Size(), MaxSize), nil
	}
	return "", nil
}
