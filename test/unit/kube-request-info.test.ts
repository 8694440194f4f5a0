import { describe, expect, it } from 'vitest';
import { requestInfo, type RequestInfo } from '../../src/protocols/kubernetes/request-info.js';

type Expected = Partial<RequestInfo>;

/** [what kubectl does, method, URL, the fields expected] */
const RESOURCE_REQUESTS: [string, string, string, Expected][] = [
  ['get pods', 'GET', '/api/v1/namespaces/shop/pods?limit=500',
    { verb: 'list', apiPrefix: 'api', apiGroup: '', apiVersion: 'v1', namespace: 'shop', resource: 'pods', name: '', subresource: '', parts: ['pods'] }],
  ['get pods -A', 'GET', '/api/v1/pods?limit=500', { verb: 'list', namespace: '', resource: 'pods', name: '' }],
  ['get pod web-0', 'GET', '/api/v1/namespaces/shop/pods/web-0', { verb: 'get', namespace: 'shop', resource: 'pods', name: 'web-0', parts: ['pods', 'web-0'] }],
  ['HEAD of a pod', 'HEAD', '/api/v1/namespaces/shop/pods/web-0', { verb: 'get', name: 'web-0' }],
  ['get deploy -n shop', 'GET', '/apis/apps/v1/namespaces/shop/deployments?limit=500',
    { verb: 'list', apiPrefix: 'apis', apiGroup: 'apps', apiVersion: 'v1', namespace: 'shop', resource: 'deployments' }],
  ['get pods -w', 'GET', '/api/v1/namespaces/shop/pods?resourceVersion=1&watch=true', { verb: 'watch', resource: 'pods' }],
  ['watch=1', 'GET', '/api/v1/namespaces/shop/pods?watch=1', { verb: 'watch' }],
  ['watch=false', 'GET', '/api/v1/namespaces/shop/pods?watch=false', { verb: 'list' }],
  ['watch=0', 'GET', '/api/v1/namespaces/shop/pods?watch=0', { verb: 'list' }],
  ['watch= (any other value is true, as the server converts it)', 'GET', '/api/v1/namespaces/shop/pods?watch=', { verb: 'watch' }],
  ['watch=FALSE', 'GET', '/api/v1/namespaces/shop/pods?watch=FALSE', { verb: 'list' }],
  ['get pod web-0 -w (an exact name selector names the object)', 'GET',
    '/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-0&watch=true', { verb: 'watch', name: 'web-0', resource: 'pods' }],
  ['list with metadata.name== and another term', 'GET', '/api/v1/namespaces/shop/pods?fieldSelector=status.phase%3DRunning,metadata.name%3D%3Dweb-0',
    { verb: 'list', name: 'web-0' }],
  ['list with metadata.name!=', 'GET', '/api/v1/namespaces/shop/pods?fieldSelector=metadata.name!%3Dweb-0', { verb: 'list', name: '' }],
  ['legacy watch prefix', 'GET', '/api/v1/watch/namespaces/shop/pods', { verb: 'watch', namespace: 'shop', resource: 'pods', name: '' }],
  ['legacy watch of one object', 'GET', '/api/v1/watch/namespaces/shop/pods/web-0', { verb: 'watch', name: 'web-0' }],
  ['delete deploy web', 'DELETE', '/apis/apps/v1/namespaces/shop/deployments/web', { verb: 'delete', apiGroup: 'apps', resource: 'deployments', name: 'web' }],
  ['delete pods --all', 'DELETE', '/api/v1/namespaces/shop/pods', { verb: 'deletecollection', resource: 'pods', name: '' }],
  ['create -f', 'POST', '/apis/apps/v1/namespaces/shop/deployments?fieldManager=kubectl-create', { verb: 'create', resource: 'deployments', name: '' }],
  ['replace', 'PUT', '/apis/apps/v1/namespaces/shop/deployments/web', { verb: 'update', name: 'web' }],
  ['apply / patch', 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=kubectl-client-side-apply', { verb: 'patch', name: 'web' }],
  ['logs', 'GET', '/api/v1/namespaces/shop/pods/web-0/log?container=c&follow=true',
    { verb: 'get', resource: 'pods', name: 'web-0', subresource: 'log', parts: ['pods', 'web-0', 'log'] }],
  ['scale', 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/web/scale', { verb: 'patch', resource: 'deployments', name: 'web', subresource: 'scale' }],
  ['get scale', 'GET', '/apis/apps/v1/namespaces/shop/deployments/web/scale', { verb: 'get', subresource: 'scale' }],
  ['status', 'PUT', '/api/v1/namespaces/shop/pods/web-0/status', { verb: 'update', subresource: 'status' }],
  ['port-forward', 'POST', '/api/v1/namespaces/shop/pods/web-0/portforward', { verb: 'create', subresource: 'portforward', ports: [] }],
  ['port-forward with ports', 'GET', '/api/v1/namespaces/shop/pods/web-0/portforward?ports=8080&ports=9090',
    { verb: 'get', subresource: 'portforward', ports: ['8080', '9090'] }],
  ['pod proxy keeps the method verb', 'GET', '/api/v1/namespaces/shop/pods/web-0:8080/proxy/metrics',
    { verb: 'get', resource: 'pods', name: 'web-0:8080', subresource: 'proxy', parts: ['pods', 'web-0:8080', 'proxy', 'metrics'] }],
  ['node proxy', 'GET', '/api/v1/nodes/n1/proxy/stats/summary', { verb: 'get', namespace: '', resource: 'nodes', name: 'n1', subresource: 'proxy' }],
  ['get ns', 'GET', '/api/v1/namespaces', { verb: 'list', namespace: '', resource: 'namespaces', name: '' }],
  ['get ns shop: the namespace is its own', 'GET', '/api/v1/namespaces/shop', { verb: 'get', namespace: 'shop', resource: 'namespaces', name: 'shop' }],
  ['delete ns shop', 'DELETE', '/api/v1/namespaces/shop', { verb: 'delete', namespace: 'shop', resource: 'namespaces', name: 'shop' }],
  ['namespace status', 'PUT', '/api/v1/namespaces/shop/status', { verb: 'update', namespace: 'shop', resource: 'namespaces', name: 'shop', subresource: 'status' }],
  ['namespace finalize', 'PUT', '/api/v1/namespaces/shop/finalize', { resource: 'namespaces', name: 'shop', subresource: 'finalize' }],
  ['get nodes', 'GET', '/api/v1/nodes', { verb: 'list', namespace: '', resource: 'nodes' }],
  ['get node n1', 'GET', '/api/v1/nodes/n1', { verb: 'get', resource: 'nodes', name: 'n1' }],
  ['get clusterroles', 'GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles', { verb: 'list', apiGroup: 'rbac.authorization.k8s.io', resource: 'clusterroles' }],
  ['a custom resource', 'GET', '/apis/example.com/v1/namespaces/x/widgets/w',
    { verb: 'get', apiGroup: 'example.com', apiVersion: 'v1', namespace: 'x', resource: 'widgets', name: 'w' }],
  ['custom resources across namespaces', 'GET', '/apis/example.com/v1/widgets', { verb: 'list', namespace: '', resource: 'widgets' }],
  ['a trailing slash, trimmed as the server does', 'GET', '/api/v1/namespaces/shop/pods/', { verb: 'list', resource: 'pods', path: '/api/v1/namespaces/shop/pods/' }],
  ['percent-encoded name', 'GET', '/api/v1/namespaces/sh%6Fp/pods/web%2D0', { namespace: 'shop', name: 'web-0', path: '/api/v1/namespaces/shop/pods/web-0' }],
  ['auth can-i', 'POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', { verb: 'create', apiGroup: 'authorization.k8s.io', resource: 'selfsubjectaccessreviews' }],
];

describe('requestInfo on resource requests', () => {
  it.each(RESOURCE_REQUESTS)('%s: %s %s', (_what, method, url, expected) => {
    const info = requestInfo(method, url);
    expect(info.invalid).toBeUndefined();
    expect(info.isResourceRequest).toBe(true);
    expect(info).toMatchObject(expected);
  });

  it('reads kubectl exec: the repeated command parameters in order, the container and the streams', () => {
    const info = requestInfo('POST', '/api/v1/namespaces/shop/pods/web-0/exec?command=ls&command=-l&container=c&stdin=true&stdout=true&tty=true');
    expect(info).toMatchObject({ isResourceRequest: true, verb: 'create', namespace: 'shop', resource: 'pods', name: 'web-0', subresource: 'exec' });
    expect(info.command).toEqual(['ls', '-l']);
    expect(info).toMatchObject({ container: 'c', stdin: true, tty: true });
  });

  it('keeps GET as get for a WebSocket exec (the rule engine decides what it amounts to)', () => {
    expect(requestInfo('GET', '/api/v1/namespaces/shop/pods/web-0/exec?command=ls').verb).toBe('get');
  });

  it('decodes command words: "+" is a space, escapes are resolved, a ";" may come encoded', () => {
    const info = requestInfo('POST', '/api/v1/namespaces/shop/pods/web-0/exec?command=sh&command=-c&command=ls+-l%3B+rm+x&stdout=true');
    expect(info.command).toEqual(['sh', '-c', 'ls -l; rm x']);
    expect(info).toMatchObject({ stdin: false, tty: false });
    expect(info.container).toBeUndefined();
  });

  it('gives an exec without command parameters an empty command', () => {
    expect(requestInfo('POST', '/api/v1/namespaces/shop/pods/web-0/exec?stdout=true').command).toEqual([]);
  });

  it('reads attach options and gives it no command', () => {
    const info = requestInfo('POST', '/api/v1/namespaces/shop/pods/web-0/attach?container=c&stdin=1&stdout=true&tty=false');
    expect(info).toMatchObject({ verb: 'create', subresource: 'attach', container: 'c', stdin: true, tty: false });
    expect(info.command).toBeUndefined();
  });

  it('reads no exec options outside the core pods resource', () => {
    expect(requestInfo('POST', '/apis/example.com/v1/namespaces/x/pods/p/exec?command=ls').command).toBeUndefined();
  });
});

/** [method, URL, the verb] */
const NON_RESOURCE_REQUESTS: [string, string, string][] = [
  ['GET', '/version?timeout=32s', 'get'],
  ['GET', '/healthz', 'get'],
  ['GET', '/livez', 'get'],
  ['GET', '/openapi/v2', 'get'],
  ['GET', '/openapi/v3', 'get'],
  ['GET', '/openapi/v3/apis/apps/v1?hash=ABC', 'get'],
  ['GET', '/api', 'get'],
  ['GET', '/api/v1', 'get'],
  ['GET', '/apis', 'get'],
  ['GET', '/apis/apps', 'get'],
  ['GET', '/apis/apps/v1', 'get'],
  ['GET', '/apis/apps/v1/', 'get'],
  ['GET', '/.well-known/openid-configuration', 'get'],
  ['GET', '/metrics', 'get'],
  ['GET', '/', 'get'],
  ['POST', '/version', 'post'],
  ['HEAD', '/healthz', 'head'],
];

describe('requestInfo on non-resource URLs', () => {
  it.each(NON_RESOURCE_REQUESTS)('%s %s', (method, url, verb) => {
    const info = requestInfo(method, url);
    expect(info.invalid).toBeUndefined();
    expect(info).toMatchObject({ isResourceRequest: false, verb, apiGroup: '', namespace: '', resource: '', name: '', parts: [] });
    expect(info.apiPrefix).toBeUndefined();
  });

  it('keeps the decoded path', () => {
    expect(requestInfo('GET', '/openapi/v3/apis/apps/v1?hash=1').path).toBe('/openapi/v3/apis/apps/v1');
  });
});

/** [method, URL, a word of the reason] */
const REFUSED: [string, string, RegExp][] = [
  ['GET', '/api/v1/namespaces/shop/pods/../secrets', /"\.\." segment/],
  ['GET', '/api/v1/namespaces/shop/pods/%2E%2E/secrets', /"\.\." segment/],
  ['GET', '/api/v1/namespaces/shop/./pods', /"\." segment/],
  ['GET', '/api/v1/namespaces//pods', /empty segment/],
  ['GET', '//api/v1/pods', /empty segment/],
  ['GET', '/api/v1/pods//', /empty segment/],
  ['GET', '/api/v1/namespaces/shop/pods/a%2Fb', /encoded slash/],
  ['GET', '/api/v1/namespaces/shop/pods/a%2fb', /encoded slash/],
  ['GET', '/api/v1/namespaces/shop/pods/%zz', /malformed percent-encoding/],
  ['GET', '/api/v1/namespaces/shop/pods/%00', /NUL/],
  ['GET', '/api/v1/namespaces/shop/pods?watch=%zz', /malformed percent-encoding/],
  ['POST', '/api/v1/namespaces/shop/pods/web-0/exec?command=ls;rm', /raw ";"/],
  ['POST', '/api/v1/namespaces/shop/pods/web-0/exec?command=ls%00', /NUL/],
  ['GET', '/api/v1/namespaces/shop/pods#frag', /characters/],
  ['GET', '/api/v1/namespaces/shop/pods/we b', /characters/],
  ['GET', 'https://kube.example:6443/api/v1/pods', /not an absolute path/],
  ['GET', '*', /not an absolute path/],
  ['OPTIONS', '/api/v1/namespaces/shop/pods', /method OPTIONS/],
  ['get', '/api/v1/namespaces/shop/pods', /method get/],
  ['GET', '/api/v1/proxy/namespaces/shop/pods/web-0', /legacy \/proxy\//],
  ['GET', '/api/v1/watch', /must name a resource/],
  ['DELETE', '/api/v1/watch/namespaces/shop/pods', /serves GET/],
];

describe('requestInfo on requests the proxy must refuse', () => {
  it.each(REFUSED)('%s %s', (method, url, reason) => {
    expect(requestInfo(method, url).invalid).toMatch(reason);
  });

  it('refuses no ordinary kubectl request', () => {
    for (const [, method, url] of RESOURCE_REQUESTS) expect(requestInfo(method, url).invalid).toBeUndefined();
  });
});
