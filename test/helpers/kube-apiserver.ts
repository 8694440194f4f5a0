/**
 * A Kubernetes API server for tests, faithful where kubectl looks: TLS with its own CA,
 * HTTP/2 and HTTP/1.1 on one port, bearer-token auth, legacy discovery, CRUD on a few
 * built-in resources in memory, server-side Tables, watch streams, pod logs, and exec
 * over WebSocket (v4/v5 channel protocols). Nothing is executed: exec answers are canned.
 *
 * Seeded with namespaces default, kube-system and shop; shop holds pods web-0 and web-1,
 * a deployment and a service "web", a secret "db-creds" and a configmap "app-config".
 */
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { STATUS_CODES, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { isIP, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import forge from 'node-forge';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

// ---------------------------------------------------------------------------------------------
// Public API

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  generateName?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

/** Objects are free-form JSON, as on the wire; only metadata is typed. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  [field: string]: any;
}

export interface RecordedRequest {
  method: string;
  /** path and query, as sent */
  path: string;
  /** every header as received (HTTP/2 pseudo-headers left out), Authorization included */
  headers: IncomingHttpHeaders;
  httpVersion: string;
}

export interface RecordedExec {
  namespace: string;
  pod: string;
  container: string;
  command: string[];
  /** the negotiated WebSocket subprotocol */
  protocol: string;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: WatchEventType;
  /** plural resource name: pods, secrets, … */
  resource: string;
  object: KubeObject;
  resourceVersion: number;
}

export interface FakeKubeApiServer {
  /** path of the CA certificate (PEM) that signed the serving certificate */
  caFile: string;
  caPem: string;
  /** https://host:port */
  url: string;
  host: string;
  port: number;
  requests: RecordedRequest[];
  store: KubeStore;
  execs: RecordedExec[];
  stop(): Promise<void>;
}

export interface KubeApiServerOptions {
  host: string;
  /** 0 picks a free port */
  port: number;
  /** where the CA certificate is written */
  dir: string;
  /** the only bearer token accepted */
  token: string;
}

// ---------------------------------------------------------------------------------------------
// Certificates

interface ServingMaterial {
  caPem: string;
  certPem: string;
  keyPem: string;
}

function forgeKeyPair(): { pem: string; privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey } {
  // node:crypto is much faster than forge's pure-JS key generation
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs1', format: 'pem' }) as string;
  const forgeKey = forge.pki.privateKeyFromPem(pem);
  return { pem, privateKey: forgeKey, publicKey: forge.pki.setRsaPublicKey(forgeKey.n, forgeKey.e) };
}

/** A positive DER serial number (a set high bit would make it negative, which Go rejects). */
function serialNumber(): string {
  const bytes = randomBytes(12);
  bytes[0]! &= 0x7f;
  return bytes.toString('hex');
}

function newCertificate(publicKey: forge.pki.rsa.PublicKey, commonName: string, days: number): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serialNumber();
  cert.validity.notBefore = new Date(Date.now() - 3600_000);
  cert.validity.notAfter = new Date(Date.now() + days * 86400_000);
  cert.setSubject([{ name: 'commonName', value: commonName }]);
  return cert;
}

function makeServingMaterial(host: string): ServingMaterial {
  const caKeys = forgeKeyPair();
  const ca = newCertificate(caKeys.publicKey, 'fake-kube-apiserver-ca', 3650);
  ca.setIssuer(ca.subject.attributes);
  ca.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  ca.sign(caKeys.privateKey, forge.md.sha256.create());

  const serverKeys = forgeKeyPair();
  const cert = newCertificate(serverKeys.publicKey, 'kube-apiserver', 365);
  cert.setIssuer(ca.subject.attributes);
  const dnsNames = ['kubernetes', 'kubernetes.default', 'kubernetes.default.svc', 'kubernetes.default.svc.cluster.local', 'localhost'];
  const hostName = isIP(host) ? { type: 7, ip: host } : { type: 2, value: host };
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [hostName, ...dnsNames.map((value) => ({ type: 2, value }))] },
  ]);
  cert.sign(caKeys.privateKey, forge.md.sha256.create());
  return { caPem: forge.pki.certificateToPem(ca), certPem: forge.pki.certificateToPem(cert), keyPem: serverKeys.pem };
}

// ---------------------------------------------------------------------------------------------
// Errors and Status objects

class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

function statusObject(code: number, reason: string, message: string, details?: Record<string, unknown>): KubeObject {
  const status: KubeObject = { kind: 'Status', apiVersion: 'v1', metadata: {} as ObjectMeta, status: 'Failure', message, reason };
  if (details) status.details = details;
  status.code = code;
  return status;
}

function qualifiedResource(type: ResourceType): string {
  return type.group ? `${type.plural}.${type.group}` : type.plural;
}

function resourceDetails(type: ResourceType, name: string): Record<string, unknown> {
  return type.group ? { name, group: type.group, kind: type.plural } : { name, kind: type.plural };
}

function notFound(type: ResourceType, name: string): ApiError {
  return new ApiError(404, 'NotFound', `${qualifiedResource(type)} "${name}" not found`, resourceDetails(type, name));
}

function alreadyExists(type: ResourceType, name: string): ApiError {
  return new ApiError(409, 'AlreadyExists', `${qualifiedResource(type)} "${name}" already exists`, resourceDetails(type, name));
}

function conflict(type: ResourceType, name: string): ApiError {
  const message = `Operation cannot be fulfilled on ${qualifiedResource(type)} "${name}": the object has been modified; please apply your changes to the latest version and try again`;
  return new ApiError(409, 'Conflict', message, resourceDetails(type, name));
}

function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

function methodNotAllowed(): ApiError {
  return new ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
}

// ---------------------------------------------------------------------------------------------
// The resource catalogue: discovery, type metadata and server-side printing

interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

interface Subresource {
  name: string;
  kind: string;
  verbs: string[];
  group?: string;
  version?: string;
}

interface ResourceType {
  group: string;
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames: string[];
  categories: string[];
  verbs: string[];
  subresources: Subresource[];
  columns: ColumnDefinition[];
  /** the Table cells of one object, in column order */
  cells(object: KubeObject, age: string): unknown[];
}

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

function column(name: string, description: string, opts: { type?: string; priority?: number; format?: string } = {}): ColumnDefinition {
  return { name, type: opts.type ?? 'string', format: opts.format ?? '', description, priority: opts.priority ?? 0 };
}

const NAME_COLUMN = column('Name', 'Name must be unique within a namespace.', { format: 'name' });
const AGE_COLUMN = column('Age', 'CreationTimestamp is a timestamp representing the server time when this object was created.');

function apiVersionOf(type: ResourceType): string {
  return type.group ? `${type.group}/${type.version}` : type.version;
}

function selectorString(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {});
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '<none>';
}

function podStatusReason(pod: KubeObject): string {
  if (pod.metadata.deletionTimestamp) return 'Terminating';
  const waiting = (pod.status?.containerStatuses ?? []).find((s: KubeObject) => s.state?.waiting?.reason);
  return waiting?.state.waiting.reason ?? pod.status?.reason ?? pod.status?.phase ?? 'Unknown';
}

function podCells(pod: KubeObject, age: string): unknown[] {
  const statuses: KubeObject[] = pod.status?.containerStatuses ?? [];
  const ready = statuses.filter((s) => s.ready).length;
  const restarts = statuses.reduce((n, s) => n + (s.restartCount ?? 0), 0);
  const total = pod.spec?.containers?.length ?? 0;
  return [pod.metadata.name, `${ready}/${total}`, podStatusReason(pod), String(restarts), age, pod.status?.podIP ?? '<none>', pod.spec?.nodeName ?? '<none>', '<none>', '<none>'];
}

