import { describe, it, expect } from 'vitest';
import { globToRegExp } from '../../src/util/glob.js';

const matches = (glob: string, s: string, sep?: string) => globToRegExp(glob, sep).test(s);

describe('globToRegExp with / (cgroup paths)', () => {
  it('matches a literal path exactly, whole string only', () => {
    expect(matches('/agents.slice/bot.service', '/agents.slice/bot.service')).toBe(true);
    expect(matches('/agents.slice/bot.service', '/agents.slice/bot.service/x')).toBe(false);
    expect(matches('/agents.slice/bot.service', '/x/agents.slice/bot.service')).toBe(false);
  });

  it('keeps * within one segment', () => {
    expect(matches('/agents.slice/*', '/agents.slice/bot.service')).toBe(true);
    expect(matches('/agents.slice/*', '/agents.slice/')).toBe(true);
    expect(matches('/agents.slice/*', '/agents.slice/a/b')).toBe(false);
    expect(matches('/agents.slice/*.service', '/agents.slice/bot.service')).toBe(true);
    expect(matches('/agents.slice/*.service', '/agents.slice/bot.scope')).toBe(false);
  });

  it('lets ** cross segments', () => {
    expect(matches('/agents.slice/**', '/agents.slice/a/b/c.scope')).toBe(true);
    expect(matches('/agents.slice/**', '/other.slice/a')).toBe(false);
    expect(matches('/**/bot.service', '/a/b/bot.service')).toBe(true);
    expect(matches('/**/bot.service', '/a/b/bot.scope')).toBe(false);
  });

  it('matches exactly one non-separator character with ?', () => {
    expect(matches('/bot-?.service', '/bot-1.service')).toBe(true);
    expect(matches('/bot-?.service', '/bot-12.service')).toBe(false);
    expect(matches('/bot-?.service', '/bot-.service')).toBe(false);
    expect(matches('/a?b', '/a/b')).toBe(false);
  });

  it('treats regex metacharacters literally', () => {
    expect(matches('a.b', 'a.b')).toBe(true);
    expect(matches('a.b', 'axb')).toBe(false);
    expect(matches('(x)', '(x)')).toBe(true);
    expect(matches('(x)', 'x')).toBe(false);
    expect(matches('a+', 'aa')).toBe(false);
    expect(matches('a+', 'a+')).toBe(true);
    expect(matches('[ab]', 'a')).toBe(false);
    expect(matches('[ab]', '[ab]')).toBe(true);
    expect(matches('x|y', 'x')).toBe(false);
    expect(matches('$^{1}\\', '$^{1}\\')).toBe(true);
  });
});

describe('globToRegExp with . (relation names)', () => {
  it('keeps * within one dotted segment', () => {
    expect(matches('public.*', 'public.orders', '.')).toBe(true);
    expect(matches('public.*', 'private.orders', '.')).toBe(false);
    expect(matches('public.*', 'public.orders.x', '.')).toBe(false);
    expect(matches('*.orders', 'sales.orders', '.')).toBe(true);
  });

  it('lets ** cross dots and ? stop at a dot', () => {
    expect(matches('public.**', 'public.a.b', '.')).toBe(true);
    expect(matches('a?b', 'a.b', '.')).toBe(false);
    expect(matches('a?b', 'axb', '.')).toBe(true);
  });

  it('lets * cross / when the separator is .', () => {
    expect(matches('public.*', 'public.a/b', '.')).toBe(true);
  });
});
