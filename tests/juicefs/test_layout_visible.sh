#!/usr/bin/env bash
# test_layout.sh with tail indexes on (visibility_ms 1000, issue 14 item 2):
# each publish flushes the open segment and so cuts a JuiceFS slice; tail.c
# counts them per 64 MiB chunk so that no chunk reaches the 5 slices JuiceFS
# compacts on read. The same stores, layout count (at most 4 slices a chunk)
# and read-back with no compaction as test_layout.sh.
#
# usage: tests/juicefs/test_layout_visible.sh [BUILD_DIR]
# Exit: as test_layout.sh.
LAYOUT_ARGS="--visibility-ms 1000" MAX_SLICES=4 \
    exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/test_layout.sh" "$@"
