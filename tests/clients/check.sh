#!/bin/sh
# check.sh: `make check` entry of the client-library suite: runs tests/clients/run.sh without
# installing anything, so it is skipped (exit 77, with a message) where tests/clients/node_modules is
# absent; `make check-all` runs run.sh, which installs them from the lock file.
SASP_NODE_INSTALL=0 exec "$(dirname "$0")/run.sh" "$@"
