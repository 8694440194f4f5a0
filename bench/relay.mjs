// The floor any Node.js proxy starts from: a bare socket.pipe() relay, no parsing at all.
//   node bench/relay.mjs LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT   (listens on 127.0.0.1)
import { connect, createServer } from 'node:net';

const [port, host, upstreamPort] = process.argv.slice(2);
createServer({ noDelay: true }, (client) => {
  const upstream = connect({ host, port: Number(upstreamPort), noDelay: true });
  client.pipe(upstream).pipe(client);
  const close = () => { client.destroy(); upstream.destroy(); };
  client.on('error', close);
  upstream.on('error', close);
}).listen(Number(port), '127.0.0.1', () => console.error('relay ready'));