function deploymentCells(d: KubeObject, age: string): unknown[] {
  const containers: KubeObject[] = d.spec?.template?.spec?.containers ?? [];
  return [
    d.metadata.name,
    `${d.status?.readyReplicas ?? 0}/${d.spec?.replicas ?? 1}`,
    d.status?.updatedReplicas ?? 0,
    d.status?.availableReplicas ?? 0,
    age,
    containers.map((c) => c.name).join(','),
    containers.map((c) => c.image).join(','),
    selectorString(d.spec?.selector?.matchLabels),
  ];
}

function serviceCells(s: KubeObject, age: string): unknown[] {
  const ports = (s.spec?.ports ?? []).map((p: KubeObject) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',');
  return [s.metadata.name, s.spec?.type ?? 'ClusterIP', s.spec?.clusterIP ?? '<none>', '<none>', ports || '<none>', age, selectorString(s.spec?.selector)];
}

const dataCount = (o: KubeObject): number => Object.keys(o.data ?? {}).length + Object.keys(o.binaryData ?? {}).length;

const RESOURCE_TYPES: ResourceType[] = [
  {
    group: '', version: 'v1', plural: 'namespaces', singular: 'namespace', kind: 'Namespace', namespaced: false,
    shortNames: ['ns'], categories: [], verbs: ALL_VERBS.filter((v) => v !== 'deletecollection'),
    subresources: [{ name: 'finalize', kind: 'Namespace', verbs: ['update'] }, { name: 'status', kind: 'Namespace', verbs: ['get', 'patch', 'update'] }],
    columns: [NAME_COLUMN, column('Status', 'The status of the namespace'), AGE_COLUMN],
    cells: (ns, age) => [ns.metadata.name, ns.status?.phase ?? 'Active', age],
  },
  {
    group: '', version: 'v1', plural: 'pods', singular: 'pod', kind: 'Pod', namespaced: true,
    shortNames: ['po'], categories: ['all'], verbs: ALL_VERBS,
    subresources: [
      { name: 'attach', kind: 'PodAttachOptions', verbs: ['create', 'get'] },
      { name: 'exec', kind: 'PodExecOptions', verbs: ['create', 'get'] },
      { name: 'log', kind: 'Pod', verbs: ['get'] },
      { name: 'status', kind: 'Pod', verbs: ['get', 'patch', 'update'] },
    ],
    columns: [
      NAME_COLUMN,
      column('Ready', 'The aggregate readiness state of this pod for accepting traffic.'),
      column('Status', 'The aggregate status of the containers in this pod.'),
      column('Restarts', 'The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.'),
      AGE_COLUMN,
      column('IP', 'IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.', { priority: 1 }),
      column('Node', 'NodeName is a request to schedule this pod onto a specific node.', { priority: 1 }),
      column('Nominated Node', 'nominatedNodeName is set only when this pod preempts other pods on the node.', { priority: 1 }),
      column('Readiness Gates', 'If specified, all readiness gates will be evaluated for pod readiness.', { priority: 1 }),
    ],
    cells: podCells,
  },
  {
    group: '', version: 'v1', plural: 'secrets', singular: 'secret', kind: 'Secret', namespaced: true,
    shortNames: [], categories: [], verbs: ALL_VERBS, subresources: [],
    columns: [NAME_COLUMN, column('Type', 'The type of the secret'), column('Data', 'The number of entries in the secret', { type: 'integer' }), AGE_COLUMN],
    cells: (s, age) => [s.metadata.name, s.type ?? 'Opaque', dataCount(s), age],
  },
  {
    group: '', version: 'v1', plural: 'configmaps', singular: 'configmap', kind: 'ConfigMap', namespaced: true,
    shortNames: ['cm'], categories: [], verbs: ALL_VERBS, subresources: [],
    columns: [NAME_COLUMN, column('Data', 'The number of entries in the configmap', { type: 'integer' }), AGE_COLUMN],
    cells: (c, age) => [c.metadata.name, dataCount(c), age],
  },
  {
    group: '', version: 'v1', plural: 'services', singular: 'service', kind: 'Service', namespaced: true,
    shortNames: ['svc'], categories: ['all'], verbs: ALL_VERBS, subresources: [{ name: 'status', kind: 'Service', verbs: ['get', 'patch', 'update'] }],
    columns: [
      NAME_COLUMN, column('Type', 'The type of the service'), column('Cluster-IP', 'The cluster IP of the service'),
      column('External-IP', 'The external IPs of the service'), column('Port(s)', 'The ports of the service'), AGE_COLUMN,
      column('Selector', 'The selector of the service', { priority: 1 }),
    ],
    cells: serviceCells,
  },
  {
    group: 'apps', version: 'v1', plural: 'deployments', singular: 'deployment', kind: 'Deployment', namespaced: true,
    shortNames: ['deploy'], categories: ['all'], verbs: ALL_VERBS,
    subresources: [
      { name: 'scale', kind: 'Scale', verbs: ['get', 'patch', 'update'], group: 'autoscaling', version: 'v1' },
      { name: 'status', kind: 'Deployment', verbs: ['get', 'patch', 'update'] },
    ],
    columns: [
      NAME_COLUMN,
      column('Ready', 'Number of the pod with ready state'),
      column('Up-to-date', 'Total number of non-terminated pods targeted by this deployment that have the desired template spec.', { type: 'integer' }),
      column('Available', 'Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.', { type: 'integer' }),
      AGE_COLUMN,
      column('Containers', 'Names of each container in the template.', { priority: 1 }),
      column('Images', 'Images referenced by each container in the template.', { priority: 1 }),
      column('Selector', 'Label selector for pods.', { priority: 1 }),
    ],
    cells: deploymentCells,
  },
];

function resourceType(plural: string): ResourceType {
  const type = RESOURCE_TYPES.find((t) => t.plural === plural);
  if (!type) throw new Error(`the fixture does not serve ${plural}`);
  return type;
}

function typesOf(groupVersion: string): ResourceType[] {
  return RESOURCE_TYPES.filter((t) => apiVersionOf(t) === groupVersion);
}

const SERVER_VERSION = {
  major: '1',
  minor: '32',
  gitVersion: 'v1.32.4',
  gitCommit: '59526cd4867447956156ae3a602fcbac10a2c335',
  gitTreeState: 'clean',
  buildDate: '2025-04-22T16:02:27Z',
  goVersion: 'go1.23.6',
  compiler: 'gc',
  platform: 'linux/amd64',
};

function apiResourceList(groupVersion: string): KubeObject {
  const resources = typesOf(groupVersion).flatMap((t) => [
    {
      name: t.plural, singularName: t.singular, namespaced: t.namespaced, kind: t.kind, verbs: t.verbs,
      ...(t.shortNames.length ? { shortNames: t.shortNames } : {}),
      ...(t.categories.length ? { categories: t.categories } : {}),
    },
    ...t.subresources.map((s) => ({
      name: `${t.plural}/${s.name}`, singularName: '', namespaced: t.namespaced,
      ...(s.group !== undefined ? { group: s.group, version: s.version } : {}),
      kind: s.kind, verbs: s.verbs,
    })),
  ]);
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion, resources } as unknown as KubeObject;
}

const APPS_GROUP = { name: 'apps', versions: [{ groupVersion: 'apps/v1', version: 'v1' }], preferredVersion: { groupVersion: 'apps/v1', version: 'v1' } };

/**
 * The legacy (unaggregated) discovery documents. kubectl asks for aggregated discovery
 * first; a plain application/json answer makes it fall back to these.
 */
function discoveryDocument(path: string, serverAddress: string): object | undefined {
  switch (path) {
    case '/version':
      return SERVER_VERSION;
    case '/api':
      return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }] };
    case '/apis':
      return { kind: 'APIGroupList', apiVersion: 'v1', groups: [APPS_GROUP] };
    case '/apis/apps':
      return { kind: 'APIGroup', apiVersion: 'v1', ...APPS_GROUP };
    case '/api/v1':
      return apiResourceList('v1');
    case '/apis/apps/v1':
      return apiResourceList('apps/v1');
    default:
      return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Time

