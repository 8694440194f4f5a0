#!/bin/sh
# A sample agent that tries its luck: an unconfigured database, then the proxy port itself.
psql -h 127.0.0.9 -p 5432 -U postgres -d postgres -w -c 'select 1' 2>&1 | sed 's/^/rogue (unconfigured database): /'
psql -h ::ffff:127.0.0.9 -p 5432 -U postgres -d postgres -w -c 'select 1' 2>&1 | sed 's/^/rogue (v4-mapped IPv6): /'
exit 0
