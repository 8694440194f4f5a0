#!/bin/sh
# A sample agent: an analytics bot that reads orders with plain psql. It has no
# password and dials the database's real address; interlock does the rest.
set -e
psql -h 127.0.0.3 -p 5432 -U report-bot -d orders -w -qAtX <<'SQL'
select 'report-bot sees ' || count(*) || ' customers' from customers;
select name, total from orders_summary order by total desc limit 2;
select id, name, email, note from customers order by id;
SQL
# and what it may not do: each is refused with SQLSTATE 42501, the session goes on
psql -h 127.0.0.3 -p 5432 -U report-bot -d orders -w -qAtX \
  -c "delete from customers where id = 3" \
  -c "select pg_read_file('/etc/passwd')" \
  -c "select 'report-bot is still connected'" 2>&1 | sed 's/^/  /'
