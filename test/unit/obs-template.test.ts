import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderTemplate, TemplateError } from '../../cli/template.js';
import { H1, sampleReport } from './obs-fixtures.js';

const r = sampleReport();

test('template: field access, len, json, pipes', () => {
  assert.equal(renderTemplate('{{.Router.Name}}', r), H1);
  assert.equal(renderTemplate('name={{ .Router.NickName }}!', r), 'name=h1!');
  assert.equal(renderTemplate('{{len .Router.Peers}}', r), '3');
  assert.equal(renderTemplate('{{.Router.Peers | len}}', r), '3');
  assert.equal(renderTemplate('{{.Router.Targets | json}}', r), '["192.168.77.2","192.168.77.9"]');
  assert.equal(renderTemplate('{{json .Router.Encryption}}', r), 'false');
  assert.equal(renderTemplate('{{.Router.Targets | json | len}}', r), String('["192.168.77.2","192.168.77.9"]'.length));
  assert.equal(renderTemplate('{{len .Router.NickName}}', r), '2');
  assert.equal(renderTemplate('{{len .Router.Traffic}}', r), '0');
  assert.equal(renderTemplate('plain text only', r), 'plain text only');
  assert.equal(renderTemplate('', r), '');
});

test('template: range over arrays and objects, $ root, nested range', () => {
  assert.equal(renderTemplate('{{range .Router.Peers}}{{.NickName}} {{end}}', r), 'h1 h2 h3 ');
  assert.equal(renderTemplate('{{range .Router.Peers}}{{.NickName}}:{{range .Connections}}{{.NickName}}{{end}};{{end}}', r), 'h1:h2h3;h2:h1h3;h3:h1h2;');
  assert.equal(renderTemplate('{{range .Router.Peers}}{{$.Router.NickName}}{{end}}', r), 'h1h1h1');
  assert.equal(renderTemplate('{{range .M}}{{.}},{{end}}', { M: { b: 2, a: 1, c: 3 } }), '1,2,3,');
  assert.equal(renderTemplate('{{range .Router.TrustedSubnets}}x{{else}}none{{end}}', r), 'none');
  assert.equal(renderTemplate('{{range .Missing}}x{{end}}', r), '');
});

test('template: if/else with Go truthiness', () => {
  const t = '{{if .V}}yes{{else}}no{{end}}';
  for (const [v, want] of [[true, 'yes'], [false, 'no'], [0, 'no'], [2, 'yes'], ['', 'no'], ['a', 'yes'], [[], 'no'], [[1], 'yes'], [{}, 'no'], [{ a: 1 }, 'yes'], [null, 'no']] as const) {
    assert.equal(renderTemplate(t, { V: v }), want, JSON.stringify(v));
  }
  assert.equal(renderTemplate('{{if .Nope}}yes{{end}}', {}), '');
  assert.equal(renderTemplate('{{range .Router.Connections}}{{if .Encrypted}}{{.Address}}{{end}}{{end}}', r), '192.168.77.3:45678');
});

test('template: Go %v printing of composite, missing and null values', () => {
  assert.equal(renderTemplate('{{.Router.Targets}}', r), '[192.168.77.2 192.168.77.9]');
  assert.equal(renderTemplate('{{.O}}', { O: { b: [1, 2], a: 'x' } }), 'map[a:x b:[1 2]]');
  assert.equal(renderTemplate('{{.Router.Nope}}', r), '<no value>');
  assert.equal(renderTemplate('{{.N}}', { N: null }), '<nil>');
  assert.equal(renderTemplate('{{.}}', 5), '5');
  assert.equal(renderTemplate('{{.Nope | json}}', {}), 'null');
});

test('template: trim markers and comments', () => {
  assert.equal(renderTemplate('a  {{- .X -}}  b', { X: 1 }), 'a1b');
  assert.equal(renderTemplate('{{range .L -}}\n  {{.}}\n{{- end}}', { L: [1, 2] }), '12');
  assert.equal(renderTemplate('a{{/* why */}}b', {}), 'ab');
  // Without the space, "-3" is not a trim marker in Go; here it is not a field either.
  assert.throws(() => renderTemplate('{{-3}}', {}), TemplateError);
});

test('template: parse errors are TemplateError with a position', () => {
  const cases: Array<[string, RegExp]> = [
    ['{{.Router.Name', /template: 1:1: unclosed action/],
    ['ab\n cd {{}}', /template: 2:5: missing value in action/],
    ['{{range .X}}no end', /template: 1:1: unexpected EOF: \{\{range\}\} without \{\{end\}\}/],
    ['{{if .X}}a{{else}}b', /without \{\{end\}\}/],
    ['{{if .X}}a{{else}}b{{else}}c{{end}}', /more than one \{\{else\}\}/],
    ['x{{end}}', /template: 1:2: unexpected \{\{end\}\}/],
    ['{{else}}', /unexpected \{\{else\}\}/],
    ['{{printf "%d" .X}}', /function "printf" not defined/],
    ['{{Router.Name}}', /unexpected "Router.Name"/],
    ['{{.Router..Name}}', /bad field name ""/],
    ['{{.A .B}}', /too many values/],
    ['{{len}}', /wrong number of args for len: want 1 got 0/],
    ['{{len .A .B}}', /wrong number of args for len: want 1 got 2/],
    ['{{.A | len .B}}', /wrong number of args for len: want 1 got 2/],
    ['{{.A | .B}}', /can't give argument to non-function .B/],
    ['{{.A | }}', /missing command in pipeline/],
    ['{{with .A}}{{end}}', /\{\{with\}\} is not supported/],
    ['{{/* open }}', /unclosed comment/],
    ['{{end extra}}', /unexpected "extra" after end/],
  ];
  for (const [tpl, re] of cases) {
    assert.throws(() => renderTemplate(tpl, r), (e: unknown) => e instanceof TemplateError && re.test(e.message), tpl);
  }
});

test('template: execution errors', () => {
  assert.throws(() => renderTemplate('{{.IPAM.Range}}', {}), /nil pointer evaluating \.IPAM\.Range/);
  assert.throws(() => renderTemplate('{{.A.B.C}}', { A: null }), /nil pointer evaluating \.A\.B/);
  assert.throws(() => renderTemplate('{{.Router.Name.First}}', r), /can't evaluate field First in type string/);
  assert.throws(() => renderTemplate('{{.Router.Peers.Name}}', r), /can't evaluate field Name in a list/);
  assert.throws(() => renderTemplate('{{len .Router.Port}}', r), /len of type number/);
  assert.throws(() => renderTemplate('{{len .Nope}}', {}), /len of missing value/);
  assert.throws(() => renderTemplate('{{range .Router.Port}}x{{end}}', r), /range can't iterate over 6783/);
  // Nothing is rendered if a later part fails to parse.
  assert.throws(() => renderTemplate('{{.Router.Name}} {{range}}', r), TemplateError);
});

test('template: does not reach prototype properties', () => {
  assert.equal(renderTemplate('{{.constructor}}', {}), '<no value>');
  assert.equal(renderTemplate('{{.__proto__}}', {}), '<no value>');
  assert.throws(() => renderTemplate('{{.toString.name}}', {}), /nil pointer/);
});
