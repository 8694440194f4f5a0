import { describe, expect, it } from 'vitest';
import { forbiddenStatus, KubeRuleSet } from '../../src/policy/kube-rules.js';
import { requestInfo } from '../../src/protocols/kubernetes/request-info.js';
import { kubeRules } from '../helpers/policies.js';

const ruleSet = (rules: string, name = 'ci-kube') => kubeRules(rules, name);

/** The decision on METHOD URL. */
function decide(rs: KubeRuleSet, method: string, url: string) {
  return rs.decide(requestInfo(method, url));
}

/** An exec URL for argv in pod web-0 of namespace ns. */
function execUrl(argv: string[], ns = 'shop'): string {
  return `/api/v1/namespaces/${ns}/pods/web-0/exec?${argv.map((a) => `command=${encodeURIComponent(a)}`).join('&')}&container=c&stdout=true&stderr=true`;
}

/** The issue's example policy. */
const EXAMPLE = `
      - { action: allow, match: { verbs: [get, list, watch], resources: [pods, deployments, secrets], namespaces: [shop] } }
      - { action: deny,  match: { verbs: [delete, deletecollection] }, message: "agents do not delete" }
      - { action: allow, match: { verbs: [create], resources: [pods/exec], commands: ["ls *", "cat /etc/hostname"] } }`;