function timestamp(date = new Date()): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** Ages as the API server prints them ("45s", "5m12s", "3h", "2d4h"). */
function humanDuration(seconds: number): string {
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 ? `${minutes}m${seconds % 60}s` : `${minutes}m`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 ? `${hours}h${minutes % 60}m` : `${hours}h`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 8) return hours % 24 ? `${days}d${hours % 24}h` : `${days}d`;
  if (days < 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  return years < 8 && days % 365 ? `${years}y${days % 365}d` : `${years}y`;
}

function ageOf(object: KubeObject): string {
  const created = Date.parse(object.metadata.creationTimestamp ?? '');
  return Number.isNaN(created) ? '<unknown>' : humanDuration(Math.floor((Date.now() - created) / 1000));
}

// ---------------------------------------------------------------------------------------------
// The store

type StoreListener = (event: StoreEvent) => void;

function storeKey(resource: string, namespace: string | undefined, name: string): string {
  return `${resource}|${namespace ?? ''}|${name}`;
}

/**
 * The objects the server holds, with one resourceVersion counter for all of them and a
 * history of every change, so a watch from an old resourceVersion replays what it missed.
 * Methods return copies; the mutators emit watch events.
 */
export class KubeStore {
  private readonly objects = new Map<string, KubeObject>();
  private readonly history: StoreEvent[] = [];
  private readonly listeners = new Set<StoreListener>();
  private lastResourceVersion = 0;

  get resourceVersion(): string {
    return String(this.lastResourceVersion);
  }

  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const object = this.objects.get(storeKey(resource, namespaceFor(resource, namespace), name));
    return object && structuredClone(object);
  }

  /** Sorted by namespace then name; all namespaces when namespace is undefined. */
  list(resource: string, namespace?: string): KubeObject[] {
    return [...this.objects.entries()]
      .filter(([key, o]) => key.startsWith(`${resource}|`) && (namespace === undefined || o.metadata.namespace === namespace))
      .map(([, o]) => o)
      .sort((a, b) => `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`))
      .map((o) => structuredClone(o));
  }

  create(resource: string, input: KubeObject, opts: { dryRun?: boolean } = {}): KubeObject {
    const type = resourceType(resource);
    const object = withTypeMeta(apiVersionOf(type), type.kind, input);
    object.metadata = { ...object.metadata };
    if (!object.metadata.name && object.metadata.generateName) object.metadata.name = object.metadata.generateName + randomBytes(3).toString('hex').slice(0, 5);
    if (!object.metadata.name) throw new ApiError(422, 'Invalid', `${type.kind} "" is invalid: metadata.name: Required value: name or generateName is required`);
    if (!type.namespaced) delete object.metadata.namespace;
    const key = storeKey(resource, object.metadata.namespace, object.metadata.name);
    if (this.objects.has(key)) throw alreadyExists(type, object.metadata.name);
    object.metadata.uid = randomUUID();
    object.metadata.creationTimestamp ??= timestamp();
    applyCreateDefaults(resource, object);
    if (opts.dryRun) return object;
    return this.commit(resource, 'ADDED', object);
  }

  /** Replaces an object; a resourceVersion in the input must be the current one. */
  replace(resource: string, input: KubeObject, opts: { dryRun?: boolean } = {}): KubeObject {
    const type = resourceType(resource);
    const current = this.objects.get(storeKey(resource, namespaceFor(resource, input.metadata.namespace), input.metadata.name));
    if (!current) throw notFound(type, input.metadata.name);
    const rv = input.metadata.resourceVersion;
    if (rv && rv !== current.metadata.resourceVersion) throw conflict(type, input.metadata.name);
    const object = withTypeMeta(current.apiVersion!, current.kind!, input);
    object.metadata = { ...object.metadata, name: current.metadata.name, uid: current.metadata.uid, creationTimestamp: current.metadata.creationTimestamp };
    if (type.namespaced) object.metadata.namespace = current.metadata.namespace;
    else delete object.metadata.namespace;
    if (opts.dryRun) return object;
    return this.commit(resource, 'MODIFIED', object);
  }

  /**
   * Changes an object in place (or replaces it with what `change` returns) and announces
   * it to watchers: the way tests simulate controllers and kubelets.
   */
  update(resource: string, namespace: string | undefined, name: string, change: (object: KubeObject) => KubeObject | void, opts: { dryRun?: boolean } = {}): KubeObject {
    const current = this.get(resource, namespace, name);
    if (!current) throw notFound(resourceType(resource), name);
    const changed = change(current) ?? current;
    changed.metadata = { ...changed.metadata, name, namespace: current.metadata.namespace, resourceVersion: undefined };
    return this.replace(resource, changed, opts);
  }

  delete(resource: string, namespace: string | undefined, name: string, opts: { dryRun?: boolean } = {}): KubeObject {
    const key = storeKey(resource, namespaceFor(resource, namespace), name);
    const current = this.objects.get(key);
    if (!current) throw notFound(resourceType(resource), name);
    if (opts.dryRun) return structuredClone(current);
    if (resource === 'namespaces') this.deleteNamespaceContents(name);
    this.objects.delete(key);
    return this.commit(resource, 'DELETED', structuredClone(current));
  }

  /** Called for every change from now on; returns the unsubscribe function. */
  subscribe(listener: StoreListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Changes after resourceVersion, oldest first. */
  eventsSince(resourceVersion: number): StoreEvent[] {
    return this.history.filter((e) => e.resourceVersion > resourceVersion).map((e) => structuredClone(e));
  }

  private deleteNamespaceContents(namespace: string): void {
    for (const type of RESOURCE_TYPES.filter((t) => t.namespaced)) {
      for (const object of this.list(type.plural, namespace)) this.delete(type.plural, namespace, object.metadata.name);
    }
  }

  private commit(resource: string, type: WatchEventType, object: KubeObject): KubeObject {
    this.lastResourceVersion += 1;
    object.metadata.resourceVersion = String(this.lastResourceVersion);
    if (type !== 'DELETED') this.objects.set(storeKey(resource, object.metadata.namespace, object.metadata.name), object);
    const event: StoreEvent = { type, resource, object: structuredClone(object), resourceVersion: this.lastResourceVersion };
    this.history.push(event);
    for (const listener of this.listeners) listener(structuredClone(event));
    return structuredClone(object);
  }
}

/** What the real server's defaulting and admission add to new objects, where kubectl shows it. */
function applyCreateDefaults(resource: string, object: KubeObject): void {
  if (resource === 'namespaces') {
    object.metadata.labels = { ...object.metadata.labels, 'kubernetes.io/metadata.name': object.metadata.name };
    object.spec = { ...object.spec, finalizers: object.spec?.finalizers?.length ? object.spec.finalizers : ['kubernetes'] };
    object.status ??= { phase: 'Active' };
  }
  if (resource === 'pods') object.status ??= { phase: 'Pending', qosClass: 'BestEffort' };
  if (resource === 'secrets') object.type ??= 'Opaque';
}

/** A copy with kind and apiVersion first, as the real server serialises objects. */
function withTypeMeta(apiVersion: string, kind: string, input: KubeObject): KubeObject {
  const { apiVersion: _apiVersion, kind: _kind, ...rest } = structuredClone(input);
  return { apiVersion, kind, ...rest } as KubeObject;
}

function namespaceFor(resource: string, namespace: string | undefined): string | undefined {
  return resourceType(resource).namespaced ? namespace : undefined;
}

// ---------------------------------------------------------------------------------------------
// Seed data

const b64 = (s: string): string => Buffer.from(s).toString('base64');
const ago = (seconds: number): string => timestamp(new Date(Date.now() - seconds * 1000));
const WEB_IMAGE = 'registry.example.com/shop/web:1.4.2';

function seedNamespace(name: string, ageSeconds: number): KubeObject {
  return {
    metadata: { name, labels: { 'kubernetes.io/metadata.name': name }, creationTimestamp: ago(ageSeconds) },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  };
}

