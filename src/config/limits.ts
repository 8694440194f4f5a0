/** The defaults of the `limits:` section (see LimitsConfig for what each bounds). */
import type { LimitsConfig } from './types.js';

export const DEFAULT_LIMITS: Readonly<LimitsConfig> = Object.freeze({
  maxMessageBytes: 16 << 20,
  maxUpstreamMessageBytes: 256 << 20,
  partialMessageTimeoutMs: 30_000,
  upstreamConnectTimeoutMs: 10_000,
  maxRequestBodyBytes: 16 << 20,
  maxHeaderBytes: 32 << 10,
  upstreamResponseTimeoutMs: 60_000,
  maxCommandBytes: 16 << 10,
  // enough for a busy agent's pool; few enough that one agent cannot take every upstream slot
  maxSessionsPerWorkload: 256,
});

/** The YAML field each limit is set by, for error messages that tell the operator what to change. */
export const LIMIT_FIELDS: Readonly<Record<keyof LimitsConfig, string>> = Object.freeze({
  maxMessageBytes: 'limits.maxMessageBytes',
  maxUpstreamMessageBytes: 'limits.maxUpstreamMessageBytes',
  partialMessageTimeoutMs: 'limits.partialMessageTimeout',
  upstreamConnectTimeoutMs: 'limits.upstreamConnectTimeout',
  maxRequestBodyBytes: 'limits.maxRequestBodyBytes',
  maxHeaderBytes: 'limits.maxHeaderBytes',
  upstreamResponseTimeoutMs: 'limits.upstreamResponseTimeout',
  maxCommandBytes: 'limits.maxCommandBytes',
  maxSessionsPerWorkload: 'limits.maxSessionsPerWorkload',
});
