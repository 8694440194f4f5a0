import { describe, expect, it } from 'vitest';
import type { DecisionEvent, RecordedEvent, Recording, StartEvent } from '../../src/recording/events.js';
import {
  decodeKubernetesSession,
  describeBody,
  renderKubernetesReplay,
  WsFrameReader,
  WsMessageReader,
  type KubeRequest,
} from '../../src/recording/replay/kubernetes.js';

// ---- WebSocket frames, written out by hand (RFC 6455 §5.2)

interface FrameOptions {
  fin?: boolean;
  /** client frames are masked with a 4-byte key */
  mask?: number[];
  /** force the 64-bit length form */
  long?: boolean;
}

function wsFrame(opcode: number, payload: Buffer, { fin = true, mask, long = false }: FrameOptions = {}): Buffer {
  const len = payload.length;
  const head: number[] = [(fin ? 0x80 : 0) | opcode];
  const maskBit = mask ? 0x80 : 0;
  if (long) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(maskBit | 127, ...b);
  } else if (len >= 126) head.push(maskBit | 126, len >> 8, len & 0xff);
  else head.push(maskBit | len);
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const body = Buffer.from(payload.map((byte, i) => byte ^ mask[i & 3]!));
  return Buffer.concat([Buffer.from([...head, ...mask]), body]);
}

const MASK = [0x12, 0x34, 0x56, 0x78];
/** a v5.channel.k8s.io message: the channel byte, then the data */
const channel = (ch: number, data: string | Buffer) => Buffer.concat([Buffer.from([ch]), typeof data === 'string' ? Buffer.from(data, 'utf8') : data]);
const fromAgent = (ch: number, data: string | Buffer) => wsFrame(2, channel(ch, data), { mask: MASK });
const toAgent = (ch: number, data: string | Buffer) => wsFrame(2, channel(ch, data));
const closeFrame = (code: number, reason = '', mask?: number[]) => {
  const p = Buffer.alloc(2 + Buffer.byteLength(reason));
  p.writeUInt16BE(code);
  p.write(reason, 2);
  return wsFrame(8, p, { mask });
};

// ---- recordings

const START: StartEvent = {
  k: 'start',
  t: 0,
  at: Date.UTC(2025, 2, 10, 9, 0, 0, 0),
  session: 'kube-1',
  protocol: 'kubernetes',
  node: 'node-a',
  workload: 'deploy-bot',
  groups: ['ops'],
  target: 'prod',
  dst: '10.0.0.1:6443',
  pid: 4242,
  uid: 1000,
  comm: 'kubectl',
  cmdline: ['kubectl', 'get', 'pods', '-n', 'shop'],
};

type Event = Exclude<RecordedEvent, StartEvent>;

const decision = (t: number, command: string, action: DecisionEvent['action'] = 'allow', rule?: string, message?: string): Event =>
  ({ k: 'decision', t, command, via: 'http', kinds: ['get'], action, ...(rule ? { rule } : {}), ...(message ? { message } : {}) });
const out = (t: number, b: Buffer | string): Event => ({ k: 'out', t, b: typeof b === 'string' ? Buffer.from(b) : b });
const inn = (t: number, b: Buffer | string): Event => ({ k: 'in', t, b: typeof b === 'string' ? Buffer.from(b) : b });

function recording(events: Event[], sealed = true): Recording {
  const end = events.find((e) => e.k === 'end');
  return { id: START.session, file: '/x.rec', start: START, ...(end?.k === 'end' ? { end } : {}), events: [START, ...events], sealed, truncated: false, problems: [] };
}

const json = (v: unknown) => JSON.stringify(v);
const POD_LIST = json({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [{ metadata: { name: 'web-0' } }, { metadata: { name: 'web-1' } }] });
const CREATE_BODY = json({ kind: 'Deployment', apiVersion: 'apps/v1', metadata: { name: 'web' }, spec: { replicas: 3 } });
const WATCH = [
  json({ type: 'ADDED', object: { kind: 'Pod', metadata: { name: 'web-0' } } }) + '\n',
  json({ type: 'MODIFIED', object: { kind: 'Pod', metadata: { name: 'web-0' } } }) + '\n',
].join('');

