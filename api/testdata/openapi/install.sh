#!/bin/sh
# Install the node packages api's OpenAPI tests run (check.js: the
# document validated by @apidevtools/swagger-parser, the API's answers by
# ajv), pinned by package-lock.json here, into a directory outside the
# source tree: $ISPMUX_OPENAPI_TOOLS, by default ~/.cache/ispmux/openapi-tools
# (the tests look there too). Nothing is done when that directory already
# holds this lock's complete install (its installed.lock); npm's own cache (~/.npm) makes a reinstall
# cheap. Needs node and npm (Debian: apt-get install nodejs npm).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${ISPMUX_OPENAPI_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ispmux/openapi-tools}
if cmp -s "$here/package-lock.json" "$dir/installed.lock" 2>/dev/null; then
	exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "openapi tools: npm missing (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$dir"
cp "$here/package.json" "$here/package-lock.json" "$dir/"
npm ci --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error
# The mark of a complete install, which the tests compare with the lock.
cp "$here/package-lock.json" "$dir/installed.lock"
echo "openapi tools: installed in $dir"
