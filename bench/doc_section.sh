#!/usr/bin/env bash
# Replaces (or appends) one script's section of docs/benchmarks.md.
#
#   bench/doc_section.sh NAME FILE
#
# FILE holds the new section, from its "<!-- NAME:begin" line to its "<!-- NAME:end -->" line;
# everything else in the document stays as it is.
set -euo pipefail
name=$1
file=$2
doc="$(dirname "$0")/../docs/benchmarks.md"
[[ -f $doc ]] || printf '# Benchmarks\n\nFigures measured by the scripts in bench/ (see README.md); each script rewrites its own\nsection. The machines are shared and noisy: compare ratios within one run, not across runs.\n' >"$doc"
if grep -q "<!-- $name:begin" "$doc"; then
  awk -v name="$name" -v file="$file" '
    $0 ~ "<!-- " name ":begin" { while ((getline line < file) > 0) print line; skip = 1; next }
    $0 ~ "<!-- " name ":end" { skip = 0; next }
    !skip { print }' "$doc" >"$doc.new"
  mv "$doc.new" "$doc"
else
  { echo; cat "$file"; } >>"$doc"
fi
