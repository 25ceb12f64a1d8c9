#!/bin/sh
# check.sh: `make check` entry of the Node client test: runs tests/node/run.sh without installing
# anything, so it is skipped (exit 77, with a message) where tests/node/node_modules is absent.
SASP_NODE_INSTALL=0 exec "$(dirname "$0")/run.sh" "$@"
