/**
 * A terminal spinner for long waits (`weave launch` waiting for the router,
 * `weave prime` waiting for IPAM consensus, `attach` waiting for an address).
 * Interactive users see what is awaited; scripts and logs (non-TTY) see nothing.
 */

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export interface SpinnerStream {
  isTTY?: boolean;
  write(s: string): unknown;
}

export interface SpinnerOptions {
  /** Redraw period; default 80 ms. */
  intervalMs?: number;
  /** Nothing is drawn for waits shorter than this, to avoid a flash; default 150 ms. */
  delayMs?: number;
  /** Clock in ms; default Date.now (injectable for tests). */
  now?: () => number;
}

/**
 * Resolves or rejects exactly as `p` does. While `p` is pending and
 * `stream.isTTY` is true, redraws one line "⠋ what (Ns)" on `stream`
 * (default stderr, so a spinner never ends up in piped stdout), and erases it
 * when `p` settles. `what` may be a function, re-read on every redraw, so the
 * text can follow progress ("waiting for consensus (known: 2 of 3)").
 * The redraw timer is unref'd: it never keeps the process alive on its own.
 */
export async function withSpinner<T>(
  what: string | (() => string),
  p: Promise<T>,
  stream: SpinnerStream = process.stderr,
  opts: SpinnerOptions = {},
): Promise<T> {
  if (!stream.isTTY) return p;
  const intervalMs = opts.intervalMs ?? 80;
  const delayMs = opts.delayMs ?? 150;
  const now = opts.now ?? Date.now;
  const start = now();
  let frame = 0;
  let drawn = false;
  const draw = (): void => {
    const elapsed = now() - start;
    if (elapsed < delayMs) return;
    let text: string;
    try {
      text = typeof what === 'function' ? what() : what;
    } catch (err) {
      text = `(${(err as Error).message})`;
    }
    const secs = elapsed >= 1000 ? ` (${Math.floor(elapsed / 1000)}s)` : '';
    // \r and erase-line (ESC [ K) redraw in place without scrolling.
    stream.write(`\r\x1b[K${FRAMES[frame++ % FRAMES.length]} ${text}${secs}`);
    drawn = true;
  };
  const timer = setInterval(draw, intervalMs);
  timer.unref();
  try {
    return await p;
  } finally {
    clearInterval(timer);
    if (drawn) stream.write('\r\x1b[K');
  }
}
