// Flux Secrets dashboard: plain JavaScript, no dependencies. It reads the
// dashboard's own JSON API (names, times, peers, counts — never a value),
// builds the page with textContent only, draws charts as SVG, and follows
// /api/events (server-sent events, read with fetch) to refresh what is on
// screen as changes happen.
//
// Signing in: the link fluxctl dashboard printed carries a one-time code
// (?code=…). The page takes it out of the address bar, trades it at
// /api/session for the session secret, and keeps that in this tab's
// sessionStorage (this origin only, port included; it survives a reload)
// and sends it as `Authorization: Bearer …` on every request. No cookie is
// used: cookies are shared by every port of a host, so another local
// user's server on 127.0.0.1:OTHER would be sent them.
'use strict';

const SESSION_KEY = 'flux-dashboard-session';
const SIGNED_OUT = 'Signed out: this tab has no dashboard session (the link was opened again, or fluxctl dashboard was stopped or restarted). Run fluxctl dashboard for a new link.';
let session = null;

const SVG = 'http://www.w3.org/2000/svg';

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'onclick' || k === 'onchange') node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function ago(ms) {
  if (!ms) return '—';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + 's ago';
  if (s < 3600) return Math.floor(s / 60) + 'm ago';
  if (s < 86400) return Math.floor(s / 3600) + 'h ago';
  return Math.floor(s / 86400) + 'd ago';
}

function when(ms) {
  return el('time', { title: ms ? new Date(ms).toISOString() : '' }, ago(ms));
}

// Other tabs of this dashboard (same origin, this browser) may ask for the
// session, so that a link opened in a new tab works too.
const tabs = 'BroadcastChannel' in window ? new BroadcastChannel('flux-dashboard') : null;
if (tabs) {
  tabs.addEventListener('message', (m) => {
    if (m.data === 'session?' && session) tabs.postMessage({ session });
  });
}

function fromOtherTab() {
  return new Promise((resolve) => {
    if (!tabs) { resolve(null); return; }
    const answer = (m) => {
      if (m.data && typeof m.data.session === 'string') done(m.data.session);
    };
    const done = (s) => { clearTimeout(timer); tabs.removeEventListener('message', answer); resolve(s); };
    const timer = setTimeout(() => done(null), 300);
    tabs.addEventListener('message', answer);
    tabs.postMessage('session?');
  });
}

function keep(s) {
  session = s;
  try {
    if (s) sessionStorage.setItem(SESSION_KEY, s); else sessionStorage.removeItem(SESSION_KEY);
  } catch (_) { /* storage disabled: the session lives in this page only */ }
}

// The printed link's code, traded for the session; else the session this
// tab already holds, or one another open tab hands over.
async function signIn() {
  const params = new URLSearchParams(location.search);
  const code = params.get('code');
  if (code !== null) {
    // Out of the address bar (and so out of a reload) before it is used.
    history.replaceState(null, '', location.pathname + location.hash);
    const r = await fetch('/api/session', {
      headers: { 'Flux-Dashboard-Code': code }, credentials: 'omit', cache: 'no-store',
    });
    if (!r.ok) throw new Error(await r.text());
    keep((await r.json()).session);
    return;
  }
  try { session = sessionStorage.getItem(SESSION_KEY); } catch (_) { session = null; }
  if (!session) keep(await fromOtherTab());
  if (!session) throw new Error(SIGNED_OUT);
}

function authorized() {
  return session ? { Authorization: 'Bearer ' + session } : {};
}

function signedOut() {
  keep(null);
  return new Error(SIGNED_OUT);
}

async function api(path) {
  const r = await fetch(path, { headers: authorized(), credentials: 'omit', cache: 'no-store' });
  if (r.status === 401) throw signedOut();
  if (!r.ok) throw new Error(path + ': ' + r.status + ' ' + (await r.text()));
  const type = r.headers.get('content-type') || '';
  return type.startsWith('application/json') ? r.json() : r.text();
}

function banner(message) {
  const b = document.getElementById('banner');
  b.textContent = message || '';
  b.hidden = !message;
}

