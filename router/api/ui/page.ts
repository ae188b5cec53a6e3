/**
 * The live mesh page served at `GET /`: one self-contained HTML document
 * (inline CSS, JS and SVG; it fetches nothing but its own `/events` WebSocket).
 *
 * It draws peers as nodes on a circle (this router highlighted and placed at
 * the top), connections as edges coloured by state and data path, each peer's
 * IPAM share as an arc around its node, this router's attached endpoints as
 * small squares, and local connection attempts to not-yet-known peers as
 * dashed edges to address nodes. Deltas are applied with `applyEvent` (its
 * compiled source is embedded, so page and CLI share one implementation).
 * If the socket drops it reconnects with exponential backoff (0.5 s doubling
 * to 10 s, with jitter) and shows that it is reconnecting.
 *
 * Peer names and nicknames come from remote peers, so the page only ever puts
 * them into the DOM with textContent / setAttribute, never as markup.
 *
 * Test hooks: `g.peer[data-peer=NAME]` (with `data-self="1"` on this router),
 * `line.conn[data-a][data-b][data-state][data-path]`, `g.endpoint`,
 * `g.target`, and `body[data-ws]` = "connecting" | "live" | "reconnecting".
 */

import { applyEvent } from './model.js';

const SCRIPT = String.raw`
'use strict';
${applyEvent.toString()}
var SVGNS = 'http://www.w3.org/2000/svg';
var report = null;
var backoff = 500;
var renders = 0;
function el(name, attrs, parent) {
  var e = document.createElementNS(SVGNS, name);
  for (var k in attrs) e.setAttribute(k, String(attrs[k]));
  if (parent) parent.appendChild(e);
  return e;
}
function text(parent, x, y, s, cls) {
  var t = el('text', { x: x, y: y, 'class': cls || '' }, parent);
  t.textContent = s;
  return t;
}
function short(name) { return name.length > 8 ? name.slice(-8) : name; }
function edgeStyle(state, path) {
  if (state === 'established') return path === 'fastdp' ? 'est-fastdp' : path === 'sleeve' ? 'est-sleeve' : 'est';
  if (state === 'failed' || state === 'retrying') return 'bad';
  return 'pending';
}
function render() {
  renders++;
  var svg = document.getElementById('mesh');
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (!report) return;
  var R = report.Router;
  var self = R.Name;
  var peers = R.Peers.slice().sort(function (a, b) {
    if (a.Name === self) return -1;
    if (b.Name === self) return 1;
    return a.Name < b.Name ? -1 : a.Name > b.Name ? 1 : 0;
  });
  if (!peers.some(function (p) { return p.Name === self; })) {
    peers.unshift({ Name: self, NickName: R.NickName, Connections: [] });
  }
  var known = {};
  peers.forEach(function (p) { known[p.Name] = p; });
  var targets = R.Connections.filter(function (c) { return !c.Name || !known[c.Name]; });
  var n = peers.length + targets.length;
  var W = 800, H = 600, cx = W / 2, cy = H / 2 + 20;
  var rad = n <= 1 ? 0 : Math.min(210, 60 + 40 * n);
  var pos = {};
  var i = 0;
  function place(key) {
    var a = -Math.PI / 2 + (2 * Math.PI * i++) / Math.max(n, 1);
    pos[key] = { x: cx + rad * Math.cos(a), y: cy + rad * Math.sin(a) };
  }
  peers.forEach(function (p) { place('p:' + p.Name); });
  targets.forEach(function (c) { place('t:' + c.Address); });

  var edges = el('g', { 'class': 'edges' }, svg);
  var local = {};
  R.Connections.forEach(function (c) { if (c.Name) local[c.Name] = c; });
  var seen = {};
  peers.forEach(function (p) {
    p.Connections.forEach(function (c) {
      if (!known[c.Name] || c.Name === p.Name) return;
      var a = p.Name < c.Name ? p.Name : c.Name, b = p.Name < c.Name ? c.Name : p.Name;
      var key = a + ' ' + b;
      if (seen[key]) return;
      seen[key] = true;
      var state, path = '';
      var other = a === self ? b : b === self ? a : null;
      if (other !== null && local[other]) {
        state = local[other].State;
        path = local[other].Path || '';
      } else {
        var back = known[c.Name].Connections.some(function (d) { return d.Name === p.Name && d.Established; });
        state = c.Established && back ? 'established' : 'pending';
      }
      var pa = pos['p:' + a], pb = pos['p:' + b];
      var line = el('line', { x1: pa.x, y1: pa.y, x2: pb.x, y2: pb.y, 'class': 'conn ' + edgeStyle(state, path),
        'data-a': a, 'data-b': b, 'data-state': state, 'data-path': path }, edges);
      var t = el('title', {}, line);
      t.textContent = a + ' - ' + b + ': ' + state + (path ? ' ' + path : '') +
        (other !== null && local[other] && local[other].MTU ? ' mtu=' + local[other].MTU : '');
      if (path) text(edges, (pa.x + pb.x) / 2, (pa.y + pb.y) / 2 - 4, path, 'elabel');
    });
  });
  targets.forEach(function (c) {
    var ps = pos['p:' + self], pt = pos['t:' + c.Address];
    var line = el('line', { x1: ps.x, y1: ps.y, x2: pt.x, y2: pt.y, 'class': 'conn target-edge ' + edgeStyle(c.State, c.Path || ''),
      'data-a': self, 'data-b': c.Address, 'data-state': c.State, 'data-path': c.Path || '' }, edges);
    el('title', {}, line).textContent = c.Address + ': ' + c.State + ' ' + c.Info;
  });

  var owned = {};
  if (report.IPAM) report.IPAM.Owned.forEach(function (o) { owned[o.Peer] = o; });
  var nodes = el('g', { 'class': 'nodes' }, svg);
  peers.forEach(function (p) {
    var q = pos['p:' + p.Name];
    var g = el('g', { 'class': 'peer' + (p.Name === self ? ' self' : ''), 'data-peer': p.Name,
      transform: 'translate(' + q.x.toFixed(1) + ',' + q.y.toFixed(1) + ')' }, nodes);
    if (p.Name === self) g.setAttribute('data-self', '1');
    el('title', {}, g).textContent = p.Name + '(' + p.NickName + ')';
    el('circle', { r: 24, 'class': 'node' }, g);
    var o = owned[p.Name];
    if (o) {
      el('circle', { r: 29, 'class': 'share' + (o.Reachable ? '' : ' unreachable'), pathLength: 100,
        'stroke-dasharray': Math.max(0, Math.min(100, o.Percent)).toFixed(2) + ' 100', transform: 'rotate(-90)' }, g);
      text(g, 0, 44, o.Percent.toFixed(1) + '% IPs', 'small');
    }
    text(g, 0, -2, p.NickName || short(p.Name), 'nick');
    text(g, 0, 11, short(p.Name), 'small');
  });
  targets.forEach(function (c) {
    var q = pos['t:' + c.Address];
    var g = el('g', { 'class': 'target', 'data-address': c.Address, transform: 'translate(' + q.x.toFixed(1) + ',' + q.y.toFixed(1) + ')' }, nodes);
    el('circle', { r: 10, 'class': 'ghost' }, g);
    text(g, 0, 24, c.Address, 'small');
    text(g, 0, 36, c.State, 'small');
  });
  var ps = pos['p:' + self];
  report.Endpoints.forEach(function (e, k) {
    // Fan endpoints over the half of the self node facing away from the mesh centre.
    var out = Math.atan2(ps.y - cy, ps.x - cx);
    if (rad === 0) out = -Math.PI / 2;
    var a = out - Math.PI / 2 + (Math.PI * (k + 1)) / (report.Endpoints.length + 1);
    var ex = ps.x + 70 * Math.cos(a), ey = ps.y + 70 * Math.sin(a);
    el('line', { x1: ps.x, y1: ps.y, x2: ex, y2: ey, 'class': 'eplink' }, edges);
    var g = el('g', { 'class': 'endpoint', 'data-id': e.ID, transform: 'translate(' + ex.toFixed(1) + ',' + ey.toFixed(1) + ')' }, nodes);
    el('rect', { x: -6, y: -6, width: 12, height: 12 }, g);
    el('title', {}, g).textContent = (e.Name ? e.Name + ' ' : '') + e.ID + ' ' + e.CIDRs.join(', ');
    text(g, 0, 18, e.Name ? String(e.Name).replace(/\.$/, '') : e.CIDRs.length ? e.CIDRs[0] : e.ID.slice(0, 12), 'small');
  });

  document.getElementById('self').textContent = self + '(' + R.NickName + ')';
  var est = R.Connections.filter(function (c) { return c.State === 'established'; }).length;
  document.getElementById('counts').textContent = peers.length + ' peers, ' + R.Connections.length +
    ' connections (' + est + ' established)' + (report.IPAM ? ', IPAM ' + report.IPAM.Status : '');
}
var drawQueued = false;
function redraw() {
  if (drawQueued) return;
  drawQueued = true;
  requestAnimationFrame(function () { drawQueued = false; render(); });
}
function setState(s, msg) {
  document.body.setAttribute('data-ws', s);
  document.getElementById('ws').textContent = msg;
}
function connect() {
  setState(report ? 'reconnecting' : 'connecting', 'connecting...');
  var ws;
  try {
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/events');
  } catch (e) {
    retry();
    return;
  }
  ws.onmessage = function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    if (!ev || typeof ev.type !== 'string') return;
    if (ev.type === 'snapshot') { backoff = 500; setState('live', 'live'); }
    var next = applyEvent(report, ev);
    if (next !== report) { report = next; redraw(); }
  };
  ws.onclose = function () { retry(); };
}
function retry() {
  var d = backoff * (0.8 + 0.4 * Math.random());
  backoff = Math.min(backoff * 2, 10000);
  setState('reconnecting', 'disconnected; reconnecting in ' + (d / 1000).toFixed(1) + 's');
  setTimeout(connect, d);
}
connect();
`;