function seedPod(name: string, podIP: string, ageSeconds: number): KubeObject {
  const started = ago(ageSeconds - 5);
  return {
    metadata: { name, namespace: 'shop', labels: { app: 'web', 'pod-template-hash': '6d4cf56db6' }, creationTimestamp: ago(ageSeconds) },
    spec: {
      containers: [{ name: 'web', image: WEB_IMAGE, ports: [{ containerPort: 8080, protocol: 'TCP' }], env: [{ name: 'DB_HOST', value: 'db.shop.svc' }] }],
      nodeName: 'node-a',
      restartPolicy: 'Always',
      serviceAccountName: 'default',
    },
    status: {
      phase: 'Running',
      hostIP: '10.0.0.10',
      podIP,
      podIPs: [{ ip: podIP }],
      startTime: started,
      conditions: [{ type: 'Ready', status: 'True', lastTransitionTime: started }],
      containerStatuses: [{ name: 'web', image: WEB_IMAGE, imageID: `${WEB_IMAGE}@sha256:${'ab'.repeat(32)}`, ready: true, started: true, restartCount: 0, state: { running: { startedAt: started } } }],
    },
  };
}

function seedDeployment(): KubeObject {
  const labels = { app: 'web' };
  return {
    metadata: { name: 'web', namespace: 'shop', labels, generation: 1, creationTimestamp: ago(3 * 86400) },
    spec: {
      replicas: 2,
      selector: { matchLabels: labels },
      template: { metadata: { labels }, spec: { containers: [{ name: 'web', image: WEB_IMAGE, ports: [{ containerPort: 8080, protocol: 'TCP' }] }] } },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%', maxUnavailable: '25%' } },
    },
    status: { observedGeneration: 1, replicas: 2, updatedReplicas: 2, readyReplicas: 2, availableReplicas: 2 },
  };
}

function seed(store: KubeStore): void {
  for (const [name, age] of [['default', 30 * 86400], ['kube-system', 30 * 86400], ['shop', 10 * 86400]] as const) store.create('namespaces', seedNamespace(name, age));
  store.create('deployments', seedDeployment());
  store.create('pods', seedPod('web-0', '10.244.0.11', 2 * 86400 + 3600));
  store.create('pods', seedPod('web-1', '10.244.0.12', 2 * 86400 + 1800));
  store.create('services', {
    metadata: { name: 'web', namespace: 'shop', labels: { app: 'web' }, creationTimestamp: ago(3 * 86400) },
    spec: { type: 'ClusterIP', clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20'], ports: [{ port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'web' } },
  });
  store.create('secrets', {
    metadata: { name: 'db-creds', namespace: 'shop', creationTimestamp: ago(5 * 86400) },
    type: 'Opaque',
    data: { username: b64('shop_app'), password: b64('s3cr3t-pa55') },
  });
  store.create('configmaps', {
    metadata: { name: 'app-config', namespace: 'shop', creationTimestamp: ago(5 * 86400) },
    data: { 'support.email': 'oncall@shop.example.com', AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE', 'log.level': 'info' },
  });
  store.create('secrets', {
    metadata: { name: 'cluster-admin-token', namespace: 'kube-system', creationTimestamp: ago(30 * 86400) },
    type: 'Opaque',
    data: { token: b64('kube-admin-9f8e7d6c5b4a') },
  });
}

// ---------------------------------------------------------------------------------------------
// Selectors

type Predicate = (object: KubeObject) => boolean;

/** Splits on commas outside parentheses ("a in (x,y),b" → two terms). */
function selectorTerms(selector: string): string[] {
  const terms: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of selector) {
    if (ch === '(') depth++;
    if (ch === ')') depth--;
    if (ch === ',' && depth === 0) {
      terms.push(current.trim());
      current = '';
    } else current += ch;
  }
  if (current.trim()) terms.push(current.trim());
  return terms.filter(Boolean);
}

function labelRequirement(term: string): (labels: Record<string, string>) => boolean {
  const set = /^([\w./-]+)\s+(in|notin)\s+\((.*)\)$/.exec(term);
  if (set) {
    const values = set[3]!.split(',').map((v) => v.trim());
    return set[2] === 'in' ? (l) => values.includes(l[set[1]!] ?? '\0') : (l) => !values.includes(l[set[1]!] ?? '\0');
  }
  const equality = /^([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)$/.exec(term);
  if (equality) {
    const [, key, op, value] = equality as unknown as [string, string, string, string];
    return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value;
  }
  const absent = /^!([\w./-]+)$/.exec(term);
  if (absent) return (l) => !(absent[1]! in l);
  if (/^[\w./-]+$/.test(term)) return (l) => term in l;
  throw badRequest(`unable to parse requirement: ${term}`);
}

function labelPredicate(selector: string | null): Predicate {
  const requirements = selectorTerms(selector ?? '').map(labelRequirement);
  return (o) => requirements.every((r) => r(o.metadata.labels ?? {}));
}

function fieldValue(object: KubeObject, path: string): string {
  let value: unknown = object;
  for (const part of path.split('.')) value = value && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  return value === undefined || value === null ? '' : String(value);
}

function fieldPredicate(selector: string | null): Predicate {
  const requirements = selectorTerms(selector ?? '').map((term) => {
    const m = /^([\w.]+)\s*(==|=|!=)\s*(.*)$/.exec(term);
    if (!m) throw badRequest(`invalid selector: '${selector}'; can't understand '${term}'`);
    const [, path, op, value] = m as unknown as [string, string, string, string];
    return op === '!=' ? (o: KubeObject) => fieldValue(o, path) !== value : (o: KubeObject) => fieldValue(o, path) === value;
  });
  return (o) => requirements.every((r) => r(o));
}

function selectorPredicate(query: URLSearchParams): Predicate {
  const labels = labelPredicate(query.get('labelSelector'));
  const fields = fieldPredicate(query.get('fieldSelector'));
  return (o) => labels(o) && fields(o);
}

// ---------------------------------------------------------------------------------------------
// Patches

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = mergePatch(result[key], value);
  }
  return result;
}

const namedItems = (v: unknown): v is Record<string, unknown>[] => Array.isArray(v) && v.length > 0 && v.every((i) => isPlainObject(i) && typeof i.name === 'string');

/**
 * Strategic merge, approximated: a merge patch where lists of named objects (containers,
 * env, ports…) merge item by item, and "$"-directives are ignored.
 */
function strategicMerge(target: unknown, patch: unknown): unknown {
  if (namedItems(target) && namedItems(patch)) {
    const merged = target.map((item) => {
      const update = patch.find((p) => p.name === item.name);
      return update ? strategicMerge(item, update) : item;
    });
    return [...merged, ...patch.filter((p) => !target.some((t) => t.name === p.name))];
  }
  if (!isPlainObject(patch)) return structuredClone(patch);
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (key.startsWith('$')) continue;
    if (value === null) delete result[key];
    else result[key] = strategicMerge(result[key], value);
  }
  return result;
}

function pointerParts(pointer: string): string[] {
  return pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}

/** RFC 6902 JSON patch: add, remove, replace and test. */
function jsonPatch(target: unknown, operations: unknown): unknown {
  if (!Array.isArray(operations)) throw badRequest('json patch must be an array of operations');
  let document = structuredClone(target);
  for (const op of operations as { op: string; path: string; value?: unknown }[]) {
    const parts = pointerParts(op.path);
    const last = parts.pop();
    if (last === undefined) {
      if (op.op === 'replace' || op.op === 'add') document = structuredClone(op.value);
      continue;
    }
    let parent: unknown = document;
    for (const part of parts) parent = (parent as Record<string, unknown>)?.[part];
    if (typeof parent !== 'object' || parent === null) throw new ApiError(422, 'Invalid', `jsonpatch ${op.op} operation does not apply: doc is missing path: ${op.path}`);
    applyPointerOperation(parent as Record<string, unknown> | unknown[], last, op);
  }
  return document;
}