function apiRecording(): Recording {
  return recording([
    decision(10, 'GET /api?timeout=32s'),
    out(12, json({ kind: 'APIVersions', versions: ['v1'] })),
    decision(100, 'GET /api/v1/namespaces/shop/pods?limit=500'),
    out(123, POD_LIST),
    decision(200, 'POST /apis/apps/v1/namespaces/shop/deployments?fieldManager=kubectl-client-side-apply'),
    inn(201, CREATE_BODY),
    out(230, CREATE_BODY),
    decision(300, 'DELETE /apis/apps/v1/namespaces/shop/deployments/web', 'deny', 'ops#2', 'agents do not delete'),
    decision(400, 'GET /api/v1/namespaces/shop/pods?watch=true'),
    // a watch stream arrives in pieces that cut events in half
    out(410, WATCH.slice(0, 30)),
    out(420, WATCH.slice(30)),
    decision(500, 'GET /api/v1/namespaces/kube-system/secrets', 'deny', undefined, 'no rule allows list of secrets in namespace kube-system'),
    decision(600, 'GET /api/v1/namespaces/shop/pods/web-0/log?container=app'),
    out(610, 'line one\nline two\n'),
    { k: 'end', t: 700, reason: 'client closed', bytesIn: CREATE_BODY.length, bytesOut: 999, commands: 7, rows: 0 },
  ]);
}

const EXEC_URL = '/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=cat%20%3E%20%2Ftmp%2Fx%3B%20ls%20-l&container=app&stdin=true&stdout=true&stderr=true';
const SWITCH =
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n';

function execRecording(): Recording {
  const stdin = fromAgent(0, 'hello\n');
  // stdout in two fragments of one message, with a ping between them
  const stdoutMessage = channel(1, 'total 4\r\n-rw-r--r-- 1 root root 6 x\r\n');
  const fragments = Buffer.concat([
    wsFrame(2, stdoutMessage.subarray(0, 10), { fin: false }),
    wsFrame(9, Buffer.from('ping')),
    wsFrame(0, stdoutMessage.subarray(10)),
  ]);
  const status = json({ metadata: {}, status: 'Failure', message: 'command terminated with non-zero exit code: error executing command [sh -c cat], exit code 2', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '2' }] } });
  return recording([
    decision(1000, `GET ${EXEC_URL}`),
    // the 101 answer and the first frame arrive together
    out(1050, Buffer.concat([Buffer.from(SWITCH), toAgent(1, '')])),
    // the agent's stdin frame, cut in two by the network
    inn(1100, stdin.subarray(0, 5)),
    inn(1101, stdin.subarray(5)),
    inn(1150, fromAgent(4, json({ Width: 120, Height: 40 }))),
    inn(1200, fromAgent(255, Buffer.from([0]))),
    out(1300, fragments),
    out(1310, toAgent(2, 'ls: \x1b[31mdenied\x1b[0m\n')),
    // a long message: 16-bit length
    out(1320, toAgent(1, 'x'.repeat(300) + '\n')),
    out(1400, toAgent(3, status)),
    out(1410, closeFrame(1000)),
    inn(1420, closeFrame(1000, 'bye', MASK)),
    { k: 'end', t: 1500, reason: 'client closed', bytesIn: 10, bytesOut: 20, commands: 1, rows: 0 },
  ]);
}

function requests(rec: Recording): KubeRequest[] {
  return decodeKubernetesSession(rec.events).flatMap((i) => (i.kind === 'request' ? [i.request] : []));
}

// ---------------------------------------------------------------------------