describe('KubeRuleSet on the example policy', () => {
  const rs = ruleSet(EXAMPLE);

  it('reads only the Kubernetes rules, all of them', () => {
    expect(rs.size).toBe(3);
  });

  /** [what, method, URL, action, rule] */
  const TABLE: [string, string, string, 'allow' | 'deny', string | undefined][] = [
    ['get pods -n shop', 'GET', '/api/v1/namespaces/shop/pods?limit=500', 'allow', 'ci-kube#1'],
    ['get pod web-0 -n shop', 'GET', '/api/v1/namespaces/shop/pods/web-0', 'allow', 'ci-kube#1'],
    ['get pods -w -n shop', 'GET', '/api/v1/namespaces/shop/pods?watch=true', 'allow', 'ci-kube#1'],
    ['get deploy -n shop', 'GET', '/apis/apps/v1/namespaces/shop/deployments?limit=500', 'allow', 'ci-kube#1'],
    ['get secrets -n shop', 'GET', '/api/v1/namespaces/shop/secrets', 'allow', 'ci-kube#1'],
    ['get secrets -n kube-system', 'GET', '/api/v1/namespaces/kube-system/secrets', 'deny', undefined],
    ['get secret db -n kube-system', 'GET', '/api/v1/namespaces/kube-system/secrets/db', 'deny', undefined],
    ['get pods -A: every namespace, not only shop', 'GET', '/api/v1/pods?limit=500', 'deny', undefined],
    ['get services -n shop: not a listed resource', 'GET', '/api/v1/namespaces/shop/services', 'deny', undefined],
    ['logs: pods does not cover pods/log', 'GET', '/api/v1/namespaces/shop/pods/web-0/log', 'deny', undefined],
    ['get deploy web scale: no subresource', 'GET', '/apis/apps/v1/namespaces/shop/deployments/web/scale', 'deny', undefined],
    ['scale', 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/web/scale', 'deny', undefined],
    ['get nodes', 'GET', '/api/v1/nodes', 'deny', undefined],
    ['get ns shop: the namespace object is not a listed resource', 'GET', '/api/v1/namespaces/shop', 'deny', undefined],
    ['a custom resource', 'GET', '/apis/example.com/v1/namespaces/shop/widgets/w', 'deny', undefined],
    ['delete deploy web', 'DELETE', '/apis/apps/v1/namespaces/shop/deployments/web', 'deny', 'ci-kube#2'],
    ['delete pods --all', 'DELETE', '/api/v1/namespaces/shop/pods', 'deny', 'ci-kube#2'],
    ['delete ns shop', 'DELETE', '/api/v1/namespaces/shop', 'deny', 'ci-kube#2'],
    ['create a deployment', 'POST', '/apis/apps/v1/namespaces/shop/deployments', 'deny', undefined],
    ['patch a deployment', 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/web', 'deny', undefined],
    ['exec ls -l', 'POST', execUrl(['ls', '-l']), 'allow', 'ci-kube#3'],
    ['exec ls', 'POST', execUrl(['ls']), 'allow', 'ci-kube#3'],
    ['exec cat /etc/hostname', 'POST', execUrl(['cat', '/etc/hostname']), 'allow', 'ci-kube#3'],
    ['exec over WebSocket (GET) is still a create', 'GET', execUrl(['ls', '-l']), 'allow', 'ci-kube#3'],
    ['exec cat /etc/shadow', 'POST', execUrl(['cat', '/etc/shadow']), 'deny', undefined],
    ['exec rm -rf /', 'POST', execUrl(['rm', '-rf', '/']), 'deny', undefined],
    ['exec sh -c "ls; rm x"', 'POST', execUrl(['sh', '-c', 'ls; rm x']), 'deny', undefined],
    ['exec sh -c "rm -rf /"', 'POST', execUrl(['sh', '-c', 'rm -rf /']), 'deny', undefined],
    ['exec sh -c ls: judged by the script', 'POST', execUrl(['sh', '-c', 'ls']), 'allow', 'ci-kube#3'],
    ['exec ls "; rm x": one literal argument', 'POST', execUrl(['ls', '; rm x']), 'allow', 'ci-kube#3'],
    ['exec ls $(rm x): no expansion in argv', 'POST', execUrl(['ls', '$(rm x)']), 'allow', 'ci-kube#3'],
    ['exec "ls -l" as one program name', 'POST', execUrl(['ls -l']), 'deny', undefined],
    ['exec without a command', 'POST', '/api/v1/namespaces/shop/pods/web-0/exec?stdout=true', 'deny', undefined],
    ['attach: what runs is not known', 'POST', '/api/v1/namespaces/shop/pods/web-0/attach?stdin=true&tty=true', 'deny', undefined],
    ['port-forward', 'POST', '/api/v1/namespaces/shop/pods/web-0/portforward', 'deny', undefined],
    ['discovery /api', 'GET', '/api', 'allow', undefined],
    ['discovery /apis', 'GET', '/apis', 'allow', undefined],
    ['discovery /api/v1', 'GET', '/api/v1', 'allow', undefined],
    ['discovery /apis/apps/v1', 'GET', '/apis/apps/v1', 'allow', undefined],
    ['discovery /apis/example.com', 'GET', '/apis/example.com/', 'allow', undefined],
    ['version', 'GET', '/version?timeout=32s', 'allow', undefined],
    ['openapi v2', 'GET', '/openapi/v2', 'allow', undefined],
    ['openapi v3', 'GET', '/openapi/v3/apis/apps/v1?hash=X', 'allow', undefined],
    ['healthz', 'GET', '/healthz', 'allow', undefined],
    ['metrics', 'GET', '/metrics', 'deny', undefined],
    ['logs of the API server', 'GET', '/logs/kube-apiserver.log', 'deny', undefined],
    ['a POST to a discovery URL', 'POST', '/version', 'deny', undefined],
    ['a path that climbs', 'GET', '/api/v1/namespaces/shop/pods/../../kube-system/secrets', 'deny', undefined],
    ['an encoded slash', 'GET', '/api/v1/namespaces/shop/pods/a%2Fb', 'deny', undefined],
  ];

  it.each(TABLE)('%s: %s %s → %s', (_what, method, url, action, rule) => {
    const d = decide(rs, method, url);
    expect(d.action).toBe(action);
    expect(d.rule).toBe(rule);
  });

  it('denies deletes with the rule message', () => {
    expect(decide(rs, 'DELETE', '/apis/apps/v1/namespaces/shop/deployments/web')).toEqual({
      action: 'deny', rule: 'ci-kube#2', message: 'agents do not delete', approvers: undefined, timeout: undefined,
    });
  });

  it('names verb, resource, name and namespace when no rule allows', () => {
    expect(decide(rs, 'GET', '/api/v1/namespaces/kube-system/secrets/db').message).toBe('no rule allows get of secrets "db" in namespace kube-system');
    expect(decide(rs, 'GET', '/api/v1/pods').message).toBe('no rule allows list of pods at cluster scope');
    expect(decide(rs, 'GET', '/api/v1/namespaces/shop/pods/web-0/log').message).toBe('no rule allows get of pods/log "web-0" in namespace shop');
  });

  it('quotes the exec command, argument by argument, when it is not allowed', () => {
    expect(decide(rs, 'POST', execUrl(['rm', '-rf', '/'])).message).toBe('no rule allows create of pods/exec "web-0" in namespace shop (command "rm -rf /")');
    expect(decide(rs, 'POST', execUrl(['sh', '-c', 'ls; rm x'])).message).toBe(
      `no rule allows create of pods/exec "web-0" in namespace shop (command "sh -c 'ls; rm x'")`,
    );
  });

  it('allows exec of an allowed command in any namespace: the exec rule names none', () => {
    expect(decide(rs, 'POST', execUrl(['ls', '-l'], 'kube-system'))).toMatchObject({ action: 'allow', rule: 'ci-kube#3' });
  });

  it('explains discovery and refused paths', () => {
    expect(decide(rs, 'GET', '/api')).toEqual({ action: 'allow', message: 'discovery' });
    expect(decide(rs, 'GET', '/metrics').message).toMatch(/^no rule allows get of "\/metrics"/);
    expect(decide(rs, 'GET', '/api/v1/namespaces/shop/pods/../secrets').message).toMatch(/^the request was refused: .*"\.\." segment/);
  });

  it('gives the same decision from its cache', () => {
    const a = decide(rs, 'POST', execUrl(['ls', '-l']));
    const b = decide(rs, 'POST', execUrl(['ls', '-l']));
    expect(b).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    // a different command is a different key
    expect(decide(rs, 'POST', execUrl(['ls', '-l', ';rm'])).action).toBe('allow');
    expect(decide(rs, 'POST', execUrl(['rm', '-l'])).action).toBe('deny');
  });
});

describe('KubeRuleSet filters', () => {
  it('keeps exec to the listed namespaces when the rule names them', () => {
    const rs = ruleSet(`
      - { action: allow, match: { verbs: [create], resources: [pods/exec], namespaces: [shop], commands: ["ls *"] } }`);
    expect(decide(rs, 'POST', execUrl(['ls'], 'shop')).action).toBe('allow');
    expect(decide(rs, 'POST', execUrl(['ls'], 'kube-system')).action).toBe('deny');
  });

  it('reads resource globs: "*" covers no subresource, "pods/*" every pods subresource, "**" everything', () => {
    const star = ruleSet(`
      - { action: allow, match: { resources: ["*"] } }`);
    expect(decide(star, 'GET', '/api/v1/namespaces/shop/pods').action).toBe('allow');
    expect(decide(star, 'GET', '/api/v1/nodes/n1').action).toBe('allow');
    expect(decide(star, 'GET', '/api/v1/namespaces/shop/pods/web-0/log').action).toBe('deny');
    expect(decide(star, 'POST', execUrl(['ls'])).action).toBe('deny');

    const podsSub = ruleSet(`
      - { action: allow, match: { resources: ["pods/*"] } }`);
    expect(decide(podsSub, 'GET', '/api/v1/namespaces/shop/pods/web-0/log').action).toBe('allow');
    expect(decide(podsSub, 'POST', execUrl(['rm', '-rf', '/'])).action).toBe('allow');
    expect(decide(podsSub, 'GET', '/api/v1/namespaces/shop/pods/web-0').action).toBe('deny');
    expect(decide(podsSub, 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/web/scale').action).toBe('deny');

    const all = ruleSet(`
      - { action: allow, match: { resources: ["**"] } }`);
    expect(decide(all, 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/web/scale').action).toBe('allow');
    expect(decide(all, 'GET', '/api/v1/pods').action).toBe('allow');
  });

  it('does not let a read rule on subresources run commands over WebSocket', () => {
    const rs = ruleSet(`
      - { action: allow, match: { verbs: [get, list, watch], resources: ["pods", "pods/*"] } }`);
    expect(decide(rs, 'GET', '/api/v1/namespaces/shop/pods/web-0/log').action).toBe('allow');
    expect(decide(rs, 'GET', execUrl(['rm', '-rf', '/'])).action).toBe('deny');
    expect(decide(rs, 'GET', '/api/v1/namespaces/shop/pods/web-0/attach?stdin=true').action).toBe('deny');
    expect(decide(rs, 'GET', '/api/v1/namespaces/shop/pods/web-0/portforward?ports=80').action).toBe('deny');
  });

  it('reads apiGroups: "" is core, globs for the rest, "*" all', () => {
    const rs = ruleSet(`
      - { action: allow, match: { apiGroups: [""], resources: [pods] } }
      - { action: allow, match: { apiGroups: ["*.example.com"] } }`);
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/pods').rule).toBe('ci-kube#1');
    expect(decide(rs, 'GET', '/apis/example.com/v1/namespaces/x/pods').action).toBe('deny');
    expect(decide(rs, 'GET', '/apis/widgets.example.com/v1/namespaces/x/widgets/w').rule).toBe('ci-kube#2');
    const any = ruleSet(`
      - { action: allow, match: { apiGroups: ["*"], verbs: [list] } }`);
    expect(decide(any, 'GET', '/api/v1/namespaces/x/pods').action).toBe('allow');
    expect(decide(any, 'GET', '/apis/apps/v1/namespaces/x/deployments').action).toBe('allow');
  });

  it('lets an allow rule cover namespace-less requests only by listing ""', () => {
    const anyOne = ruleSet(`
      - { action: allow, match: { verbs: [list], namespaces: ["*"] } }`);
    expect(decide(anyOne, 'GET', '/api/v1/namespaces/x/pods').action).toBe('allow');
    expect(decide(anyOne, 'GET', '/api/v1/pods').action).toBe('deny');
    expect(decide(anyOne, 'GET', '/api/v1/nodes').action).toBe('deny');
    // the config loader refuses an empty namespace today; the engine reads one as "no namespace"
    const cluster = new KubeRuleSet([{
      name: 'ci-kube', subjects: { groups: ['g'], workloads: [] }, targets: ['cluster'], masking: [],
      rules: [{ action: 'allow', match: { verbs: ['list', 'get'], namespaces: [''] } }],
    }]);
    expect(decide(cluster, 'GET', '/api/v1/nodes').action).toBe('allow');
    expect(decide(cluster, 'GET', '/api/v1/pods').action).toBe('allow');
    expect(decide(cluster, 'GET', '/api/v1/namespaces/x/pods').action).toBe('deny');
  });

  it('lets a deny rule on namespaces catch lists across all namespaces, not cluster-scoped objects', () => {
    const rs = ruleSet(`
      - { action: deny, match: { namespaces: [kube-system] } }
      - { action: allow, match: { verbs: [get, list] } }`);
    expect(decide(rs, 'GET', '/api/v1/namespaces/kube-system/secrets').rule).toBe('ci-kube#1');
    expect(decide(rs, 'GET', '/api/v1/secrets')).toMatchObject({ action: 'deny', rule: 'ci-kube#1', message: 'list of secrets at cluster scope is denied by rule ci-kube#1' });
    expect(decide(rs, 'GET', '/apis/example.com/v1/widgets').rule).toBe('ci-kube#1');
    expect(decide(rs, 'GET', '/api/v1/nodes')).toMatchObject({ action: 'allow', rule: 'ci-kube#2' });
    expect(decide(rs, 'GET', '/api/v1/namespaces')).toMatchObject({ action: 'allow', rule: 'ci-kube#2' });
    expect(decide(rs, 'GET', '/api/v1/namespaces/shop/secrets')).toMatchObject({ action: 'allow', rule: 'ci-kube#2' });
    expect(decide(rs, 'GET', '/api/v1/namespaces/kube-system').rule).toBe('ci-kube#1');
  });

  it('reads names: an allow rule needs the name, a deny rule also hits requests without one', () => {
    const rs = ruleSet(`
      - { action: deny, match: { resources: [secrets], names: ["prod-*"] } }
      - { action: allow, match: { verbs: [get, list, watch], resources: [secrets, configmaps] } }`);
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/secrets/prod-db').rule).toBe('ci-kube#1');
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/secrets/dev-db').rule).toBe('ci-kube#2');
    // a list returns prod-db too
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/secrets').rule).toBe('ci-kube#1');
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/secrets?fieldSelector=metadata.name%3Ddev-db&watch=true').rule).toBe('ci-kube#2');

    const only = ruleSet(`
      - { action: allow, match: { verbs: [get, list, watch], resources: [configmaps], names: ["app-*"] } }`);
    expect(decide(only, 'GET', '/api/v1/namespaces/x/configmaps/app-config').action).toBe('allow');
    expect(decide(only, 'GET', '/api/v1/namespaces/x/configmaps/other').action).toBe('deny');
    expect(decide(only, 'GET', '/api/v1/namespaces/x/configmaps').action).toBe('deny');
    expect(decide(only, 'GET', '/api/v1/namespaces/x/configmaps?fieldSelector=metadata.name%3Dapp-config&watch=1').action).toBe('allow');
  });

  it('judges exec commands as SSH exec is judged: deny rules hit any part, by base name too', () => {
    const rs = ruleSet(`
      - { action: deny, match: { resources: [pods/exec, pods/attach], commands: ["rm *"] }, message: "no deletes" }
      - { action: allow, match: { verbs: [create], resources: [pods/exec] } }`);
    expect(decide(rs, 'POST', execUrl(['ls']))).toMatchObject({ action: 'allow', rule: 'ci-kube#2' });
    expect(decide(rs, 'POST', execUrl(['/bin/rm', '-rf', '/']))).toMatchObject({ action: 'deny', rule: 'ci-kube#1', message: 'no deletes' });
    expect(decide(rs, 'POST', execUrl(['sh', '-c', 'ls && rm -rf /']))).toMatchObject({ action: 'deny', rule: 'ci-kube#1' });
    expect(decide(rs, 'POST', execUrl(['bash', '-lc', 'echo $(rm -rf /)']))).toMatchObject({ action: 'deny', rule: 'ci-kube#1' });
    expect(decide(rs, 'POST', execUrl(['env', 'X=1', 'rm', 'x']))).toMatchObject({ action: 'deny', rule: 'ci-kube#1' });
    // an argument is not a command
    expect(decide(rs, 'POST', execUrl(['echo', 'rm -rf /']))).toMatchObject({ action: 'allow', rule: 'ci-kube#2' });
    // attach: what runs is not known, the deny rule applies
    expect(decide(rs, 'POST', '/api/v1/namespaces/shop/pods/web-0/attach?stdin=true')).toMatchObject({ action: 'deny', rule: 'ci-kube#1' });
    // a script that cannot be analysed may hold anything
    expect(decide(rs, 'POST', execUrl(['sh', '-c', 'ls "']))).toMatchObject({ action: 'deny', rule: 'ci-kube#1' });
  });

  it('quotes argv so that program names are not read as assignments or keywords', () => {
    const rs = ruleSet(`
      - { action: allow, match: { resources: [pods/exec], commands: ["ls *"] } }`);
    expect(decide(rs, 'POST', execUrl(['X=1', 'ls'])).action).toBe('deny');
    expect(decide(rs, 'POST', execUrl(['if', 'ls'])).action).toBe('deny');
    expect(decide(rs, 'POST', execUrl(['ls', "it's", '*', '~', '#x'])).action).toBe('allow');
  });

  it('never matches a commands rule on requests that run nothing', () => {
    const rs = ruleSet(`
      - { action: deny, match: { verbs: [get, create], commands: ["*"] } }
      - { action: allow, match: { verbs: [get, create] } }`);
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/pods/p').rule).toBe('ci-kube#2');
    expect(decide(rs, 'POST', '/api/v1/namespaces/x/pods/p/portforward').rule).toBe('ci-kube#2');
    expect(decide(rs, 'POST', execUrl(['ls'])).rule).toBe('ci-kube#1');
  });

  it('reads pattern on the exec command line, and on the path otherwise', () => {
    const rs = ruleSet(`
      - { action: allow, match: { resources: [pods/exec], pattern: "^ls( |$)" } }
      - { action: allow, match: { verbs: [get], pattern: "^/api/v1/namespaces/shop/" } }`);
    expect(decide(rs, 'POST', execUrl(['ls', '-l'])).rule).toBe('ci-kube#1');
    expect(decide(rs, 'POST', execUrl(['cat', 'x'])).action).toBe('deny');
    expect(decide(rs, 'GET', '/api/v1/namespaces/shop/pods/p').rule).toBe('ci-kube#2');
    expect(decide(rs, 'GET', '/api/v1/namespaces/other/pods/p').action).toBe('deny');
  });

  it('asks for approval naming the request and the approvers', () => {
    const rs = ruleSet(`
      - { action: approve, match: { verbs: [patch], resources: [deployments/scale] }, approvers: [ops], timeout: 5m }`);
    expect(decide(rs, 'PATCH', '/apis/apps/v1/namespaces/shop/deployments/web/scale')).toEqual({
      action: 'approve', rule: 'ci-kube#1', approvers: ['ops'], timeout: '5m',
      message: 'patch of deployments/scale "web" in namespace shop needs approval (rule ci-kube#1, approvers: ops)',
    });
  });

  it('numbers rules by their place in the whole policy, other protocols\' rules included', () => {
    const rs = ruleSet(`
      - { action: allow, match: { statements: [select] } }
      - { action: allow, match: { commands: ["uptime"] } }
      - { action: allow, match: { verbs: [list] } }`);
    expect(rs.size).toBe(1);
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/pods').rule).toBe('ci-kube#3');
  });

  it('denies everything but discovery without rules', () => {
    const rs = new KubeRuleSet([]);
    expect(decide(rs, 'GET', '/api/v1/namespaces/x/pods').action).toBe('deny');
    expect(decide(rs, 'GET', '/apis').action).toBe('allow');
  });
});

describe('forbiddenStatus', () => {
  it('builds the Status the API server answers a forbidden request with', () => {
    const info = requestInfo('DELETE', '/apis/apps/v1/namespaces/shop/deployments/web');
    const status = forbiddenStatus(info, ruleSet(EXAMPLE).decide(info));
    expect(status).toEqual({
      kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure',
      message: 'deployments.apps "web" is forbidden: interlock: agents do not delete',
      reason: 'Forbidden', details: { name: 'web', group: 'apps', kind: 'deployments' }, code: 403,
    });
    // as the server writes it: empty details left out
    expect(JSON.parse(JSON.stringify(forbiddenStatus(requestInfo('GET', '/api/v1/namespaces/shop/pods'), { action: 'deny', message: 'no' })))).toMatchObject({
      message: 'pods is forbidden: interlock: no', details: { kind: 'pods' },
    });
  });

  it('names the core resource without a group, and the object', () => {
    const s = forbiddenStatus(requestInfo('POST', execUrl(['rm'])), { action: 'deny', message: 'x' });
    expect(s.message).toBe('pods "web-0" is forbidden: interlock: x');
    expect(s.details).toEqual({ name: 'web-0', group: undefined, kind: 'pods' });
  });

  it('words a non-resource refusal as the server does', () => {
    const s = forbiddenStatus(requestInfo('GET', '/metrics'), { action: 'deny', message: 'no' });
    expect(s.message).toBe('forbidden: interlock: no');
    expect(JSON.parse(JSON.stringify(s)).details).toEqual({});
  });
});
