// Package manifests reads Kubernetes manifests the way kubectl does (files,
// directories, standard input, URLs; multi-document YAML and JSON) and
// rewrites the pod templates in them for `meshctl inject` and `meshctl
// uninject`, leaving everything else as it was, in order.
package manifests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// maxInput bounds one input (a file, standard input or a download).
const maxInput = 64 << 20

// Input is one source's bytes.
type Input struct {
	// Name is where it came from (a path, "-" or a URL).
	Name string
	// Data is its content.
	Data []byte
}

// Read reads every source in order: "-" is stdin, http(s):// a URL, a
// directory every .yaml, .yml and .json file under it (sorted, recursively),
// anything else a file.
func Read(ctx context.Context, sources []string, stdin io.Reader) ([]Input, error) {
	if len(sources) == 0 {
		return nil, errors.New("no input: give files, directories, URLs, or - for standard input")
	}
	var out []Input
	for _, src := range sources {
		switch {
		case src == "-":
			data, err := readLimited(stdin)
			if err != nil {
				return nil, fmt.Errorf("read standard input: %w", err)
			}
			out = append(out, Input{Name: "-", Data: data})
		case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
			data, err := download(ctx, src)
			if err != nil {
				return nil, err
			}
			out = append(out, Input{Name: src, Data: data})
		default:
			in, err := readPath(src)
			if err != nil {
				return nil, err
			}
			out = append(out, in...)
		}
	}
	return out, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("more than %d MiB", maxInput>>20)
	}
	return data, nil
}

func readPath(path string) ([]Input, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, errors.Unwrap(err))
	}
	if !info.IsDir() {
		data, err := readFile(path)
		if err != nil {
			return nil, err
		}
		return []Input{{Name: path, Data: data}}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && slices.Contains([]string{".yaml", ".yml", ".json"}, strings.ToLower(filepath.Ext(p))) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", path, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("directory %s holds no .yaml, .yml or .json file", path)
	}
	slices.Sort(files)
	var out []Input
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, Input{Name: f, Data: data})
	}
	return out, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, errors.Unwrap(err))
	}
	defer f.Close()
	data, err := readLimited(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

func download(ctx context.Context, raw string) ([]byte, error) {
	if _, err := url.Parse(raw); err != nil {
		return nil, fmt.Errorf("URL %q: %w", raw, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %w", raw, err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", raw, err)
	}
	defer res.Body.Close()
	if res.StatusCode/100 != 2 {
		return nil, fmt.Errorf("download %s: the server answered %s", raw, res.Status)
	}
	data, err := readLimited(res.Body)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", raw, err)
	}
	return data, nil
}
