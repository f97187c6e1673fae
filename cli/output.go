package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/meshctl/meshctl/cli/tapstream"
	"github.com/meshctl/meshctl/internal/command"
)

// The output formats (-o) every read command takes: a table for people,
// wide for more columns (the table itself where a command has none to add),
// and JSON or YAML with the same snake_case names for scripts.
const (
	outputTable = "table"
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
)

// outputFormats are -o's values, in the order help and completion list them.
var outputFormats = []string{outputTable, outputWide, outputJSON, outputYAML}

// addOutputFlag adds -o/--output (table by default); wide says what wide
// adds to the table ("" when it adds nothing).
func addOutputFlag(f *pflag.FlagSet, p *string, wide string) {
	if wide == "" {
		wide = "the same as table"
	}
	f.StringVarP(p, "output", "o", outputTable, "table, wide ("+wide+"), json or yaml")
}

// checkOutput refuses a format that is not one of outputFormats: a usage
// error, before anything is done.
func checkOutput(format string) error {
	if slices.Contains(outputFormats, format) {
		return nil
	}
	return command.Usagef("-o %q: want table, wide, json or yaml", format)
}

// structured reports whether format is for scripts (json or yaml).
func structured(format string) bool { return format == outputJSON || format == outputYAML }

// writeStructured prints v as indented JSON or as YAML.
func writeStructured(w io.Writer, format string, v any) error {
	if format == outputYAML {
		return writeYAML(w, v)
	}
	return writeJSON(w, v)
}

// writeJSON prints v, indented, for scripts, with the controls terminals
// act on escaped (tapstream.WriteJSONIndented): the same value to a
// parser.
func writeJSON(w io.Writer, v any) error { return tapstream.WriteJSONIndented(w, v) }

// writeYAML prints v as YAML with the names its JSON has. Strings are made
// printable first (tapstream.Printable): YAML writes bidirectional and
// other format characters raw, and some of them (a request's path, say)
// come from whoever sent the request. -o json keeps them exact, escaped.
func writeYAML(w io.Writer, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return err
	}
	safe, err := json.Marshal(printableStrings(doc))
	if err != nil {
		return err
	}
	out, err := yaml.JSONToYAML(safe)
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	_, err = w.Write(out)
	return err
}

// writeYAMLDocument prints v as one document of a YAML stream (tap's
// events as they come).
func writeYAMLDocument(w io.Writer, v any) error {
	if _, err := io.WriteString(w, "---\n"); err != nil {
		return err
	}
	return writeYAML(w, v)
}

// writePrintable prints what render writes as a table, each line made
// printable (tapstream.Printable): cells come from the cluster's objects
// (an AuthorizationPolicy's paths, a route's matches), whose authors must
// not write to the terminal of whoever reads them.
func writePrintable(w io.Writer, render func(io.Writer) error) error {
	var buf bytes.Buffer
	if err := render(&buf); err != nil {
		return err
	}
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, tapstream.Printable(strings.TrimSuffix(line, "\n"))+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// printableStrings returns doc (decoded JSON) with every string, keys
// included, made printable.
func printableStrings(doc any) any {
	switch d := doc.(type) {
	case string:
		return tapstream.Printable(d)
	case []any:
		for i := range d {
			d[i] = printableStrings(d[i])
		}
	case map[string]any:
		out := make(map[string]any, len(d))
		for k, v := range d {
			out[tapstream.Printable(k)] = printableStrings(v)
		}
		return out
	}
	return doc
}