function toast(text) {
  const box = document.getElementById('toasts');
  const t = el('div', { class: 'toast' }, text);
  box.append(t);
  setTimeout(() => t.remove(), 4000);
  while (box.children.length > 5) box.firstChild.remove();
}

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'project' && parts[1]) return { view: 'project', project: decodeURIComponent(parts[1]), params };
  if (parts[0] === 'audit') return { view: 'audit', params };
  if (parts[0] === 'metrics') return { view: 'metrics', params };
  return { view: 'projects', params };
}

function section(title, ...children) {
  return el('section', {}, el('h2', {}, title), ...children);
}

function table(headers, rows, empty) {
  if (!rows.length) return el('p', { class: 'muted' }, empty);
  return el('table', {},
    el('thead', {}, el('tr', {}, headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows));
}

function errorNote(e) {
  if (!e) return null;
  return el('p', { class: e.denied ? 'note' : 'error' },
    e.denied ? 'Not permitted for your user: ' + e.message : e.message);
}

// ----------------------------------------------------------------- views

async function viewProjects() {
  const o = await api('/api/overview');
  const out = [];
  if (o.daemon) {
    out.push(el('p', { class: 'muted' },
      'fluxd ', o.daemon.version, ' (pid ', o.daemon.pid, '), started ', when(o.daemon.started_at_ms),
      ' · state ', el('code', {}, o.daemon.state_dir), ' · control ', el('code', {}, o.control_socket)));
  }
  out.push(errorNote(o.error));
  for (const p of o.problems || []) out.push(el('p', { class: 'error' }, p));
  if (o.audit) {
    const a = o.audit;
    out.push(el('p', { class: a.error ? 'error' : 'muted' },
      a.path ? 'Audit log ' : 'Audit log disabled',
      a.path ? el('code', {}, a.path) : null,
      a.path ? ' (reads: ' + a.reads + ')' : '',
      a.error ? ' — ' + a.error : '',
      a.dropped ? ' — ' + a.dropped + ' entries lost' : ''));
  }
  const rows = (o.projects || []).map((p) => el('tr', { 'data-project': p.name },
    el('td', {}, el('a', { href: '#/project/' + encodeURIComponent(p.name) }, p.name)),
    el('td', { class: 'num' }, p.secrets),
    el('td', {}, p.healthy === null ? el('span', { class: 'pill' }, 'unknown')
      : p.healthy ? el('span', { class: 'pill ok' }, 'healthy') : el('span', { class: 'pill bad' }, 'error')),
    el('td', { class: 'wrap' }, p.last_error || '—'),
    el('td', {}, p.loaded_at_ms ? when(p.loaded_at_ms) : '—'),
    el('td', {}, p.live ? el('span', { class: 'pill ok', title: 'change events followed' }, 'live') : el('span', { class: 'pill', title: 'refreshed from the project list' }, 'polled')),
    el('td', {}, el('code', {}, p.socket)),
    o.fleet ? el('td', { title: (p.hosts || []).join('\n') }, p.hosts ? p.hosts.length + ' host(s)' : 'every host') : null));
  out.push(section('Projects', table(
    ['Project', 'Secrets', 'Health', 'Last error', 'Loaded', 'Updates', 'Socket'].concat(o.fleet ? ['Hosts'] : []), rows,
    o.error ? 'No project can be listed.' : 'No projects yet: fluxctl projects create NAME')));
  if (o.fleet) {
    const f = o.fleet;
    out.push(section('Fleet',
      el('p', {}, 'Fleet ', el('code', {}, f.fleet_id || 'unknown'), ' · host list version ', f.hosts_version,
        ' · this host ', f.member ? 'is' : 'is not', ' a member'),
      (f.problems || []).map((p) => el('p', { class: 'error' }, p)),
      table(['Host (join token)', ''], (f.hosts || []).map((h) => el('tr', {},
        el('td', {}, el('code', {}, h)), el('td', {}, h === f.this_host ? 'this host' : ''))), 'No hosts.'),
      el('p', { class: 'muted' }, 'Projects served by some hosts only (every other project: by every host):'),
      table(['Project', 'Hosts'], Object.entries(f.assigned || {}).map(([p, on]) => el('tr', {},
        el('td', {}, p), el('td', {}, on.map((r) => el('code', {}, r))))), 'None.')));
  }
  return out;
}

function chart(activity) {
  const w = 1100; const h = 200; const pad = 28;
  const n = activity.reads.length;
  const max = Math.max(1, ...activity.reads, ...activity.denials);
  const bw = (w - pad * 2) / n;
  const y = (v) => h - pad - (v / max) * (h - pad * 2);
  const g = svg('svg', { viewBox: '0 0 ' + w + ' ' + h, class: 'chart', role: 'img' },
    svg('title', {}, 'Reads and denials over time'));
  g.append(svg('line', { x1: pad, y1: h - pad, x2: w - pad, y2: h - pad, class: 'axis' }));
  g.append(svg('text', { x: 2, y: pad, class: 'label' }, String(max)));
  for (let i = 0; i < n; i++) {
    const x = pad + i * bw;
    const t = new Date(activity.start_ms + i * activity.bucket_ms).toISOString();
    if (activity.reads[i]) {
      g.append(svg('rect', { x: x + 1, y: y(activity.reads[i]), width: Math.max(1, bw / 2 - 1), height: h - pad - y(activity.reads[i]), class: 'reads' },
        svg('title', {}, t + ': ' + activity.reads[i] + ' reads')));
    }
    if (activity.denials[i]) {
      g.append(svg('rect', { x: x + bw / 2, y: y(activity.denials[i]), width: Math.max(1, bw / 2 - 1), height: h - pad - y(activity.denials[i]), class: 'denials' },
        svg('title', {}, t + ': ' + activity.denials[i] + ' denials')));
    }
  }
  const end = activity.start_ms + n * activity.bucket_ms;
  g.append(svg('text', { x: pad, y: h - 8, class: 'label' }, new Date(activity.start_ms).toLocaleString()));
  g.append(svg('text', { x: w - pad, y: h - 8, class: 'label end' }, 'now'));
  // Rotations as ticks on the time axis.
  for (const r of activity.rotations) {
    const x = pad + ((r.time_ms - activity.start_ms) / (end - activity.start_ms)) * (w - pad * 2);
    g.append(svg('circle', { cx: x, cy: h - pad, r: 4, class: 'rotation ' + r.op },
      svg('title', {}, new Date(r.time_ms).toISOString() + ' ' + r.op + ' ' + (r.name || r.detail || '') + ' by uid ' + r.uid)));
  }
  return el('div', { class: 'chartbox' }, g,
    el('p', { class: 'legend' }, el('span', { class: 'key reads' }), ' reads ',
      el('span', { class: 'key denials' }), ' denials ', el('span', { class: 'key rotation' }), ' writes (rotation timeline)'));
}

async function viewProject(name) {
  const [p, activity] = await Promise.all([
    api('/api/projects/' + encodeURIComponent(name)),
    api('/api/activity?project=' + encodeURIComponent(name) + '&hours=24'),
  ]);
  const out = [el('p', {}, el('a', { href: '#/' }, '← Projects'))];
  const info = p.info;
  out.push(el('h1', {}, name, ' ', info ? (info.healthy ? el('span', { class: 'pill ok' }, 'healthy') : el('span', { class: 'pill bad' }, 'error')) : null,
    ' ', p.live ? el('span', { class: 'pill ok' }, 'live') : el('span', { class: 'pill' }, 'polled')));
  if (info) {
    out.push(el('p', { class: 'muted' }, info.secrets, ' secrets · generation ', info.generation, ' · loaded ', when(info.loaded_at_ms),
      ' · socket ', el('code', {}, info.socket)));
    if (info.last_error) out.push(el('p', { class: 'error' }, info.last_error));
  }
  out.push(errorNote(p.error));
  const rows = p.secrets.map((s) => el('tr', { 'data-secret': s.name },
    el('td', {}, el('code', {}, s.name)),
    el('td', {}, when(s.set_at_ms)),
    el('td', {}, el('code', { title: 'keyed digest: equal digests mean equal values' }, s.digest)),
    el('td', {}, s.set_by ? 'uid ' + s.set_by.uid + (s.set_by.exe ? ' (' + s.set_by.exe + ')' : '') + (s.set_by.op === 'set_many' || s.set_by.op === 'write_many' ? ', import' : '') : '—')));
  out.push(section('Secrets', table(['Name', 'Set', 'Digest', 'Set by'], rows, p.error ? 'Names cannot be listed.' : 'No secrets yet.'),
    el('p', { class: 'muted' }, 'Names and digests only. Values are never sent to this page.')));
  if (activity.error) {
    out.push(section('Activity (24 h)', errorNote(activity.error)));
  } else {
    out.push(section('Activity (24 h)', chart(activity),
      el('p', { class: 'muted' }, 'From the audit log: reads are counted in summaries written at least every [audit] summary_interval.')));
    const rot = activity.rotations.slice().reverse().map((r) => el('tr', {},
      el('td', {}, when(r.time_ms)), el('td', {}, r.op), el('td', {}, el('code', {}, r.name || r.detail || '—')),
      el('td', {}, 'uid ' + r.uid + (r.exe ? ' (' + r.exe + ')' : '')), el('td', {}, r.result)));
    out.push(section('Rotation timeline', table(['When', 'Operation', 'Name', 'By', 'Result'], rot, 'No writes in the last 24 hours.')));
  }
  return out;
}

async function viewAudit(params) {
  const project = params.get('project') || '';
  const op = params.get('op') || '';
  const denied = params.get('denied') === '1';
  const own = params.get('own') === '1';
  const q = new URLSearchParams({ project, op, denied: denied ? '1' : '0', own: own ? '1' : '0', limit: '300' });
  const [a, o] = await Promise.all([api('/api/audit?' + q), api('/api/overview')]);
  const go = () => {
    const next = new URLSearchParams();
    const pv = document.getElementById('f-project').value;
    const ov = document.getElementById('f-op').value;
    if (pv) next.set('project', pv);
    if (ov) next.set('op', ov);
    if (document.getElementById('f-denied').checked) next.set('denied', '1');
    if (document.getElementById('f-own').checked) next.set('own', '1');
    location.hash = '#/audit?' + next.toString();
  };
  const projects = (o.projects || []).map((p) => p.name);
  const filters = el('div', { class: 'filters' },
    el('label', {}, 'Project ', el('select', { id: 'f-project', onchange: go },
      el('option', { value: '' }, 'all'),
      projects.map((n) => el('option', { value: n, selected: n === project }, n)))),
    el('label', {}, 'Operation ', el('select', { id: 'f-op', onchange: go },
      el('option', { value: '' }, 'all'),
      (a.ops || []).map((n) => el('option', { value: n, selected: n === op }, n)))),
    el('label', {}, el('input', { type: 'checkbox', id: 'f-denied', checked: denied, onchange: go }), ' denied only'),
    el('label', { title: 'The requests this dashboard makes to keep the page current' },
      el('input', { type: 'checkbox', id: 'f-own', checked: own, onchange: go }), " this dashboard's own reads"),
    a.own_hidden ? el('span', { class: 'muted', id: 'own-hidden' }, a.own_hidden + " of this dashboard's own reads hidden") : null);
  // The peer in one short cell: uid, and the executable's file name with
  // its pid; the full path shows on hover.
  const peer = (e) => {
    const exe = e.exe ? e.exe.split('/').pop() : '';
    const proc = exe ? exe + (e.pid ? '[' + e.pid + ']' : '') : (e.pid ? 'pid ' + e.pid : '');
    return el('td', { class: 'peer', title: e.exe || '' }, 'uid ' + e.uid + (proc ? ' ' + proc : ''));
  };
  // The peer's systemd unit, from the kernel; its slice, cgroup and the
  // executable's hash (when a rule checked it) show on hover.
  const unit = (e) => {
    const more = [e.slice ? 'slice ' + e.slice : '', e.cgroup ? 'cgroup ' + e.cgroup : '',
      e.exe_sha256 ? 'sha256 ' + e.exe_sha256 : ''].filter((x) => x).join('\n');
    return el('td', { class: 'unit', title: more }, e.unit || '—');
  };
  const rows = (a.entries || []).slice().reverse().map((e) => el('tr', { class: e.allowed ? '' : 'denied' },
    el('td', {}, when(e.time_ms)),
    el('td', { class: 'num' }, e.count),
    el('td', {}, e.project || '—'),
    el('td', {}, e.op),
    el('td', {}, el('code', {}, e.name || '—')),
    peer(e),
    unit(e),
    el('td', {}, e.allowed ? 'allowed' : 'denied'),
    el('td', {}, e.result + (e.detail ? ' (' + e.detail + ')' : ''))));
  return [section('Audit', filters, errorNote(a.error),
    table(['When', 'Count', 'Project', 'Operation', 'Name', 'Peer', 'Unit', 'Decision', 'Result'], rows, 'No entries match.'))];
}

async function viewMetrics() {
  const text = await api('/api/metrics');
  return [section('Metrics', el('p', { class: 'muted' }, 'What ', el('code', {}, 'fluxctl metrics'), ' prints (Prometheus text format).'),
    el('pre', { class: 'metrics' }, text))];
}

// ----------------------------------------------------------------- render

let rendering = false;
let again = false;

async function render() {
  if (rendering) { again = true; return; }
  rendering = true;
  const r = route();
  for (const [id, view] of [['nav-projects', 'projects'], ['nav-audit', 'audit'], ['nav-metrics', 'metrics']]) {
    document.getElementById(id).classList.toggle('active', r.view === view || (view === 'projects' && r.view === 'project'));
  }
  try {
    let nodes;
    if (r.view === 'project') nodes = await viewProject(r.project);
    else if (r.view === 'audit') nodes = await viewAudit(r.params);
    else if (r.view === 'metrics') nodes = await viewMetrics();
    else nodes = await viewProjects();
    document.getElementById('main').replaceChildren(...nodes.flat().filter(Boolean));
    banner('');
  } catch (e) {
    banner(e.message);
  } finally {
    rendering = false;
    if (again) { again = false; render(); }
  }
}

let pending = null;
function soon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; render(); }, 100);
}

