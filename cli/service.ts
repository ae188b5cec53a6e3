/**
 * Restart at boot (Weave's `weave setup-service` idea for a systemd host): `weave
 * launch` records its arguments — never the password — in STATE_DIR/launch-args.json,
 * and `weave setup-service` writes a systemd unit that relaunches the router with them
 * in the foreground (`launch --no-detach`), after the network is online and after
 * Docker, restarted on failure. Pure: the callers read and write the files.
 *
 * Quoting follows systemd.service(5), "Command lines": each argument in double quotes
 * with C-style escapes for backslash and quote, `%` doubled (specifiers) and `$`
 * doubled (variable expansion).
 */

/** Options whose next argument (or `=value`) is a secret and is never recorded. */
const SECRET_OPTIONS = ['--password'];
/** Options that make no sense in a recorded launch (the unit adds --no-detach itself). */
const DROPPED_FLAGS = ['--no-detach'];

export class ServiceError extends Error {
  override name = 'ServiceError';
}

/**
 * The arguments of `weave launch ARGS` to record: ARGS without `--password X` /
 * `--password=X` and without `--no-detach`.
 * @returns the kept arguments and whether a password was dropped.
 */
export function launchArgsToRecord(args: string[]): { args: string[]; droppedPassword: boolean } {
  const out: string[] = [];
  let droppedPassword = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (SECRET_OPTIONS.includes(a)) {
      droppedPassword = true;
      i++;
      continue;
    }
    if (SECRET_OPTIONS.some((o) => a.startsWith(`${o}=`))) {
      droppedPassword = true;
      continue;
    }
    if (DROPPED_FLAGS.includes(a)) continue;
    out.push(a);
  }
  return { args: out, droppedPassword };
}

/** What launch-args.json holds. */
export interface RecordedLaunch {
  args: string[];
  stateDir: string;
  dockerHost?: string;
}

/**
 * Decode launch-args.json (bounded: 64 KiB, 256 arguments of ≤ 4 KiB each).
 * @throws ServiceError naming the problem and what to do.
 */
export function parseRecordedLaunch(text: string, file: string): RecordedLaunch {
  const bad = (why: string): ServiceError => new ServiceError(`${file} is unusable (${why}): run weave launch again to record its arguments`);
  if (text.length > 65536) throw bad('larger than 64 KiB');
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const r = j as Partial<RecordedLaunch> | null;
  if (!r || !Array.isArray(r.args) || r.args.length > 256 || !r.args.every((a) => typeof a === 'string' && a.length <= 4096)) throw bad('args is not a list of strings');
  if (typeof r.stateDir !== 'string' || !r.stateDir.startsWith('/')) throw bad('stateDir is not an absolute path');
  if (r.dockerHost !== undefined && typeof r.dockerHost !== 'string') throw bad('dockerHost is not a string');
  return { args: r.args, stateDir: r.stateDir, dockerHost: r.dockerHost };
}

/**
 * Quote one argument for a systemd command line or Environment= assignment.
 * @throws ServiceError for control characters (a newline would end the directive).
 */
export function systemdQuote(arg: string): string {
  if (/[\x00-\x1f\x7f]/.test(arg)) throw new ServiceError(`argument ${JSON.stringify(arg.slice(0, 60))} contains a control character: systemd cannot take it`);
  return '"' + arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%').replace(/\$/g, '$$$$') + '"';
}

/**
 * The unit file text.
 * @param node absolute path of the node binary; `nodeFlags` the router's V8 flags;
 * @param weaveJs absolute path of cli/weave.js.
 */
export function renderUnit(o: { node: string; nodeFlags: string[]; weaveJs: string; launch: RecordedLaunch }): string {
  const cmd = (verb: string[]): string => [o.node, ...o.nodeFlags, o.weaveJs, ...verb].map(systemdQuote).join(' ');
  const env = [`WEAVE_STATE_DIR=${o.launch.stateDir}`, ...(o.launch.dockerHost ? [`DOCKER_HOST=${o.launch.dockerHost}`] : [])];
  return [
    '# Written by `weave setup-service` from the arguments of the last `weave launch`.',
    '# A network password is never recorded: give it with --password-file in the launch.',
    '[Unit]',
    'Description=tsweave router (Weave Net-style overlay network)',
    'Wants=network-online.target',
    'After=network-online.target docker.service',
    '',
    '[Service]',
    'Type=simple',
    ...env.map((e) => `Environment=${systemdQuote(e)}`),
    `ExecStart=${cmd(['launch', '--no-detach', ...o.launch.args])}`,
    `ExecStop=${cmd(['stop'])}`,
    'Restart=on-failure',
    'RestartSec=5',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}