/** The page, as served on `GET /` with Content-Type text/html; charset=utf-8. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tsweave mesh</title>
<style>
  body { margin: 0; font: 13px/1.4 system-ui, sans-serif; background: #fafafa; color: #222; }
  header { display: flex; gap: 16px; align-items: baseline; padding: 8px 14px; background: #233; color: #eee; }
  header h1 { font-size: 15px; margin: 0; }
  #ws { margin-left: auto; }
  body[data-ws="live"] #ws { color: #7d7; }
  body[data-ws="reconnecting"] #ws { color: #fb5; }
  svg { display: block; width: 100%; max-width: 800px; height: auto; margin: 0 auto; }
  .conn { stroke-width: 3; }
  .est-sleeve { stroke: #2b7bb9; }
  .est-fastdp { stroke: #2ca02c; }
  .est { stroke: #777; }
  .pending { stroke: #e69500; stroke-dasharray: 6 4; }
  .bad { stroke: #d62728; stroke-dasharray: 3 4; }
  .eplink { stroke: #bbb; stroke-width: 1; }
  .node { fill: #fff; stroke: #456; stroke-width: 2; }
  .self .node { fill: #ffe9a8; stroke: #b07d00; stroke-width: 3; }
  .share { fill: none; stroke: #8e5ec4; stroke-width: 5; }
  .share.unreachable { stroke: #d62728; }
  .ghost { fill: #eee; stroke: #999; stroke-dasharray: 2 2; }
  .endpoint rect { fill: #9cd; stroke: #357; }
  text { text-anchor: middle; }
  .nick { font-weight: 600; font-size: 12px; }
  .small, .elabel { font-size: 10px; fill: #555; }
  .legend { display: flex; gap: 14px; justify-content: center; padding: 4px; font-size: 12px; }
  .legend i { display: inline-block; width: 18px; height: 0; border-top: 3px solid; vertical-align: middle; margin-right: 4px; }
</style>
</head>
<body data-ws="connecting">
<header><h1>tsweave mesh</h1><span id="self"></span><span id="counts"></span><span id="ws">connecting...</span></header>
<div class="legend">
  <span><i style="border-color:#2b7bb9"></i>sleeve</span>
  <span><i style="border-color:#2ca02c"></i>fastdp</span>
  <span><i style="border-color:#777"></i>established (remote)</span>
  <span><i style="border-color:#e69500;border-top-style:dashed"></i>pending</span>
  <span><i style="border-color:#d62728;border-top-style:dotted"></i>failed / retrying</span>
  <span><i style="border-color:#8e5ec4"></i>IPAM share</span>
</div>
<svg id="mesh" viewBox="0 0 800 600" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="mesh topology"></svg>
<script>${SCRIPT}</script>
</body>
</html>
`;