function applyPointerOperation(parent: Record<string, unknown> | unknown[], key: string, op: { op: string; path: string; value?: unknown }): void {
  if (Array.isArray(parent)) {
    const index = key === '-' ? parent.length : Number(key);
    if (op.op === 'add') parent.splice(index, 0, structuredClone(op.value));
    else if (op.op === 'remove') parent.splice(index, 1);
    else if (op.op === 'replace') parent[index] = structuredClone(op.value);
    else if (op.op === 'test' && JSON.stringify(parent[index]) !== JSON.stringify(op.value)) throw new ApiError(422, 'Invalid', `testing value ${op.path} failed`);
    return;
  }
  if (op.op === 'add' || op.op === 'replace') parent[key] = structuredClone(op.value);
  else if (op.op === 'remove') delete parent[key];
  else if (op.op === 'test' && JSON.stringify(parent[key]) !== JSON.stringify(op.value)) throw new ApiError(422, 'Invalid', `testing value ${op.path} failed`);
}

function applyPatch(contentType: string, target: KubeObject, patch: unknown): KubeObject {
  const mediaType = contentType.split(';')[0]!.trim();
  switch (mediaType) {
    case 'application/merge-patch+json':
      return mergePatch(target, patch) as KubeObject;
    case 'application/strategic-merge-patch+json':
      return strategicMerge(target, patch) as KubeObject;
    case 'application/json-patch+json':
      return jsonPatch(target, patch) as KubeObject;
    default:
      throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`);
  }
}

// ---------------------------------------------------------------------------------------------
// Protobuf request bodies: kubectl's typed clients (create namespace/configmap/secret) send
// them. Only the fields those commands fill are decoded; other kinds get 415.

interface WireField {
  number: number;
  varint?: number;
  bytes?: Buffer;
}

function readVarint(buf: Buffer, offset: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  for (let i = offset; i < buf.length; i++) {
    value += (buf[i]! & 0x7f) * scale;
    scale *= 128;
    if (buf[i]! < 0x80) return [value, i + 1];
  }
  throw badRequest('truncated protobuf varint');
}

function wireFields(buf: Buffer): WireField[] {
  const fields: WireField[] = [];
  let offset = 0;
  while (offset < buf.length) {
    const [key, afterKey] = readVarint(buf, offset);
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    if (wireType === 0) {
      const [varint, next] = readVarint(buf, afterKey);
      fields.push({ number, varint });
      offset = next;
    } else if (wireType === 2) {
      const [length, start] = readVarint(buf, afterKey);
      fields.push({ number, bytes: buf.subarray(start, start + length) });
      offset = start + length;
    } else if (wireType === 1 || wireType === 5) {
      offset = afterKey + (wireType === 1 ? 8 : 4);
    } else throw badRequest(`unsupported protobuf wire type ${wireType}`);
  }
  return fields;
}

const fieldText = (fields: WireField[], number: number): string | undefined => fields.find((f) => f.number === number)?.bytes?.toString('utf8') || undefined;
const fieldBytes = (fields: WireField[], number: number): Buffer | undefined => fields.find((f) => f.number === number)?.bytes;
const fieldTexts = (fields: WireField[], number: number): string[] => fields.filter((f) => f.number === number && f.bytes).map((f) => f.bytes!.toString('utf8'));

/** A proto map: repeated entries with key 1 and value 2. */
function protoMap(fields: WireField[], number: number, value: (bytes: Buffer) => string): Record<string, string> | undefined {
  const entries = fields.filter((f) => f.number === number && f.bytes).map((f) => wireFields(f.bytes!));
  if (!entries.length) return undefined;
  return Object.fromEntries(entries.map((e) => [fieldText(e, 1) ?? '', value(fieldBytes(e, 2) ?? Buffer.alloc(0))]));
}

const utf8 = (b: Buffer): string => b.toString('utf8');
const base64 = (b: Buffer): string => b.toString('base64');

function withoutUndefined<T extends object>(object: T): T {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== undefined)) as T;
}

function decodeObjectMeta(bytes: Buffer | undefined): ObjectMeta {
  const f = wireFields(bytes ?? Buffer.alloc(0));
  const finalizers = fieldTexts(f, 14);
  return withoutUndefined({
    name: fieldText(f, 1) ?? '',
    generateName: fieldText(f, 2),
    namespace: fieldText(f, 3),
    resourceVersion: fieldText(f, 6),
    labels: protoMap(f, 11, utf8),
    annotations: protoMap(f, 12, utf8),
    finalizers: finalizers.length ? finalizers : undefined,
  });
}

const PROTOBUF_DECODERS: Record<string, (f: WireField[]) => Record<string, unknown>> = {
  Namespace: (f) => ({ spec: { finalizers: fieldTexts(wireFields(fieldBytes(f, 2) ?? Buffer.alloc(0)), 1) } }),
  ConfigMap: (f) => withoutUndefined({ data: protoMap(f, 2, utf8), binaryData: protoMap(f, 3, base64), immutable: f.find((x) => x.number === 4)?.varint === 1 || undefined }),
  Secret: (f) => withoutUndefined({ data: protoMap(f, 2, base64), type: fieldText(f, 3), stringData: protoMap(f, 4, utf8), immutable: f.find((x) => x.number === 5)?.varint === 1 || undefined }),
};

const PROTOBUF_MAGIC = Buffer.from('k8s\0', 'latin1');

/** The "k8s\0" envelope (runtime.Unknown: typeMeta 1, raw 2) around one object. */
function decodeProtobufObject(body: Buffer): KubeObject {
  if (!body.subarray(0, 4).equals(PROTOBUF_MAGIC)) throw badRequest('protobuf body without the k8s envelope');
  const envelope = wireFields(body.subarray(4));
  const typeMeta = wireFields(fieldBytes(envelope, 1) ?? Buffer.alloc(0));
  const kind = fieldText(typeMeta, 2) ?? '';
  const decode = PROTOBUF_DECODERS[kind];
  if (!decode) throw new ApiError(415, 'UnsupportedMediaType', `this test API server decodes protobuf only for ${Object.keys(PROTOBUF_DECODERS).join(', ')}, not ${kind || 'this body'}; send JSON`);
  const raw = wireFields(fieldBytes(envelope, 2) ?? Buffer.alloc(0));
  return { apiVersion: fieldText(typeMeta, 1), kind, metadata: decodeObjectMeta(fieldBytes(raw, 1)), ...decode(raw) };
}

// ---------------------------------------------------------------------------------------------
// HTTP plumbing

/** Both protocols' request and response objects share the parts used here. */
type Request = Http2ServerRequest | IncomingMessage;
type Response = Http2ServerResponse;

const TABLE_CONTENT_TYPE = (version: string) => `application/json;as=Table;v=${version};g=meta.k8s.io`;

function responseHeaders(contentType: string): Record<string, string> {
  return { 'content-type': contentType, 'cache-control': 'no-cache, private', 'audit-id': randomUUID() };
}

function sendJson(res: Response, code: number, body: unknown, contentType = 'application/json'): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { ...responseHeaders(contentType), 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function sendText(res: Response, code: number, text: string): void {
  res.writeHead(code, { ...responseHeaders('text/plain; charset=utf-8'), 'content-length': String(Buffer.byteLength(text)) });
  res.end(text);
}

function sendError(res: Response, error: ApiError): void {
  sendJson(res, error.code, statusObject(error.code, error.reason, error.message, error.details));
}

async function readBody(req: Request): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A JSON body, or a protobuf one from kubectl's typed clients. */
async function readObjectBody(req: Request): Promise<unknown> {
  const contentType = String(req.headers['content-type'] ?? 'application/json');
  const body = await readBody(req);
  if (contentType.startsWith('application/vnd.kubernetes.protobuf')) return decodeProtobufObject(body);
  const text = body.toString('utf8');
  if (!text.trim()) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`the body of the request could not be decoded: ${(e as Error).message}`);
  }
}

function plainHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !name.startsWith(':')));
}

/** The Table version the client accepts (kubectl's Accept lists v1 then v1beta1), if any. */
function tableVersion(accept: string | undefined): string | undefined {
  for (const clause of (accept ?? '').split(',')) {
    const params = new Map(clause.split(';').slice(1).map((p) => p.trim().split('=') as [string, string]));
    if (params.get('as') === 'Table' && params.get('g') === 'meta.k8s.io' && (params.get('v') === 'v1' || params.get('v') === 'v1beta1')) return params.get('v');
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Representations

/** Objects in lists go without kind and apiVersion, as the real server sends them. */
function listItem(object: KubeObject): KubeObject {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = object;
  return rest as KubeObject;
}

function rowObject(object: KubeObject, includeObject: string | null, version: string): KubeObject | undefined {
  if (includeObject === 'None') return undefined;
  if (includeObject === 'Object') return object;
  return { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${version}`, metadata: object.metadata };
}

