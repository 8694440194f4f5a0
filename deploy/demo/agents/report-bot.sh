#!/bin/sh
# A sample agent: an analytics bot that reads orders with plain psql. It has no
# password and dials the database's real address; interlock does the rest.
set -e
psql -h 127.0.0.3 -p 5432 -U report-bot -d orders -w -qAtX <<'SQL'
select 'report-bot sees ' || count(*) || ' customers' from customers;
select name, total from orders_summary order by total desc limit 2;
SQL