// One change event: a toast, and a refresh of what it touches.
function changed(data) {
  let c;
  try { c = JSON.parse(data); } catch (_) { return; }
  const names = (c.names || []).join(', ');
  const what = {
    set: 'set', deleted: 'deleted', reloaded: 'reloaded', changed: 'changed',
    project_created: 'project created', project_deleted: 'project deleted',
  }[c.kind] || c.kind;
  if (c.project) toast(c.project + ': ' + (names ? names + ' ' : '') + what);
  const r = route();
  if (r.view !== 'project' || r.project === c.project || !c.project) soon();
}

// /api/events with the session header (EventSource cannot send one): reads
// the stream of `data:` lines, and reconnects a second after it ends.
async function follow() {
  const live = document.getElementById('live');
  const off = (text) => { live.textContent = text; live.className = 'live off'; };
  for (;;) {
    try {
      const r = await fetch('/api/events', { headers: authorized(), credentials: 'omit', cache: 'no-store' });
      if (r.status === 401) {
        off('signed out');
        banner(signedOut().message);
        return;
      }
      if (!r.ok || !r.body) throw new Error('/api/events: ' + r.status);
      live.textContent = 'live';
      live.className = 'live on';
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let end;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart());
          if (data.length) changed(data.join('\n'));
        }
      }
    } catch (_) { /* reconnect below */ }
    off('reconnecting…');
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

document.addEventListener('DOMContentLoaded', async () => {
  try {
    await signIn();
  } catch (e) {
    banner(e.message);
    document.getElementById('main').replaceChildren();
    const live = document.getElementById('live');
    live.textContent = 'signed out';
    live.className = 'live off';
    return;
  }
  window.addEventListener('hashchange', render);
  setInterval(() => { if (document.visibilityState === 'visible') soon(); }, 30000);
  render();
  follow();
});