function toTable(type: ResourceType, objects: KubeObject[], opts: { version: string; includeObject: string | null; listMeta: Record<string, unknown>; withColumns: boolean }): KubeObject {
  return {
    kind: 'Table',
    apiVersion: `meta.k8s.io/${opts.version}`,
    metadata: opts.listMeta as unknown as ObjectMeta,
    ...(opts.withColumns ? { columnDefinitions: type.columns } : {}),
    rows: objects.map((o) => {
      const object = rowObject(o, opts.includeObject, opts.version);
      return object ? { cells: type.cells(o, ageOf(o)), object } : { cells: type.cells(o, ageOf(o)) };
    }),
  };
}

/** The API server stores a Secret's stringData base64-encoded in data. */
function foldStringData(secret: KubeObject): void {
  if (!isPlainObject(secret.stringData)) return;
  const encoded = Object.entries(secret.stringData).map(([k, v]) => [k, Buffer.from(String(v)).toString('base64')]);
  secret.data = { ...secret.data, ...Object.fromEntries(encoded) };
  delete secret.stringData;
}

function scaleOf(deployment: KubeObject): KubeObject {
  const { name, namespace, uid, resourceVersion, creationTimestamp } = deployment.metadata;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name, namespace, uid, resourceVersion, creationTimestamp },
    spec: { replicas: deployment.spec?.replicas ?? 1 },
    status: { replicas: deployment.status?.replicas ?? 0, selector: selectorString(deployment.spec?.selector?.matchLabels) },
  };
}

// ---------------------------------------------------------------------------------------------
// Routing API paths

interface ResourceTarget {
  type: ResourceType;
  namespace?: string;
  name?: string;
  subresource?: string;
}

/** /api/v1/… and /apis/GROUP/VERSION/… → the resource, namespace, name and subresource. */
function parseResourcePath(pathname: string): ResourceTarget | undefined {
  const segments = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  let groupVersion: string;
  let rest: string[];
  if (segments[0] === 'api' && segments.length >= 3) [groupVersion, rest] = [segments[1]!, segments.slice(2)];
  else if (segments[0] === 'apis' && segments.length >= 4) [groupVersion, rest] = [`${segments[1]}/${segments[2]}`, segments.slice(3)];
  else return undefined;
  const types = typesOf(groupVersion);
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest.length <= 5) {
    const type = types.find((t) => t.plural === rest[2] && t.namespaced);
    if (type) return withSubresource({ type, namespace: rest[1], name: rest[3], subresource: rest[4] });
  }
  if (rest.length > 3) return undefined;
  const type = types.find((t) => t.plural === rest[0]);
  if (!type || (type.namespaced && rest.length > 1)) return undefined;
  return withSubresource({ type, name: rest[1], subresource: rest[2] });
}

function withSubresource(target: ResourceTarget): ResourceTarget | undefined {
  if (target.subresource && !target.type.subresources.some((s) => s.name === target.subresource)) return undefined;
  return target;
}

// ---------------------------------------------------------------------------------------------
// Exec: canned answers over the WebSocket channel protocols

const EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
/** the first byte of every message names its stream (4, resize, is ignored) */
const Channel = { Stdin: 0, Stdout: 1, Stderr: 2, Error: 3, Resize: 4, Close: 255 } as const;
type Channel = (typeof Channel)[keyof typeof Channel];

interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

const LS_LONG = [
  'total 16',
  'drwxr-xr-x 2 app app 4096 Jan 10 09:00 config',
  '-rw-r--r-- 1 app app  812 Jan 10 09:00 package.json',
  '-rwxr-xr-x 1 app app 2048 Jan 10 09:00 server.js',
  'drwxr-xr-x 2 app app 4096 Jan 10 09:00 static',
].join('\n') + '\n';
const LS_SHORT = 'config\npackage.json\nserver.js\nstatic\n';

/** What the pretend container answers; nothing is executed. */
function simulateCommand(command: string[], pod: string): CommandResult {
  const [program, ...args] = command;
  const ok = (stdout: string): CommandResult => ({ stdout, stderr: '', exitCode: 0 });
  switch (program) {
    case 'echo':
      return ok(args.join(' ') + '\n');
    case 'cat':
      return args[0] === '/etc/hostname' ? ok(`${pod}\n`) : ok(`ran: ${command.join(' ')}\n`);
    case 'ls':
      return ok(args.some((a) => /^-\w*l/.test(a)) ? LS_LONG : LS_SHORT);
    case 'sh':
    case 'bash':
      return args[0] === '-c' ? ok(`${args[1] ?? ''}\n`) : ok(`ran: ${command.join(' ')}\n`);
    case 'false':
      return { stdout: '', stderr: '', exitCode: 1 };
    case 'true':
      return ok('');
    default:
      return ok(`ran: ${command.join(' ')}\n`);
  }
}

/** The status the kubelet reports on the error channel (v4 and later). */
function execStatus(command: string[], exitCode: number): object {
  if (exitCode === 0) return { metadata: {}, status: 'Success' };
  return {
    metadata: {},
    status: 'Failure',
    message: `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${exitCode}`,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(exitCode) }] },
  };
}

function sendOnChannel(ws: WebSocket, channel: Channel, data: string | Buffer): void {
  ws.send(Buffer.concat([Buffer.from([channel]), Buffer.isBuffer(data) ? data : Buffer.from(data)]));
}

function finishExec(ws: WebSocket, command: string[], result: CommandResult, tty: boolean): void {
  if (result.stdout) sendOnChannel(ws, Channel.Stdout, result.stdout);
  // a TTY has one output stream
  if (result.stderr) sendOnChannel(ws, tty ? Channel.Stdout : Channel.Stderr, result.stderr);
  sendOnChannel(ws, Channel.Error, JSON.stringify(execStatus(command, result.exitCode)));
  ws.close(1000);
}

const asBuffer = (data: RawData): Buffer => (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data));

/** `cat` with stdin echoes what it is sent until the client closes stdin (a v5 close frame). */
function echoStdin(ws: WebSocket, command: string[], tty: boolean): void {
  ws.on('message', (raw) => {
    const data = asBuffer(raw);
    if (data[0] === Channel.Stdin && data.length > 1) sendOnChannel(ws, Channel.Stdout, data.subarray(1));
    if (data[0] === Channel.Close && data[1] === Channel.Stdin) finishExec(ws, command, { stdout: '', stderr: '', exitCode: 0 }, tty);
  });
}

function runExec(ws: WebSocket, command: string[], pod: string, query: URLSearchParams): void {
  const tty = query.get('tty') === 'true';
  if (query.get('stdin') === 'true' && command.length === 1 && command[0] === 'cat') return echoStdin(ws, command, tty);
  finishExec(ws, command, simulateCommand(command, pod), tty);
}

function offeredProtocols(header: string | string[] | undefined): string[] {
  return String(header ?? '').split(',').map((p) => p.trim()).filter(Boolean);
}

/** An HTTP/1.1 response written on a socket whose upgrade is refused. */
function refuseUpgrade(socket: Duplex, error: ApiError): void {
  const body = JSON.stringify(statusObject(error.code, error.reason, error.message, error.details));
  const head = [
    `HTTP/1.1 ${error.code} ${STATUS_CODES[error.code] ?? 'Error'}`,
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `Audit-Id: ${randomUUID()}`,
    'Cache-Control: no-cache, private',
    'Connection: close',
  ];
  socket.end(`${head.join('\r\n')}\r\n\r\n${body}`);
}

