/**
 * `--log-level` values, apart from the logger itself (router/daemon/log.ts), so the
 * `weave` CLI can check the flag without loading pino: [scale, issue #20] every module
 * the CLI loads is paid on each `weave launch`.
 */

/** Log levels the daemon accepts; Weave's `warning` is an alias of `warn`. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * Normalise a `--log-level` value: debug | info | warn (or Weave's "warning") | error.
 * @throws Error with a one-line message for anything else.
 */
export function parseLogLevel(s: string): LogLevel {
  const v = s === 'warning' ? 'warn' : s;
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new Error(`invalid log level "${s}": want debug, info, warn or error`);
}
