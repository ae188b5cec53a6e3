/**
 * A small subset of Go's text/template, enough for `weave report -f FORMAT`
 * as scripts used it with Weave Net (whose /report?format= ran Go templates
 * over the report, with a `json` function added).
 *
 * Supported:
 *   text, {{/* comment *\/}}, trim markers {{- and -}}
 *   {{.}}  {{.A.B}}  {{$.A.B}} (root, inside range)  {{$}}
 *   functions: {{len ARG}}, {{json ARG}}, and pipes {{.A | json}}, {{.A | len}}
 *   {{range PIPELINE}}...{{else}}...{{end}}   (arrays; objects in sorted key order, dot = value)
 *   {{if PIPELINE}}...{{else}}...{{end}}      (Go truthiness: false, 0, "", empty array/object, null are false)
 * Values print like Go's %v: arrays as "[a b]", objects as "map[k:v]", a
 * missing key as "<no value>". Descending into a missing or null value is an
 * error, as Go's "nil pointer evaluating".
 *
 * Errors are TemplateError with "template: LINE:COL: what" for parse errors and
 * "template: executing <.A.B>: what" for execution errors.
 */
import { escapeTerminal } from './format.js';

export class TemplateError extends Error {
  override name = 'TemplateError';
}

type Arg = { kind: 'field'; root: boolean; path: string[]; src: string };
type Cmd = { fn: 'len' | 'json' | null; args: Arg[]; src: string };
type Pipeline = Cmd[];
type Node =
  | { kind: 'text'; text: string }
  | { kind: 'print'; pipe: Pipeline; src: string }
  | { kind: 'range' | 'if'; pipe: Pipeline; src: string; body: Node[]; alt: Node[] };

const FUNCS = new Set(['len', 'json']);

interface Token { kind: 'text'; text: string }
interface Action { kind: 'action'; body: string; line: number; col: number }

function position(tpl: string, offset: number): { line: number; col: number } {
  let line = 1;
  let col = 1;
  for (let i = 0; i < offset; i++) {
    if (tpl.charCodeAt(i) === 10) { line++; col = 1; } else col++;
  }
  return { line, col };
}

function lex(tpl: string): Array<Token | Action> {
  const out: Array<Token | Action> = [];
  let i = 0;
  let trimNextText = false;
  while (i < tpl.length) {
    const open = tpl.indexOf('{{', i);
    let text = open < 0 ? tpl.slice(i) : tpl.slice(i, open);
    if (trimNextText) text = text.replace(/^\s+/, '');
    trimNextText = false;
    if (open < 0) {
      if (text) out.push({ kind: 'text', text });
      break;
    }
    const close = tpl.indexOf('}}', open + 2);
    const { line, col } = position(tpl, open);
    if (close < 0) throw new TemplateError(`template: ${line}:${col}: unclosed action`);
    let body = tpl.slice(open + 2, close);
    // "{{- " trims preceding space, " -}}" trims following space (Go requires the space).
    if (/^-\s/.test(body)) { text = text.replace(/\s+$/, ''); body = body.slice(1); }
    if (/\s-$/.test(body)) { trimNextText = true; body = body.slice(0, -1); }
    if (text) out.push({ kind: 'text', text });
    out.push({ kind: 'action', body: body.trim(), line, col });
    i = close + 2;
  }
  return out;
}

function parseArg(word: string, a: Action): Arg {
  const err = (what: string): never => { throw new TemplateError(`template: ${a.line}:${a.col}: ${what}`); };
  if (word === '.') return { kind: 'field', root: false, path: [], src: word };
  if (word === '$') return { kind: 'field', root: true, path: [], src: word };
  let root = false;
  let rest = word;
  if (rest.startsWith('$.')) { root = true; rest = rest.slice(1); }
  if (!rest.startsWith('.')) {
    if (/^[A-Za-z_]\w*$/.test(word)) err(`function "${word}" not defined`);
    return err(`unexpected "${word}" (expected a field like .Router.Name)`);
  }
  const path = rest.slice(1).split('.');
  for (const p of path) if (!/^[A-Za-z_]\w*$/.test(p)) err(`bad field name "${p}" in "${word}"`);
  return { kind: 'field', root, path, src: word };
}

function parsePipeline(body: string, a: Action): Pipeline {
  const err = (what: string): never => { throw new TemplateError(`template: ${a.line}:${a.col}: ${what}`); };
  if (body.trim() === '') err('missing value in action');
  const cmds: Pipeline = [];
  for (const part of body.split('|')) {
    const words = part.trim().split(/\s+/).filter((w) => w !== '');
    if (words.length === 0) err('missing command in pipeline');
    let fn: Cmd['fn'] = null;
    let argWords = words;
    if (FUNCS.has(words[0])) { fn = words[0] as 'len' | 'json'; argWords = words.slice(1); }
    const args = argWords.map((w) => parseArg(w, a));
    if (fn === null && args.length !== 1) err(`too many values in "${part.trim()}"`);
    if (fn !== null) {
      const given = args.length + (cmds.length > 0 ? 1 : 0);
      if (given !== 1) err(`wrong number of args for ${fn}: want 1 got ${given}`);
    } else if (cmds.length > 0) {
      err(`can't give argument to non-function ${args[0].src}`);
    }
    cmds.push({ fn, args, src: part.trim() });
  }
  return cmds;
}