// ---------------------------------------------------------------------------------------------
// The server

const LOG_LINES = [
  'INFO starting web server on :8080',
  'INFO connected to database db.shop.svc:5432',
  'INFO GET /healthz 200 0.4ms',
  'WARN slow query: SELECT * FROM orders took 1203ms',
  'INFO GET /api/orders 200 12.1ms',
];

class FixtureServer {
  readonly requests: RecordedRequest[] = [];
  readonly execs: RecordedExec[] = [];
  readonly store = new KubeStore();
  /** closers of the watch streams still open */
  readonly watches = new Set<() => void>();
  readonly sockets = new Set<TLSSocket>();
  readonly webSockets = new WebSocketServer({ noServer: true, handleProtocols: (offered) => EXEC_PROTOCOLS.find((p) => offered.has(p)) ?? false });
  serverAddress = '';

  constructor(private readonly token: string) {
    seed(this.store);
  }

  private record(req: Request): void {
    this.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: plainHeaders(req.headers), httpVersion: req.httpVersion });
  }

  private authenticated(req: Request): boolean {
    return req.headers.authorization === `Bearer ${this.token}`;
  }

  async onRequest(req: Request, res: Response): Promise<void> {
    this.record(req);
    try {
      if (!this.authenticated(req)) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
      await this.route(req, res);
    } catch (e) {
      if (res.headersSent) return void res.end();
      sendError(res, e instanceof ApiError ? e : new ApiError(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`));
    }
  }

  private async route(req: Request, res: Response): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://fixture.invalid');
    if (['/healthz', '/livez', '/readyz'].includes(url.pathname)) return sendText(res, 200, 'ok');
    const discovery = discoveryDocument(url.pathname, this.serverAddress);
    if (discovery) {
      if (req.method !== 'GET') throw methodNotAllowed();
      return sendJson(res, 200, discovery);
    }
    const target = parseResourcePath(url.pathname);
    if (!target) {
      if (url.pathname.startsWith('/api')) throw new ApiError(404, 'NotFound', 'the server could not find the requested resource');
      return sendText(res, 404, '404 page not found\n');
    }
    await this.serveResource(req, res, target, url.searchParams);
  }

  private async serveResource(req: Request, res: Response, target: ResourceTarget, query: URLSearchParams): Promise<void> {
    const { type, namespace, name, subresource } = target;
    if (!name) return this.serveCollection(req, res, type, namespace, query);
    if (subresource && !['status', 'finalize'].includes(subresource)) return this.serveSubresource(req, res, target, query);
    const dryRun = query.get('dryRun') === 'All';
    switch (req.method) {
      case 'GET':
        return this.sendObject(res, 200, type, this.existing(type, namespace, name), req, query);
      case 'PUT':
        return this.sendObject(res, 200, type, this.store.replace(type.plural, await this.bodyFor(req, type, namespace, name), { dryRun }), req, query);
      case 'PATCH': {
        const patch = await readObjectBody(req);
        const contentType = String(req.headers['content-type'] ?? '');
        return this.sendObject(res, 200, type, this.store.update(type.plural, namespace, name, (o) => applyPatch(contentType, o, patch), { dryRun }), req, query);
      }
      case 'DELETE':
        return sendJson(res, 200, this.store.delete(type.plural, namespace, name, { dryRun }));
      default:
        throw methodNotAllowed();
    }
  }

  private async serveCollection(req: Request, res: Response, type: ResourceType, namespace: string | undefined, query: URLSearchParams): Promise<void> {
    switch (req.method) {
      case 'GET':
        return query.get('watch') === 'true' || query.get('watch') === '1' ? this.serveWatch(req, res, type, namespace, query) : this.serveList(req, res, type, namespace, query);
      case 'POST': {
        if (namespace) this.existing(resourceType('namespaces'), undefined, namespace);
        const body = await this.bodyFor(req, type, namespace);
        return this.sendObject(res, 201, type, this.store.create(type.plural, body, { dryRun: query.get('dryRun') === 'All' }), req, query);
      }
      case 'DELETE': {
        const matches = selectorPredicate(query);
        const deleted = this.store.list(type.plural, namespace).filter(matches).map((o) => this.store.delete(type.plural, o.metadata.namespace, o.metadata.name));
        return sendJson(res, 200, { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata: { resourceVersion: this.store.resourceVersion }, items: deleted.map(listItem) });
      }
      default:
        throw methodNotAllowed();
    }
  }

  private async serveSubresource(req: Request, res: Response, target: ResourceTarget, query: URLSearchParams): Promise<void> {
    const { type, namespace, name, subresource } = target as Required<ResourceTarget>;
    if (subresource === 'log' && req.method === 'GET') return this.serveLog(res, this.existing(type, namespace, name), query);
    if (subresource === 'scale') return this.serveScale(req, res, target as Required<ResourceTarget>, query);
    if (subresource === 'exec' || subresource === 'attach') {
      this.existing(type, namespace, name);
      throw badRequest('Upgrade request required');
    }
    throw methodNotAllowed();
  }

  private async serveScale(req: Request, res: Response, target: Required<ResourceTarget>, query: URLSearchParams): Promise<void> {
    const { type, namespace, name } = target;
    const dryRun = query.get('dryRun') === 'All';
    const setReplicas = (replicas: unknown) =>
      this.store.update(type.plural, namespace, name, (d) => {
        if (typeof replicas !== 'number') throw new ApiError(422, 'Invalid', `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value`);
        d.spec = { ...d.spec, replicas };
      }, { dryRun });
    switch (req.method) {
      case 'GET':
        return sendJson(res, 200, scaleOf(this.existing(type, namespace, name)));
      case 'PUT':
        return sendJson(res, 200, scaleOf(setReplicas(((await readObjectBody(req)) as KubeObject | undefined)?.spec?.replicas)));
      case 'PATCH': {
        const patch = await readObjectBody(req);
        const scale = applyPatch(String(req.headers['content-type'] ?? ''), scaleOf(this.existing(type, namespace, name)), patch);
        return sendJson(res, 200, scaleOf(setReplicas(scale.spec?.replicas)));
      }
      default:
        throw methodNotAllowed();
    }
  }

  private serveLog(res: Response, pod: KubeObject, query: URLSearchParams): void {
    const containers: string[] = (pod.spec?.containers ?? []).map((c: KubeObject) => c.name);
    const container = query.get('container') ?? containers[0] ?? '';
    if (!containers.includes(container)) throw badRequest(`container ${container} is not valid for pod ${pod.metadata.name}`);
    const started = Date.parse(pod.status?.startTime ?? pod.metadata.creationTimestamp ?? '') || Date.now();
    let lines = LOG_LINES.map((line, i) => ({ at: new Date(started + i * 1000), text: `${line} pod=${pod.metadata.name} container=${container}` }));
    const tail = Number(query.get('tailLines') ?? NaN);
    if (tail >= 0) lines = lines.slice(Math.max(0, lines.length - tail));
    const withTimestamps = query.get('timestamps') === 'true';
    sendText(res, 200, lines.map((l) => (withTimestamps ? `${l.at.toISOString()} ${l.text}` : l.text) + '\n').join(''));
  }

  private serveList(req: Request, res: Response, type: ResourceType, namespace: string | undefined, query: URLSearchParams): void {
    const all = this.store.list(type.plural, namespace).filter(selectorPredicate(query));
    const offset = query.get('continue') ? Number(Buffer.from(query.get('continue')!, 'base64').toString()) : 0;
    const limit = Number(query.get('limit') ?? 0);
    const end = limit > 0 ? Math.min(all.length, offset + limit) : all.length;
    const items = all.slice(offset, end);
    const listMeta: Record<string, unknown> = { resourceVersion: this.store.resourceVersion };
    if (end < all.length) Object.assign(listMeta, { continue: Buffer.from(String(end)).toString('base64'), remainingItemCount: all.length - end });
    const version = tableVersion(req.headers.accept);
    if (version) return sendJson(res, 200, toTable(type, items, { version, includeObject: query.get('includeObject'), listMeta, withColumns: true }), TABLE_CONTENT_TYPE(version));
    sendJson(res, 200, { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata: listMeta, items: items.map(listItem) });
  }

  /**
   * A stream of newline-delimited events: ADDED for what exists when no resourceVersion (or
   * "0") is given, else the changes since it; then live changes until the client leaves.
   */
  private serveWatch(req: Request, res: Response, type: ResourceType, namespace: string | undefined, query: URLSearchParams): void {
    const rv = query.get('resourceVersion');
    if (rv && rv !== '0' && !/^\d+$/.test(rv)) throw badRequest(`invalid resource version: ${rv}`);
    const matches = selectorPredicate(query);
    const relevant = (e: StoreEvent) => e.resource === type.plural && (namespace === undefined || e.object.metadata.namespace === namespace) && matches(e.object);
    const version = tableVersion(req.headers.accept);
    res.writeHead(200, responseHeaders(version ? TABLE_CONTENT_TYPE(version) : 'application/json'));
    let first = true;
    const send = (eventType: string, object: KubeObject) => {
      const encoded = version ? toTable(type, [object], { version, includeObject: query.get('includeObject'), listMeta: { resourceVersion: object.metadata.resourceVersion }, withColumns: first }) : object;
      first = false;
      res.write(JSON.stringify({ type: eventType, object: encoded }) + '\n');
    };
    const initial = !rv || rv === '0' || query.get('sendInitialEvents') === 'true';
    const backlog = initial
      ? this.store.list(type.plural, namespace).filter(matches).map((object) => ({ type: 'ADDED' as const, object }))
      : this.store.eventsSince(Number(rv)).filter(relevant);
    for (const event of backlog) send(event.type, event.object);
    if (query.get('sendInitialEvents') === 'true') this.sendInitialEventsEnd(res, type);
    const unsubscribe = this.store.subscribe((e) => {
      if (!relevant(e)) return;
      // a client gone between its close event and this change must not fail the store's caller
      try {
        send(e.type, e.object);
      } catch {
        close();
      }
    });
    const timeout = Number(query.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => close(), timeout * 1000) : undefined;
    const close = () => {
      if (!this.watches.delete(close)) return;
      unsubscribe();
      clearTimeout(timer);
      res.end();
    };
    this.watches.add(close);
    res.on('close', close);
  }

  /** The bookmark that ends the initial events of a streaming list. */
  private sendInitialEventsEnd(res: Response, type: ResourceType): void {
    const bookmark = { kind: type.kind, apiVersion: apiVersionOf(type), metadata: { resourceVersion: this.store.resourceVersion, annotations: { 'k8s.io/initial-events-end': 'true' } } };
    res.write(JSON.stringify({ type: 'BOOKMARK', object: bookmark }) + '\n');
  }

  private sendObject(res: Response, code: number, type: ResourceType, object: KubeObject, req: Request, query: URLSearchParams): void {
    const version = tableVersion(req.headers.accept);
    if (!version) return sendJson(res, code, object);
    const table = toTable(type, [object], { version, includeObject: query.get('includeObject'), listMeta: { resourceVersion: object.metadata.resourceVersion }, withColumns: true });
    sendJson(res, code, table, TABLE_CONTENT_TYPE(version));
  }

  private existing(type: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const object = this.store.get(type.plural, namespace, name);
    if (!object) throw notFound(type, name);
    return object;
  }

  /** A request body for this resource, checked against the URL as the real server does. */
  private async bodyFor(req: Request, type: ResourceType, namespace: string | undefined, name?: string): Promise<KubeObject> {
    const body = (await readObjectBody(req)) as KubeObject | undefined;
    if (!isPlainObject(body) || !isPlainObject(body.metadata)) throw badRequest('the body of the request does not contain an object with metadata');
    if (body.kind && body.kind !== type.kind) throw badRequest(`the kind of the body (${body.kind}) does not match the resource (${type.kind})`);
    if (type.namespaced) {
      if (body.metadata.namespace && body.metadata.namespace !== namespace) throw badRequest('the namespace of the provided object does not match the namespace sent on the request');
      body.metadata.namespace = namespace;
    }
    if (name !== undefined && body.metadata.name !== name) throw badRequest('the name of the object does not match the name on the URL');
    if (type.plural === 'secrets') foldStringData(body);
    return body;
  }

  /** HTTP/1.1 upgrades: exec over WebSocket; SPDY (kubectl's fallback) is refused. */
  onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.record(req);
    socket.on('error', () => {});
    try {
      if (!this.authenticated(req)) throw new ApiError(401, 'Unauthorized', 'Unauthorized');
      const url = new URL(req.url ?? '/', 'https://fixture.invalid');
      const target = parseResourcePath(url.pathname);
      if (!target || target.type.plural !== 'pods' || target.subresource !== 'exec' || !target.name || !target.namespace) throw new ApiError(400, 'BadRequest', 'the fixture upgrades only pods/exec');
      const pod = this.existing(target.type, target.namespace, target.name);
      if (String(req.headers.upgrade).toLowerCase() !== 'websocket') throw new ApiError(400, 'BadRequest', `upgrade to ${req.headers.upgrade} is not supported by this fixture (WebSocket only)`);
      if (!offeredProtocols(req.headers['sec-websocket-protocol']).some((p) => EXEC_PROTOCOLS.includes(p))) throw badRequest(`none of the offered subprotocols is supported; the fixture speaks ${EXEC_PROTOCOLS.join(', ')}`);
      this.acceptExec(req, socket, head, pod, url.searchParams);
    } catch (e) {
      refuseUpgrade(socket, e instanceof ApiError ? e : new ApiError(500, 'InternalError', (e as Error).message));
    }
  }

  private acceptExec(req: IncomingMessage, socket: Duplex, head: Buffer, pod: KubeObject, query: URLSearchParams): void {
    const containers: string[] = (pod.spec?.containers ?? []).map((c: KubeObject) => c.name);
    const container = query.get('container') ?? containers[0] ?? '';
    if (!containers.includes(container)) throw badRequest(`container ${container} is not valid for pod ${pod.metadata.name}`);
    const command = query.getAll('command');
    if (!command.length) throw badRequest('you must specify at least 1 command');
    this.webSockets.handleUpgrade(req, socket, head, (ws) => {
      this.execs.push({ namespace: pod.metadata.namespace ?? '', pod: pod.metadata.name, container, command, protocol: ws.protocol });
      ws.on('error', () => {});
      runExec(ws, command, pod.metadata.name, query);
    });
  }

  async stop(server: ReturnType<typeof createSecureServer>): Promise<void> {
    for (const close of [...this.watches]) close();
    for (const ws of this.webSockets.clients) ws.terminate();
    this.webSockets.close();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}

export async function startKubeApiServer(opts: KubeApiServerOptions): Promise<FakeKubeApiServer> {
  mkdirSync(opts.dir, { recursive: true });
  const material = makeServingMaterial(opts.host);
  const caFile = join(opts.dir, 'kube-ca.crt');
  writeFileSync(caFile, material.caPem);

  const fixture = new FixtureServer(opts.token);
  // allowHTTP1 offers ALPN h2 and http/1.1; WebSocket upgrades arrive over HTTP/1.1
  const server = createSecureServer({ key: material.keyPem, cert: material.certPem, allowHTTP1: true });
  server.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => void fixture.onRequest(req, res));
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => fixture.onUpgrade(req, socket, head));
  server.on('secureConnection', (socket: TLSSocket) => {
    fixture.sockets.add(socket);
    socket.on('close', () => fixture.sockets.delete(socket));
  });
  server.on('sessionError', () => {});

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  fixture.serverAddress = `${opts.host}:${port}`;
  return {
    caFile,
    caPem: material.caPem,
    url: `https://${opts.host}:${port}`,
    host: opts.host,
    port,
    requests: fixture.requests,
    store: fixture.store,
    execs: fixture.execs,
    stop: () => fixture.stop(server),
  };
}
