/**
 * What a Kubernetes API request asks for, read from its method and URL the way the API server's
 * own RequestInfoFactory reads it, so that the proxy decides on exactly what the server will
 * authorise and serve. Pure.
 *
 *   /api/v1/namespaces/shop/pods/web/log        get of pods/log "web" in namespace shop
 *   /apis/apps/v1/namespaces/shop/deployments   list (GET), watch (GET ?watch=true), create (POST), deletecollection (DELETE)
 *   /api/v1/namespaces/shop                     the namespace object: resource namespaces, name shop, namespace shop
 *   /api/v1/watch/namespaces/shop/pods          the legacy watch prefix
 *   /version, /api, /apis/apps/v1, /openapi/…   non-resource URLs: the verb is the lower-cased method
 *
 * Verbs come from the method: GET/HEAD get (list or watch without a name), POST create, PUT
 * update, PATCH patch, DELETE delete (deletecollection without a name). Connect subresources
 * (exec, attach, portforward, proxy) keep the method's verb, as the server reports them.
 *
 * The proxy forwards the URL as the agent wrote it, so anything the server could read otherwise
 * than this module does is reported in `invalid` for the proxy to refuse: a path that is not
 * clean (empty, "." or ".." segments), an encoded slash, a malformed escape or a NUL, a query the
 * server would read differently (a raw ";"), methods the API does not serve, and the legacy
 * /proxy/ prefix.
 */

export interface RequestInfo {
  isResourceRequest: boolean;
  /** the percent-decoded path */
  path: string;
  /** get, list, watch, create, update, patch, delete, deletecollection; the lower-cased method for non-resource URLs */
  verb: string;
  apiPrefix?: 'api' | 'apis';
  /** "" for the core group */
  apiGroup: string;
  apiVersion: string;
  /** "" for cluster-scoped requests and for lists across all namespaces */
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  /** resource requests: the path from the resource on (resource, name, subresource, …) */
  parts: string[];
  /** exec: the command from the repeated `command` query parameters */
  command?: string[];
  /** portforward: the `ports` query parameters */
  ports?: string[];
  /** exec, attach: the container asked for, if any */
  container?: string;
  stdin?: boolean;
  tty?: boolean;
  /** why the proxy must refuse this request; the other fields are then only indicative */
  invalid?: string;
}

type Query = Map<string, string[]>;

const API_PREFIXES = new Set(['api', 'apis']);
/** subresources of a namespace itself: /api/v1/namespaces/NAME/status is not a resource named "status" */
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);
const METHOD_VERBS: Record<string, string> = { GET: 'get', HEAD: 'get', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' };
/** the characters a request target may hold as written: visible ASCII, no '#' (no fragments in a request) */
const REQUEST_TARGET = /^[\x21\x22\x24-\x7e]*$/;

export function requestInfo(method: string, url: string): RequestInfo {
  const q = url.indexOf('?');
  const rawPath = q < 0 ? url : url.slice(0, q);
  const rawQuery = q < 0 ? '' : url.slice(q + 1);
  const info: RequestInfo = {
    isResourceRequest: false,
    path: rawPath,
    verb: method.toLowerCase(),
    apiGroup: '',
    apiVersion: '',
    namespace: '',
    resource: '',
    subresource: '',
    name: '',
    parts: [],
  };
  if (!REQUEST_TARGET.test(url)) return refuse(info, 'the URL holds characters a request target may not (spaces, controls, non-ASCII or "#")');
  const decoded = decodePath(rawPath);
  if ('error' in decoded) return refuse(info, decoded.error);
  info.path = decoded.path;
  const query = parseQuery(rawQuery);
  if ('error' in query) return refuse(info, query.error);
  return readResource(info, method, decoded.segments, query.params);
}

/** The API's URL forms, after the server's RequestInfoFactory; anything else is a non-resource URL. */
function readResource(info: RequestInfo, method: string, segments: string[], query: Query): RequestInfo {
  if (segments.length < 3 || !API_PREFIXES.has(segments[0])) return info;
  const apiPrefix = segments[0] as 'api' | 'apis';
  let rest = segments.slice(1);
  let apiGroup = '';
  // /apis/GROUP/VERSION and shorter are discovery, not resources
  if (apiPrefix === 'apis') {
    if (rest.length < 3) return info;
    apiGroup = rest[0];
    rest = rest.slice(1);
  }
  Object.assign(info, { isResourceRequest: true, apiPrefix, apiGroup, apiVersion: rest[0] });
  rest = rest.slice(1);

  let verb: string;
  if (rest[0] === 'watch' || rest[0] === 'proxy') {
    if (rest[0] === 'proxy') return refuse(info, 'the legacy /proxy/ path prefix is not served (use the proxy subresource)');
    if (rest.length < 2) return refuse(info, 'a watch path must name a resource');
    if (METHOD_VERBS[method] !== 'get') return refuse(info, `the legacy /watch/ path serves GET, not ${method}`);
    verb = 'watch';
    rest = rest.slice(1);
  } else {
    const byMethod = METHOD_VERBS[method];
    if (!byMethod) return refuse(info, `method ${method} is not served for API resources`);
    verb = byMethod;
  }

  if (rest[0] === 'namespaces' && rest.length > 1) {
    info.namespace = rest[1];
    // /namespaces/NS/RESOURCE/…: the namespace scopes a resource of its own
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2])) rest = rest.slice(2);
  }
  info.parts = rest;
  info.resource = rest[0] ?? '';
  info.name = rest[1] ?? '';
  info.subresource = rest[2] ?? '';

  // a GET without a name reads a collection: list, or watch when asked
  if (!info.name && verb === 'get') {
    verb = flag(query, 'watch') ? 'watch' : 'list';
    // the server takes an exact name selector as the object's name (kubectl get pod NAME --watch)
    const selector = query.get('fieldSelector')?.[0];
    const selected = selector === undefined ? undefined : exactNameSelector(selector);
    if (selected) info.name = selected;
  }
  if (!info.name && verb === 'delete') verb = 'deletecollection';
  info.verb = verb;

  if (apiGroup === '' && info.resource === 'pods') readConnectOptions(info, query);
  return info;
}