function parse(tpl: string): Node[] {
  const tokens = lex(tpl);
  let pos = 0;
  // Parses until {{end}}/{{else}} (returned to the caller) or the end of input.
  const parseList = (inside: Action | null): { nodes: Node[]; stop: 'end' | 'else' | 'eof'; at?: Action } => {
    const nodes: Node[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++];
      if (t.kind === 'text') { nodes.push({ kind: 'text', text: t.text }); continue; }
      const body = t.body;
      if (body.startsWith('/*')) {
        if (!body.endsWith('*/')) throw new TemplateError(`template: ${t.line}:${t.col}: unclosed comment`);
        continue;
      }
      const kw = /^(\w+)\b\s*(.*)$/s.exec(body);
      const word = kw ? kw[1] : '';
      if (word === 'end' || word === 'else') {
        if (kw![2] !== '') throw new TemplateError(`template: ${t.line}:${t.col}: unexpected "${kw![2]}" after ${word}`);
        if (inside === null) throw new TemplateError(`template: ${t.line}:${t.col}: unexpected {{${word}}}`);
        return { nodes, stop: word, at: t };
      }
      if (word === 'range' || word === 'if') {
        const pipe = parsePipeline(kw![2], t);
        const first = parseList(t);
        let alt: Node[] = [];
        if (first.stop === 'else') {
          const second = parseList(t);
          if (second.stop === 'else') throw new TemplateError(`template: ${second.at!.line}:${second.at!.col}: more than one {{else}} in ${word}`);
          if (second.stop === 'eof') throw new TemplateError(`template: ${t.line}:${t.col}: unexpected EOF: {{${word}}} without {{end}}`);
          alt = second.nodes;
        } else if (first.stop === 'eof') {
          throw new TemplateError(`template: ${t.line}:${t.col}: unexpected EOF: {{${word}}} without {{end}}`);
        }
        nodes.push({ kind: word, pipe, src: body, body: first.nodes, alt });
        continue;
      }
      if (['with', 'define', 'template', 'block', 'break', 'continue'].includes(word)) {
        throw new TemplateError(`template: ${t.line}:${t.col}: {{${word}}} is not supported`);
      }
      nodes.push({ kind: 'print', pipe: parsePipeline(body, t), src: body });
    }
    return { nodes, stop: 'eof' };
  };
  return parseList(null).nodes;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const NO_VALUE = Symbol('no value');

/** Go's %v for JSON-like values. */
function show(v: unknown): string {
  if (v === NO_VALUE || v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(show).join(' ')}]`;
  if (isObject(v)) return `map[${Object.keys(v).sort().map((k) => `${k}:${show(v[k])}`).join(' ')}]`;
  return String(v);
}

function truthy(v: unknown): boolean {
  if (v === NO_VALUE || v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

function evalArg(a: Arg, dot: unknown, root: unknown): unknown {
  let v: unknown = a.root ? root : dot;
  let walked = a.root ? '$' : '';
  for (const name of a.path) {
    if (v === NO_VALUE || v === undefined || v === null) {
      throw new TemplateError(`template: executing <${a.src}>: nil pointer evaluating ${walked || '.'}.${name}`);
    }
    if (!isObject(v)) {
      throw new TemplateError(`template: executing <${a.src}>: can't evaluate field ${name} in ${Array.isArray(v) ? 'a list' : `type ${typeof v}`}`);
    }
    v = Object.prototype.hasOwnProperty.call(v, name) ? v[name] : NO_VALUE;
    walked += `.${name}`;
  }
  return v;
}

function evalPipe(pipe: Pipeline, dot: unknown, root: unknown, src: string): unknown {
  let prev: unknown = undefined;
  pipe.forEach((cmd, i) => {
    const args = cmd.args.map((a) => evalArg(a, dot, root));
    if (i > 0) args.push(prev);
    if (cmd.fn === null) { prev = args[0]; return; }
    const v = args[0];
    if (cmd.fn === 'json') {
      prev = JSON.stringify(v === NO_VALUE || v === undefined ? null : v);
    } else {
      if (typeof v === 'string' || Array.isArray(v)) prev = v.length;
      else if (isObject(v)) prev = Object.keys(v).length;
      else throw new TemplateError(`template: executing <${src}>: error calling len: len of ${v === NO_VALUE ? 'missing value' : v === null ? 'nil' : `type ${typeof v}`}`);
    }
  });
  return prev;
}

function exec(nodes: Node[], dot: unknown, root: unknown, out: string[]): void {
  for (const n of nodes) {
    if (n.kind === 'text') { out.push(n.text); continue; }
    const v = evalPipe(n.pipe, dot, root, n.src);
    if (n.kind === 'print') { out.push(show(v)); continue; }
    if (n.kind === 'if') { exec(truthy(v) ? n.body : n.alt, dot, root, out); continue; }
    let items: unknown[];
    if (Array.isArray(v)) items = v;
    else if (isObject(v)) items = Object.keys(v).sort().map((k) => v[k]);
    else if (v === NO_VALUE || v === undefined || v === null) items = [];
    else throw new TemplateError(`template: executing <${n.src}>: range can't iterate over ${show(v)}`);
    if (items.length === 0) exec(n.alt, dot, root, out);
    for (const item of items) exec(n.body, item, root, out);
  }
}

/**
 * Renders `tpl` over `data` (a JSON-like value, typically a Report).
 * Throws TemplateError on a malformed template or a failed evaluation; the
 * whole template is parsed before anything is rendered, so output is all or
 * nothing. Control characters in the output are escaped (escapeTerminal).
 */
export function renderTemplate(tpl: string, data: unknown): string {
  const nodes = parse(tpl);
  const out: string[] = [];
  exec(nodes, data, data, out);
  return escapeTerminal(out.join('')); // peer-supplied text (nicknames…) never reaches a terminal raw
}
