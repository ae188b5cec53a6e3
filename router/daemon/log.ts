/**
 * The router's structured log: one JSON object per line on stdout (which `weave
 * launch` points at `$WEAVE_STATE_DIR/weaver.log`), written by pino. The line shape
 * is `{"level":"info","time":"2026-…Z","msg":"…"}`, as before pino, so tools that
 * read weaver.log keep working.
 *
 * Subsystems receive a `Log` function, not the pino instance, so that a message is
 * always one string (no objects that could carry a secret by accident): callers
 * build the line themselves and never put the password or keys in it.
 */
import pino, { type Logger, type DestinationStream } from 'pino';

import { parseLogLevel, type LogLevel } from './log-level.js';

export { LOG_LEVELS, parseLogLevel, type LogLevel } from './log-level.js';

/** A log call: a one-line message and its level (default info). */
export type Log = (line: string, level?: LogLevel | string) => void;

/**
 * A pino logger writing JSON lines to `dest` (default: stdout, synchronously, so the
 * last lines before an exit are not lost).
 */
export function createPino(level: string, dest?: DestinationStream): Logger {
  return pino({
    level: parseLogLevel(level),
    base: undefined,
    messageKey: 'msg',
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  }, dest ?? pino.destination({ fd: 1, sync: true }));
}

/** The daemon's `Log` over a pino logger; an unknown level logs as info. */
export function makeLogger(level: string, dest?: DestinationStream): Log {
  const p = createPino(level, dest);
  return (line, lvl = 'info') => {
    switch (lvl) {
      case 'debug': return p.debug(line);
      case 'warn': case 'warning': return p.warn(line);
      case 'error': return p.error(line);
      default: return p.info(line);
    }
  };
}
