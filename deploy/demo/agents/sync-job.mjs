// A sample agent in Node: a sync job using node-postgres (extended protocol, parameters).
import pg from 'pg';

const client = new pg.Client({ host: '127.0.0.3', port: 5432, user: 'sync-job', database: 'orders' });
await client.connect();
const { rows } = await client.query('select id, name from customers where id = $1', [2]);
console.log(`sync-job fetched customer ${rows[0].id}: ${rows[0].name}`);
await client.end();