/** The options of pods/exec, pods/attach and pods/portforward, as the server decodes them. */
function readConnectOptions(info: RequestInfo, query: Query): void {
  const sub = info.subresource;
  if (sub === 'exec' || sub === 'attach') {
    if (sub === 'exec') info.command = query.get('command') ?? [];
    const container = query.get('container')?.[0];
    if (container !== undefined) info.container = container;
    info.stdin = flag(query, 'stdin');
    info.tty = flag(query, 'tty');
  } else if (sub === 'portforward') {
    info.ports = query.get('ports') ?? [];
  }
}

/** A boolean query parameter as the API server converts it: present and its first value not "0" or "false". */
function flag(query: Query, key: string): boolean {
  const values = query.get(key);
  if (!values || values.length === 0) return false;
  const v = values[0].toLowerCase();
  return v !== 'false' && v !== '0';
}

/**
 * The name in a field selector that requires `metadata.name=NAME` (or `==`); other terms only
 * narrow the list further. Escaped or unusual selectors give no name: the request then stays a
 * read of the whole collection, the cautious reading.
 */
function exactNameSelector(selector: string): string | undefined {
  if (selector.includes('\\')) return undefined;
  for (const term of selector.split(',')) {
    const m = /^metadata\.name==?([^=!,\s/%]+)$/.exec(term);
    if (m && m[1] !== '.' && m[1] !== '..') return m[1];
  }
  return undefined;
}

/**
 * The path's segments, percent-decoded, or why the path is refused. A trailing slash is
 * accepted (the server trims it too); every other empty segment, "." and "..", an encoded
 * slash and a NUL are not: the server or anything between it and the proxy could resolve them
 * otherwise.
 */
function decodePath(raw: string): { path: string; segments: string[] } | { error: string } {
  if (!raw.startsWith('/')) return { error: 'the request target is not an absolute path' };
  const rawSegments = raw.slice(1).split('/');
  if (rawSegments[rawSegments.length - 1] === '') rawSegments.pop();
  const segments: string[] = [];
  for (const s of rawSegments) {
    if (s === '') return { error: 'the path has an empty segment ("//")' };
    let d: string;
    try {
      d = decodeURIComponent(s);
    } catch {
      return { error: `the path segment "${s}" has a malformed percent-encoding` };
    }
    if (d === '.' || d === '..') return { error: `the path has a "${d}" segment (paths must be clean)` };
    if (d.includes('/')) return { error: `the path segment "${s}" holds an encoded slash` };
    if (d.includes('\0')) return { error: `the path segment "${s}" holds a NUL` };
    segments.push(d);
  }
  const trailing = raw.length > 1 && raw.endsWith('/') ? '/' : '';
  return { path: `/${segments.join('/')}${trailing}`, segments };
}

/**
 * Query parameters as the server's Go code reads them: pairs split on "&", "+" for a space. Go
 * drops a pair holding a raw ";" or a bad escape without a word; such a query is refused
 * instead, so that the proxy never judges a parameter the server would not see.
 */
function parseQuery(raw: string): { params: Query } | { error: string } {
  const params: Query = new Map();
  if (raw === '') return { params };
  for (const pair of raw.split('&')) {
    if (pair === '') continue;
    if (pair.includes(';')) return { error: 'the query holds a raw ";" (write it %3B)' };
    const eq = pair.indexOf('=');
    const key = decodeQueryPart(eq < 0 ? pair : pair.slice(0, eq));
    const value = decodeQueryPart(eq < 0 ? '' : pair.slice(eq + 1));
    if (key === undefined || value === undefined) return { error: `the query parameter "${pair}" has a malformed percent-encoding` };
    if (key.includes('\0') || value.includes('\0')) return { error: `the query parameter "${pair}" holds a NUL` };
    const values = params.get(key);
    if (values) values.push(value);
    else params.set(key, [value]);
  }
  return { params };
}

function decodeQueryPart(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

function refuse(info: RequestInfo, why: string): RequestInfo {
  info.invalid = why;
  return info;
}
