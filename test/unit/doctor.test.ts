import { describe, it, expect } from 'vitest';
import { kernelAtLeast } from '../../src/cli/doctor.js';

describe('kernelAtLeast', () => {
  it('compares major first, then minor, numerically', () => {
    expect(kernelAtLeast('5.8.0', 5, 8)).toBe(true);
    expect(kernelAtLeast('5.7.19', 5, 8)).toBe(false);
    expect(kernelAtLeast('5.10.0', 5, 8)).toBe(true); // not a string comparison
    expect(kernelAtLeast('6.0.0', 5, 8)).toBe(true);
    expect(kernelAtLeast('6.1.0', 6, 2)).toBe(false);
    expect(kernelAtLeast('4.19.250', 5, 8)).toBe(false);
    expect(kernelAtLeast('10.0', 9, 99)).toBe(true);
  });

  it('reads distribution release strings', () => {
    expect(kernelAtLeast('5.15.0-105-generic', 5, 8)).toBe(true);
    expect(kernelAtLeast('6.8.0-1012-aws', 6, 8)).toBe(true);
    expect(kernelAtLeast('5.4.0-42-generic', 5, 8)).toBe(false);
    expect(kernelAtLeast('4.18.0-553.el8_10.x86_64', 5, 8)).toBe(false);
    expect(kernelAtLeast('5.8-rc1', 5, 8)).toBe(true);
  });

  it('refuses what it cannot parse', () => {
    expect(kernelAtLeast('', 5, 8)).toBe(false);
    expect(kernelAtLeast('six.one', 5, 8)).toBe(false);
    expect(kernelAtLeast('6', 5, 8)).toBe(false);
    expect(kernelAtLeast('v6.1.0', 5, 8)).toBe(false);
  });
});