describe('WebSocket frames', () => {
  it('reads 7-, 16- and 64-bit lengths, masked and not, whatever the pieces', () => {
    const frames = Buffer.concat([
      wsFrame(1, Buffer.from('hi')),
      wsFrame(2, Buffer.alloc(300, 7), { mask: MASK }),
      wsFrame(2, Buffer.from('long form'), { long: true, mask: MASK }),
    ]);
    for (const size of [1, 3, 7, frames.length]) {
      const reader = new WsFrameReader();
      const got = [];
      for (let i = 0; i < frames.length; i += size) got.push(...reader.push(frames.subarray(i, i + size)));
      expect(got.map((f) => [f.opcode, f.masked, f.payload.length])).toEqual([
        [1, false, 2],
        [2, true, 300],
        [2, true, 9],
      ]);
      expect(got[1]!.payload.every((b) => b === 7)).toBe(true);
      expect(got[2]!.payload.toString()).toBe('long form');
      expect(reader.pending).toBe(0);
    }
  });

  it('joins fragments around control frames and keeps what is unfinished', () => {
    const reader = new WsMessageReader();
    const messages = reader.push(
      Buffer.concat([wsFrame(1, Buffer.from('hel'), { fin: false }), wsFrame(9, Buffer.alloc(0)), wsFrame(0, Buffer.from('lo')), wsFrame(2, Buffer.from('abc')).subarray(0, 3)]),
    );
    expect(messages.map((m) => [m.opcode, m.payload.toString()])).toEqual([
      [9, ''],
      [1, 'hello'],
    ]);
    expect(reader.pending).toBe(3);
  });

  it('gives up on a length no recording could hold', () => {
    const reader = new WsFrameReader();
    const huge = Buffer.from([0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    expect(reader.push(huge)).toEqual([]);
    expect(reader.error).toMatch(/claims/);
  });
});

describe('decodeKubernetesSession', () => {
  it('gives each request its body and response, and refusals none', () => {
    const [api, list, create, del, watch, secrets, log] = requests(apiRecording());
    expect(api!.received.toString()).toContain('APIVersions');
    expect(list!.info).toMatchObject({ verb: 'list', resource: 'pods', namespace: 'shop' });
    expect(list!.received.toString()).toBe(POD_LIST);
    expect(create!.sent.toString()).toBe(CREATE_BODY);
    expect(del!.decision.action).toBe('deny');
    expect(del!.received.length).toBe(0);
    expect(watch!.received.toString()).toBe(WATCH);
    expect(secrets!.received.length).toBe(0);
    expect(log!.received.toString()).toBe('line one\nline two\n');
  });

  it('decodes an exec stream both ways, in the order it happened', () => {
    const [exec] = requests(execRecording());
    const u = exec!.upgrade!;
    expect(u).toMatchObject({ statusLine: 'HTTP/1.1 101 Switching Protocols', switched: true, upgrade: 'websocket', subprotocol: 'v5.channel.k8s.io' });
    expect(u.problem).toBeUndefined();
    expect(u.items.map((i) => [i.dir, i.kind])).toEqual([
      ['in', 'data'],
      ['in', 'resize'],
      ['in', 'close-channel'],
      ['out', 'data'],
      ['out', 'data'],
      ['out', 'data'],
      ['out', 'status'],
      ['out', 'close'],
      ['in', 'close'],
    ]);
    expect(u.items[0]).toMatchObject({ channel: 'stdin', text: 'hello\n', t: 1101 });
    expect(u.items[1]).toMatchObject({ width: 120, height: 40 });
    expect(u.items[2]).toMatchObject({ channel: 'stdin' });
    expect(u.items[3]).toMatchObject({ channel: 'stdout', text: 'total 4\r\n-rw-r--r-- 1 root root 6 x\r\n' });
    expect(u.items[6]).toMatchObject({ kind: 'status', status: 'Failure', exitCode: 2 });
    expect(u.items[8]).toMatchObject({ kind: 'close', code: 1000, reason: 'bye' });
  });

  it('decodes text split between two messages in the middle of a character', () => {
    const euro = Buffer.from('price: 5€\n');
    const rec = recording([decision(1, `GET ${EXEC_URL}`), out(2, Buffer.concat([Buffer.from(SWITCH), toAgent(1, euro.subarray(0, 9))])), out(3, toAgent(1, euro.subarray(9)))]);
    const items = requests(rec)[0]!.upgrade!.items;
    expect(items.map((i) => (i.kind === 'data' ? i.text : '')).join('')).toBe('price: 5€\n');
  });

  it('reads base64.channel.k8s.io text frames', () => {
    const header = SWITCH.replace('v5.channel.k8s.io', 'base64.channel.k8s.io');
    const frame = wsFrame(1, Buffer.from('1' + Buffer.from('hi\n').toString('base64')));
    const rec = recording([decision(1, `GET ${EXEC_URL}`), out(2, Buffer.concat([Buffer.from(header), frame]))]);
    expect(requests(rec)[0]!.upgrade!.items).toEqual([{ t: 2, dir: 'out', kind: 'data', channel: 'stdout', text: 'hi\n', bytes: 3 }]);
  });

  it('marks requests that overlapped on one connection', () => {
    const rec = recording([decision(1, 'GET /api'), decision(2, 'GET /apis'), out(3, json({ kind: 'APIVersions' })), out(4, json({ kind: 'APIGroupList', groups: [] }))]);
    const [api, apis] = requests(rec);
    expect(api!.overlapped).toBe(true);
    expect(api!.received.length).toBe(0);
    expect(apis!.overlapped).toBeUndefined();
    expect(describeBody(apis!.received)).toBe('2 JSON documents');
  });
});

describe('requests held for approval', () => {
  const DELETE = 'DELETE /apis/apps/v1/namespaces/shop/deployments/web';
  const held = (t: number): Event => ({ k: 'decision', t, command: DELETE, via: 'http', kinds: ['delete'], action: 'approve', rule: 'ops#6', message: 'needs approval (rule ops#6)' });
  const approval = (t: number, outcome: 'approved' | 'rejected'): Event => ({ k: 'approval', t, command: DELETE, outcome, by: 'alice' });
  const status = json({ kind: 'Status', status: 'Success' });

  it('take the bytes that follow their approval, not those before it', () => {
    const rec = recording([decision(1, 'GET /api/v1/namespaces/shop/pods?watch=true'), held(2), out(3, WATCH.slice(0, 10)), approval(4, 'approved'), out(5, status)]);
    const [watch, del] = requests(rec);
    expect(watch!.received.toString()).toBe(WATCH.slice(0, 10));
    expect(del!.received.toString()).toBe(status);
    const text = renderKubernetesReplay(rec);
    expect(text).toContain(`+0.002s  approve  ${DELETE}  (delete deployments.apps "web" in shop)\n         rule ops#6: needs approval (rule ops#6)\n`);
    expect(text).toContain(`+0.004s  approval approved by alice: ${DELETE}\n`);
  });

  it('take the bytes at once when an earlier approval still holds', () => {
    const rec = recording([decision(1, 'GET /api/v1/namespaces/shop/pods?watch=true'), held(2), out(3, status)]);
    expect(requests(rec)[1]!.received.toString()).toBe(status);
  });

  it('take no bytes when rejected', () => {
    const rec = recording([decision(1, 'GET /api/v1/namespaces/shop/pods?watch=true'), held(2), approval(3, 'rejected'), out(4, WATCH)]);
    const [watch, del] = requests(rec);
    expect(watch!.received.toString()).toBe(WATCH);
    expect(del!.received.length).toBe(0);
  });
});

describe('describeBody', () => {
  it('names lists, objects, statuses, watch streams, text and binary', () => {
    expect(describeBody(Buffer.from(POD_LIST))).toBe('PodList, 2 items');
    expect(describeBody(Buffer.from(CREATE_BODY))).toBe('Deployment "web"');
    expect(describeBody(Buffer.from(json({ kind: 'Table', rows: [{}, {}, {}] })))).toBe('Table, 3 rows');
    expect(describeBody(Buffer.from(json({ kind: 'Status', status: 'Failure', reason: 'NotFound', message: 'pods "x" not found' })))).toBe('Status Failure (NotFound): pods "x" not found');
    expect(describeBody(Buffer.from(WATCH))).toBe('2 watch events (ADDED 1, MODIFIED 1)');
    expect(describeBody(Buffer.from(WATCH.slice(0, WATCH.length - 10)))).toBe('1 watch event (ADDED 1), the last one unfinished');
    expect(describeBody(Buffer.from('a\nb\nc'))).toBe('text, 3 lines');
    expect(describeBody(Buffer.from([0, 1, 2, 0xff]))).toBe('binary');
  });
});

describe('renderKubernetesReplay', () => {
  it('lays out the header, each request with its decision and bytes, and the end', () => {
    const text = renderKubernetesReplay(apiRecording());
    const lines = text.split('\n');
    expect(lines.slice(0, 6)).toEqual([
      '# session kube-1',
      '# protocol kubernetes, recorded on node-a',
      '# workload deploy-bot (groups: ops)',
      '# target prod (dialled 10.0.0.1:6443)',
      '# agent pid 4242, uid 1000, comm kubectl: kubectl get pods -n shop',
      '# started 2025-03-10T09:00:00.000Z',
    ]);
    expect(text).toContain('+0.010s  allow  GET /api?timeout=32s\n         ← 40 bytes: APIVersions\n');
    expect(text).toContain(`+0.100s  allow  GET /api/v1/namespaces/shop/pods?limit=500  (list pods in shop)\n         ← ${POD_LIST.length} bytes: PodList, 2 items\n`);
    expect(text).toContain('(create deployments.apps in shop)\n');
    expect(text).toContain(`         → ${CREATE_BODY.length} bytes: ${CREATE_BODY}\n         ← ${CREATE_BODY.length} bytes: Deployment "web"\n`);
    expect(text).toContain('+0.300s  deny   DELETE /apis/apps/v1/namespaces/shop/deployments/web  (delete deployments.apps "web" in shop)\n         rule ops#2: agents do not delete\n');
    expect(text).toContain('(watch pods in shop)\n         ← ');
    expect(text).toContain('bytes: 2 watch events (ADDED 1, MODIFIED 1)\n');
    expect(text).toContain('(list secrets in kube-system)\n         no rule: no rule allows list of secrets in namespace kube-system\n');
    expect(text).toContain('(get pods/log "web-0" in shop)\n');
    expect(text).toContain('← 18 bytes: text, 2 lines');
    expect(text.trimEnd().split('\n').at(-1)).toBe(`# +0.700s end: client closed; ${CREATE_BODY.length} bytes in, 999 bytes out, 7 requests`);
    expect(text).not.toContain('recording incomplete');
  });

  it('shows an exec stream: stdin, stdout, stderr, resize, the exit status and the closes', () => {
    const text = renderKubernetesReplay(execRecording());
    expect(text).toContain(`(exec in pod "web-0" (container app) in shop: sh -c 'cat > /tmp/x; ls -l')\n`);
    expect(text).toContain('         ← HTTP/1.1 101 Switching Protocols (WebSocket v5.channel.k8s.io)\n');
    expect(text).toContain('+1.101s    stdin   hello\n');
    expect(text).toContain('+1.150s    resize  120x40\n');
    expect(text).toContain('+1.200s    close   → stdin closed\n');
    expect(text).toContain('+1.300s    stdout  total 4\n                   -rw-r--r-- 1 root root 6 x\n');
    // terminal colours are shown, not applied
    expect(text).toContain('+1.310s    stderr  ls: \\x1b[31mdenied\\x1b[0m\n');
    expect(text).toContain(`+1.320s    stdout  ${'x'.repeat(300)}\n`);
    expect(text).toContain('+1.400s    status  exit 2: command terminated with non-zero exit code');
    expect(text).toContain('+1.410s    close   ← 1000\n');
    expect(text).toContain('+1.420s    close   → 1000 bye\n');
    expect(text).toMatch(/stream: \d+ bytes from the agent, \d+ bytes to it\n/);
    expect(text).not.toContain('!!');
  });

  it('says when the server did not switch, and shows its answer', () => {
    const refusal = json({ kind: 'Status', status: 'Failure', reason: 'Forbidden', message: 'pods "web-0" is forbidden' });
    const rec = recording([decision(1, `GET ${EXEC_URL}`), out(2, `HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n\r\n${refusal}`)]);
    const text = renderKubernetesReplay(rec);
    expect(text).toContain('         ← HTTP/1.1 403 Forbidden\n');
    expect(text).toContain(`         ← ${refusal.length} bytes: Status Failure (Forbidden): pods "web-0" is forbidden\n`);
  });

  it('notes an unfinished frame, an unsealed recording, truncation and a tampered one', () => {
    const cut = toAgent(1, 'partial output').subarray(0, 8);
    const rec = recording([decision(1, `GET ${EXEC_URL}`), out(2, Buffer.concat([Buffer.from(SWITCH), cut])), { k: 'truncated', t: 3, bytes: 4096 }], false);
    rec.problems = ['chunk 3: bad hmac'];
    const text = renderKubernetesReplay(rec);
    expect(text.startsWith('# !! INTEGRITY PROBLEMS')).toBe(true);
    expect(text).toContain('!! frames from the server: 8 bytes of an unfinished message at the end');
    expect(text).toContain('+0.003s  !! recording truncated at 4096 bytes');
    expect(text.trimEnd().split('\n').at(-1)).toBe('# recording incomplete: the session did not end cleanly (no seal)');
  });

  it('prints bodies in full when asked, and never lets recorded text drive the terminal', () => {
    const rec = recording([decision(1, 'GET /api/v1/namespaces/shop/pods/web-0/log'), out(2, 'one\n\x1b]0;owned\x07two\n')]);
    const text = renderKubernetesReplay(rec, { bodies: true });
    expect(text).toContain('         ← | one\n         ← | \\x1b]0;owned\\x07two\n');
    expect(text).not.toMatch(/[\x07\x1b]/);
  });
});
