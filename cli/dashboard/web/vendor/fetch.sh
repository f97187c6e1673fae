#!/usr/bin/env bash
# Re-creates this directory's third-party files from the npm registry at
# pinned versions: each package is fetched with `npm pack`, unpacked in a
# temporary directory, and its browser build and licence copied here.
# Run from anywhere: bash cli/dashboard/web/vendor/fetch.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# package@version  source-path-in-tarball  destination-file
files=(
  "cytoscape@3.35.0       package/dist/cytoscape.min.js    cytoscape.min.js"
  "cytoscape@3.35.0       package/LICENSE                  cytoscape.LICENSE"
  "dagre@0.8.5            package/dist/dagre.min.js        dagre.min.js"
  "dagre@0.8.5            package/LICENSE                  dagre.LICENSE"
  # dagre.min.js bundles graphlib 2.1.8 and lodash 4.x: their licences too.
  "graphlib@2.1.8         package/LICENSE                  graphlib.LICENSE"
  "lodash@4.17.15         package/LICENSE                  lodash.LICENSE"
  "cytoscape-dagre@2.5.0  package/cytoscape-dagre.js       cytoscape-dagre.js"
  "cytoscape-dagre@2.5.0  package/LICENSE                  cytoscape-dagre.LICENSE"
  "uplot@1.6.32           package/dist/uPlot.iife.min.js   uPlot.iife.min.js"
  "uplot@1.6.32           package/dist/uPlot.min.css       uPlot.min.css"
  "uplot@1.6.32           package/LICENSE                  uPlot.LICENSE"
)

for entry in "${files[@]}"; do
  read -r spec src dst <<<"$entry"
  dir="$tmp/${spec//[@\/]/_}"
  if [[ ! -d "$dir" ]]; then
    mkdir -p "$dir"
    tarball="$(cd "$tmp" && npm pack --silent "$spec" | tail -n 1)"
    tar -xzf "$tmp/$tarball" -C "$dir"
  fi
  install -m 0644 "$dir/$src" "$here/$dst"
  echo "$spec $src -> $dst"
done

# The repo refuses files of 1 MiB or more.
for f in "$here"/*; do
  size=$(stat -c %s "$f")
  if (( size >= 1048576 )); then
    echo "fetch.sh: $f is $size bytes (1 MiB or more)" >&2
    exit 1
  fi
done
