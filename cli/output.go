package cli

import (
	"encoding/json"
	"io"
)

// writeJSON prints v, indented, for scripts.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
