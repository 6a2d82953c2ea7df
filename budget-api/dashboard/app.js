// Budget's dashboard. Plain JavaScript with no build step: it reads the REST API, draws with SVG, and
// refreshes a panel whenever the WebSocket says something it shows has changed. Figures are shown as
// the API wrote them: money keeps every digit (see `parse`), never rounded through a float.
'use strict';

const $ = (selector) => document.querySelector(selector);
const KEY_STORE = 'budget.api_key';
const TOPICS = ['budget_alerts', 'allocation_updates', 'price_updates', 'usage_updates'];
const PALETTE = ['#1f6feb', '#e8590c', '#2f9e44', '#ae3ec9', '#f59f00', '#0c8599', '#e64980', '#5c7cfa'];

const state = {
  key: sessionStorage.getItem(KEY_STORE),
  me: null,
  position: 0, // the highest log position any message or answer has shown us
  socket: null,
  retry: 0,
  alertsView: 'open',
  alertsExpanded: false, // the first few alerts, or all of the page
  openAlerts: [], // the open alerts last shown: what "Acknowledge all" acknowledges
  recordPages: [null], // `before` cursors: [newest page, …]; the last one is shown
};

// ---- Numbers -------------------------------------------------------------------------------------

// A JSON number with a fraction, kept as the text the server wrote: `${d}` is that text, `+d` a
// float for drawing. (JSON.parse's reviver sees the source text in current browsers.)
class Exact {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
  valueOf() { return Number(this.text); }
  toJSON() { return this.text; }
}

function parse(text) {
  return JSON.parse(text, (key, value, context) =>
    typeof value === 'number' && context && /[.eE]/.test(context.source) ? new Exact(context.source) : value);
}

function group(digits) {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

// `$1,234.5678`: every digit the API gave, thousands grouped. Exponents (never written by the API)
// fall back to the float.
function money(v) {
  if (v === null || v === undefined) return '—';
  let text = String(v);
  if (/e/i.test(text)) text = Number(text).toFixed(20).replace(/0+$/, '').replace(/\.$/, '');
  const negative = text.startsWith('-');
  const [whole, fraction] = text.replace('-', '').split('.');
  return (negative ? '-$' : '$') + group(whole) + (fraction ? '.' + fraction : '');
}

function tokens(n) {
  return n === null || n === undefined ? '—' : group(String(n));
}

function plural(n, one, many) {
  return `${group(String(n))} ${Number(n) === 1 ? one : many || one + 's'}`;
}

function percent(v) {
  return v === null || v === undefined ? '—' : `${v}%`;
}

// ---- Time ----------------------------------------------------------------------------------------

function utc(iso) {
  if (!iso) return '—';
  return iso.replace('T', ' ').replace(/:\d\d(\.\d+)?Z$/, ' UTC');
}

function span(ms) {
  const minutes = Math.round(Math.abs(ms) / 60000);
  if (minutes < 1) return 'less than a minute';
  if (minutes < 60) return plural(minutes, 'min', 'min');
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${plural(Math.floor(hours / 24), 'day')} ${hours % 24} h`;
}

function fromNow(iso) {
  const ms = Date.parse(iso) - Date.now();
  return ms >= 0 ? `in ${span(ms)}` : `${span(ms)} ago`;
}

// ---- The API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = body && body.error;
    super(e && e.message ? e.message : `HTTP ${status}`);
    this.status = status;
    this.code = e && e.code;
  }
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? parse(text) : null; } catch (_) { /* not JSON: the status says enough */ }
  if (!response.ok) throw new ApiError(response.status, data);
  if (data && Number.isInteger(data.position)) seen(data.position);
  return data;
}

function seen(position) {
  if (Number.isInteger(position) && position > state.position) state.position = position;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

// ---- DOM helpers ---------------------------------------------------------------------------------

// el('td', {class: 'num', dataset: {field: 'cost'}}, 'text', child…)
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k === 'on') for (const [event, fn] of Object.entries(v)) node.addEventListener(event, fn);
    else if (k === 'text') node.textContent = v;
    // Through CSSOM: the page's CSP refuses style attributes, not style properties.
    else if (k === 'style') node.style.cssText = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function table(node, head, rows) {
  node.replaceChildren(
    el('thead', {}, el('tr', {}, ...head.map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, ...rows));
}

function short(id) {
  return String(id).slice(-8); // the random end of a UUIDv7, as the CLI shows it
}

function may(scope) {
  const order = ['read', 'write', 'admin'];
  return state.me && order.indexOf(state.me.scope) >= order.indexOf(scope);
}

// ---- Limits --------------------------------------------------------------------------------------

async function loadLimits() {
  const status = await api('/api/status');
  const now = Date.parse(status.at);
  // By budget: its id, and its cards and the limits they show.
  const byBudget = new Map();
  const add = (item, card) => {
    if (!byBudget.has(item.budget_id)) byBudget.set(item.budget_id, { name: item.budget_name, cards: [], policies: new Set() });
    const b = byBudget.get(item.budget_id);
    b.cards.push(card);
    b.policies.add(item.policy_id);
  };
  for (const w of status.windows) add(w, gauge(w, now));
  // A per-task or per-session limit before its first task: shown, or it would look as if not set.
  for (const p of status.waiting || []) add(p, waiting(p));
  // A per-task or per-session limit shows its most recent windows: say how many it has in all.
  for (const m of status.more_windows || []) {
    const w = status.windows.find((x) => x.policy_id === m.policy_id);
    const each = w && w.period === 'per_session' ? 'session' : 'task';
    if (w) add(w, el('p', { class: 'hint more-windows', dataset: { policy: m.policy_id },
      text: `${kind(w)} · ${w.scope}: the ${m.shown} most recent of ${m.total.toLocaleString('en-US')} ${each} windows; one ${each}'s: budget explain ${m.policy_id} --window ${each}:ID` }));
  }
  const sections = [...byBudget].map(([id, b]) =>
    el('section', { class: 'budget', 'aria-label': `budget ${b.name}`, dataset: { budget: id } },
      el('div', { class: 'budget-head' },
        el('h3', { text: `Budget ${b.name}` }),
        may('admin')
          ? el('button', { type: 'button', class: 'link', dataset: { action: 'manage' }, on: { click: () => manageBudget(id, b) } }, 'Rename or archive')
          : null),
      el('div', { class: 'gauges' }, ...b.cards)));
  $('#gauges').replaceChildren(...(sections.length ? sections
    : [el('p', { class: 'hint', text: 'No limits yet. Set one with `budget set_limit daily 20.0`.' })]));
}

// "daily hard limit", or "daily (Europe/Berlin) warn" for windows that begin in another zone: a day
// in Berlin is not the UTC day of the card beside it.
function kind(p) {
  const zone = p.timezone && p.timezone !== 'UTC' ? ` (${p.timezone})` : '';
  return `${p.period.replace('_', ' ')}${zone} ${p.type.replace('_', ' ')}`;
}

function gauge(w, now) {
  const meters = [];
  if (w.cost_limit !== null) {
    meters.push(meter('cost', w.used_cost, w.reserved_cost, w.cost_limit, w.remaining_cost, money));
  }
  if (w.token_limit !== null) {
    meters.push(meter('tokens', w.used_tokens, w.reserved_tokens, w.token_limit, w.remaining_tokens, tokens));
  }
  const card = el('article', { class: `gauge state-${w.state}`, dataset: { policy: w.policy_id, window: w.window } },
    el('header', {},
      el('h4', { text: kind(w) }),
      el('span', { class: 'badge', dataset: { field: 'state' }, text: w.state })),
    el('p', { class: 'scope', text: w.scope }),
    ...meters,
    el('p', { class: 'pct' },
      el('span', { dataset: { field: 'percent' }, text: percent(w.percent) }), ' spent, ',
      el('span', { dataset: { field: 'committed_percent' }, text: percent(w.committed_percent) }),
      ' with reservations'),
    // A window that never resets is one task's or session's: its name ("task task-9") tells it apart.
    el('p', { class: 'when' }, `${plural(w.records, 'record')} · ${w.resets_at ? `resets ${fromNow(w.resets_at)}` : w.window.replace(':', ' ')}`),
    el('p', { class: 'when', dataset: { field: 'projection' }, text: projection(w, now) }),
    w.note ? el('p', { class: 'hint', text: w.note }) : null,
    el('p', { class: 'actions' },
      el('button', { type: 'button', class: 'link', on: { click: () => explain(w) } }, 'Explain'),
      changeButton(w)));
  return card;
}

function waiting(p) {
  const each = p.period === 'per_session' ? 'session' : 'task';
  return el('article', { class: 'gauge waiting', dataset: { policy: p.policy_id } },
    el('header', {},
      el('h4', { text: `${p.period.replace('_', ' ')} ${p.type.replace('_', ' ')}` }),
      el('span', { class: 'badge', text: 'no window yet' })),
    el('p', { class: 'scope', text: p.scope }),
    el('p', { class: 'figures', text: `limit ${limitWords(p)} per ${each}` }),
    el('p', { class: 'hint', text: `Each ${each} gets its own window with its first call or reservation.` }),
    el('p', { class: 'actions' }, changeButton(p)));
}

// One bar: used, then reserved after it, against the limit.
function meter(metric, used, reserved, limit, remaining, format) {
  const whole = Number(limit) || 0;
  const usedShare = whole > 0 ? Math.min(100, (100 * Number(used)) / whole) : (Number(used) > 0 ? 100 : 0);
  const reservedShare = whole > 0 ? Math.min(100 - usedShare, (100 * Number(reserved)) / whole) : 0;
  const field = metric === 'cost' ? 'cost' : 'tokens';
  return el('div', { class: 'meter', dataset: { metric } },
    el('div', { class: 'bar', role: 'img', 'aria-label': `${metric}: ${format(used)} used and ${format(reserved)} reserved of ${format(limit)}` },
      el('span', { class: 'used', style: `width:${usedShare}%` }),
      el('span', { class: 'reserved', style: `width:${reservedShare}%` })),
    el('p', { class: 'figures' },
      el('span', { dataset: { field: `used_${field}` }, text: format(used) }), ' used + ',
      el('span', { dataset: { field: `reserved_${field}` }, text: format(reserved) }), ' reserved of ',
      el('span', { dataset: { field: `${field === 'cost' ? 'cost' : 'token'}_limit` }, text: format(limit) }),
      metric === 'tokens' ? ' tokens' : null,
      remaining === null || remaining === undefined ? null : ' · ',
      remaining === null || remaining === undefined ? null
        : el('span', { dataset: { field: `remaining_${field}` }, text: `${format(remaining)} left` })));
}

// When the limit runs out at the window's average burn rate so far, if before the reset; "so far"
// from the log's first usage when the log began inside the window (`rate_since`).
function projection(w, now) {
  if (w.state === 'exceeded') return 'Limit reached.';
  if (!w.window_start || !w.window_end) return '';
  const start = Date.parse(w.rate_since || w.window_start);
  const end = Date.parse(w.window_end);
  const elapsed = now - start;
  // Each limit the window has (dollars, tokens): what was spent of it, and what is left after reservations.
  const limits = [];
  if (w.cost_limit !== null) limits.push([Number(w.used_cost), Number(w.cost_limit) - Number(w.used_cost) - Number(w.reserved_cost)]);
  if (w.token_limit !== null) limits.push([Number(w.used_tokens), Number(w.token_limit) - Number(w.used_tokens) - Number(w.reserved_tokens)]);
  if (elapsed <= 0 || limits.every(([used]) => used <= 0)) return 'No spend yet in this window.';
  if (limits.some(([, left]) => left <= 0)) return 'Fully committed: reservations take what is left.';
  // The first of its limits to run out decides.
  const eta = Math.min(...limits.filter(([used]) => used > 0).map(([used, left]) => (left / used) * elapsed));
  if (now + eta >= end) return 'At this rate, not exhausted before the reset.';
  return `At this rate, exhausted in ${span(eta)} (${utc(new Date(now + eta).toISOString())}).`;
}

// ---- Changing a limit ----------------------------------------------------------------------------

// Offered to admin keys only (the API refuses the others with 403 anyway). The form is a dialog, not
// part of the card: live updates redraw the cards several times a second under traffic.
function changeButton(p) {
  return may('admin')
    ? el('button', { type: 'button', class: 'link', dataset: { action: 'change' }, on: { click: () => changeLimit(p) } }, 'Change')
    : null;
}

const POLICY_TYPES = ['ignore', 'warn', 'soft_limit', 'hard_limit'];

function changeLimit(p) {
  const dialog = $('#limit');
  $('#limit-h').textContent = `Change limit: ${kind(p)} · ${p.scope}`;
  const cost = p.cost_limit !== null
    ? el('input', { id: 'limit-cost', inputmode: 'decimal', autocomplete: 'off', value: String(p.cost_limit) }) : null;
  const toks = p.token_limit !== null
    ? el('input', { id: 'limit-tokens', inputmode: 'numeric', autocomplete: 'off', value: String(p.token_limit) }) : null;
  const type = el('select', { id: 'limit-type' },
    ...POLICY_TYPES.map((t) => el('option', { value: t, selected: t === p.type }, t.replace('_', ' '))));
  const error = el('p', { id: 'limit-error', class: 'error', role: 'alert' });
  const save = el('button', { type: 'submit' }, 'Save');
  const disable = el('button', { type: 'button', id: 'limit-disable' }, 'Disable this limit');
  disable.addEventListener('click', () => disableLimit(p, disable, error));
  const form = el('form', { class: 'limit-form', on: { submit: (e) => { e.preventDefault(); saveLimit(p, { cost, toks, type }, save, error); }, input: clears(error) } },
    cost ? el('label', { for: 'limit-cost' }, 'Cost limit, in dollars', cost) : null,
    toks ? el('label', { for: 'limit-tokens' }, 'Token limit', toks) : null,
    el('label', { for: 'limit-type' }, 'Type: a hard limit refuses calls and reservations past it, soft limits and warnings let them through and warn, ignore only counts', type),
    error,
    el('div', { class: 'buttons' }, save, disable),
    el('p', { class: 'hint', text: `The window keeps what it has counted. From the terminal: budget policies list, budget policies disable ${p.policy_id}.` }));
  $('#limit-body').replaceChildren(form);
  if (!dialog.open) dialog.showModal();
  (cost || toks || type).focus();
}

// A form's error is about what was sent: it goes as soon as any field is edited (it read as the new
// value's).
function clears(error) {
  return () => { error.textContent = ''; };
}

// `$1,250.50` → `1250.50`: the digits as typed, sent as text so that no float rounds them.
function amountText(input) {
  return input.value.trim().replace(/^\$/, '').replace(/,/g, '');
}

// The limits typed into `inputs.cost` and `inputs.toks` (either may be absent or, with `optional`,
// empty) as the API takes them, or the first one that is not a number, with what to write instead.
function readLimits(inputs, optional) {
  const limits = {};
  if (inputs.cost && !(optional && !inputs.cost.value.trim())) {
    const text = amountText(inputs.cost);
    if (!/^\d+(\.\d+)?$/.test(text)) {
      return { problem: `“${inputs.cost.value}” is not an amount: write dollars and cents, e.g. 25 or 12.50.`, input: inputs.cost };
    }
    limits.cost_limit = text;
  }
  if (inputs.toks && !(optional && !inputs.toks.value.trim())) {
    const text = amountText(inputs.toks);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) {
      return { problem: `“${inputs.toks.value}” is not a number of tokens: write a whole number, e.g. 200000.`, input: inputs.toks };
    }
    limits.token_limit = Number(text);
  }
  return { limits };
}

// `$5 and 200,000 tokens`: a policy's limits in words.
function limitWords(v) {
  return [v.cost_limit !== null ? money(v.cost_limit) : null, v.token_limit !== null ? `${tokens(v.token_limit)} tokens` : null]
    .filter(Boolean).join(' and ');
}

async function saveLimit(p, inputs, button, error) {
  const read = readLimits(inputs, false);
  if (read.problem) {
    error.textContent = read.problem;
    return read.input.focus();
  }
  const patch = { type: inputs.type.value, ...read.limits };
  button.disabled = true;
  error.textContent = '';
  try {
    const done = await api(`/api/policies/${p.policy_id}`, { method: 'PATCH', body: patch });
    $('#limit').close();
    const v = done.policy;
    $('#limits-note').textContent = !Number.isInteger(done.position)
      ? `Nothing changed: the ${p.period} limit on ${p.scope} was already ${limitWords(v)} (${v.type.replace('_', ' ')}).`
      : `The ${p.period} limit on ${p.scope} is now ${limitWords(v)} (${v.type.replace('_', ' ')}).`;
    await run(loadLimits);
  } catch (e) {
    error.textContent = `Not changed: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

// Two clicks: the first says what disabling does, the second does it.
async function disableLimit(p, button, error) {
  if (button.dataset.armed !== 'true') {
    button.dataset.armed = 'true';
    button.textContent = 'Click again to disable: it stops counting and limiting';
    return;
  }
  button.disabled = true;
  error.textContent = '';
  try {
    await api(`/api/policies/${p.policy_id}/disable`, { method: 'POST', body: {} });
    $('#limit').close();
    $('#limits-note').textContent = `Disabled the ${p.period} limit on ${p.scope}: it no longer counts or limits anything. Turn it back on with: budget policies enable ${p.policy_id}`;
    await run(loadLimits);
  } catch (e) {
    error.textContent = `Not disabled: ${e.message}`;
    button.disabled = false;
  }
}

// ---- A budget: rename, archive -------------------------------------------------------------------

function manageBudget(id, b) {
  const dialog = $('#budget');
  $('#budget-h').textContent = `Budget ${b.name}`;
  const name = el('input', { id: 'budget-name', autocomplete: 'off', spellcheck: 'false', maxlength: '128', value: b.name });
  const error = el('p', { id: 'budget-error', class: 'error', role: 'alert' });
  const save = el('button', { type: 'submit' }, 'Rename');
  const archive = el('button', { type: 'button', id: 'budget-archive' }, 'Archive this budget');
  archive.addEventListener('click', () => archiveBudget(id, b, archive, error));
  const form = el('form', { class: 'limit-form', on: { submit: (e) => { e.preventDefault(); renameBudget(id, b, name, save, error); }, input: clears(error) } },
    el('label', { for: 'budget-name' }, 'Name', name),
    error,
    el('div', { class: 'buttons' }, save, archive),
    el('p', { class: 'hint', text: `Archiving stops its limits counting and limiting for good (an archived budget cannot be brought back); the log keeps everything. From the terminal: budget budgets rename ${shellWord(b.name)} NEW, budget budgets archive ${shellWord(b.name)}.` }));
  $('#budget-body').replaceChildren(form);
  if (!dialog.open) dialog.showModal();
  name.focus();
}

// A name as a shell takes it: quoted when it has more than letters, digits, `.`, `_` and `-`.
function shellWord(name) {
  return /^[\w.-]+$/.test(name) ? name : `'${name.replace(/'/g, "'\\''")}'`;
}

async function renameBudget(id, b, input, button, error) {
  const name = input.value.trim();
  if (!name) {
    error.textContent = 'Give the budget a name.';
    return input.focus();
  }
  button.disabled = true;
  error.textContent = '';
  try {
    const done = await api(`/api/budgets/${id}`, { method: 'PATCH', body: { name } });
    $('#budget').close();
    $('#limits-note').textContent = done.name === b.name && !Number.isInteger(done.position)
      ? `Nothing changed: the budget is already named ${b.name}.`
      : `Renamed budget ${b.name} to ${done.name}.`;
    await run(loadLimits);
  } catch (e) {
    error.textContent = `Not renamed: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

// Two clicks: the first says what archiving does, the second does it.
async function archiveBudget(id, b, button, error) {
  const limits = plural(b.policies.size, 'limit');
  if (button.dataset.armed !== 'true') {
    button.dataset.armed = 'true';
    button.textContent = `Click again to archive: its ${limits} ${b.policies.size === 1 ? 'stops' : 'stop'} counting and limiting, for good`;
    return;
  }
  button.disabled = true;
  error.textContent = '';
  try {
    await api(`/api/budgets/${id}/archive`, { method: 'POST', body: {} });
    $('#budget').close();
    $('#limits-note').textContent = `Archived budget ${b.name}: its ${limits} no longer ${b.policies.size === 1 ? 'counts or limits' : 'count or limit'} anything; the log keeps what ${b.policies.size === 1 ? 'it' : 'they'} counted.`;
    await run(loadLimits);
  } catch (e) {
    error.textContent = `Not archived: ${e.message}`;
    button.disabled = false;
  }
}

// ---- A new limit ---------------------------------------------------------------------------------

const PERIODS = ['hourly', 'daily', 'weekly', 'monthly', 'per_session', 'per_task'];
const TIERS = ['local_lightweight', 'local_midweight', 'remote_heavyweight'];
const SCOPE_FIELDS = [['provider', 'openai'], ['model', 'gpt-4o'], ['component', 'codex'], ['task_type', 'coding'], ['user', 'alice']];

// `budget set_limit` in a form: the same fields, and the same rule that the same budget, period and
// scope replace the limit there.
function newLimit() {
  const dialog = $('#limit');
  $('#limit-h').textContent = 'New limit';
  const input = (id, attrs = {}) => el('input', { id, autocomplete: 'off', spellcheck: 'false', ...attrs });
  const fields = {
    budget: input('new-budget', { value: 'default' }),
    period: el('select', { id: 'new-period' }, ...PERIODS.map((p) => el('option', { value: p, selected: p === 'daily' }, p.replace('_', ' ')))),
    cost: input('new-cost', { inputmode: 'decimal', placeholder: 'e.g. 20 or 12.50' }),
    toks: input('new-tokens', { inputmode: 'numeric', placeholder: 'e.g. 200000' }),
    type: el('select', { id: 'new-type' }, ...POLICY_TYPES.map((t) => el('option', { value: t, selected: t === 'warn' }, t.replace('_', ' ')))),
    tier: el('select', { id: 'new-tier' }, el('option', { value: '' }, 'any'), ...TIERS.map((t) => el('option', { value: t }, t))),
    scope: SCOPE_FIELDS.map(([name, example]) => [name, input(`new-${name}`, { placeholder: `any (e.g. ${example})` })]),
  };
  const label = (node, text) => el('label', { for: node.id }, text, node);
  const error = el('p', { id: 'limit-error', class: 'error', role: 'alert' });
  const save = el('button', { type: 'submit' }, 'Set limit');
  const form = el('form', { class: 'limit-form', on: { submit: (e) => { e.preventDefault(); createLimit(fields, save, error); }, input: clears(error) } },
    label(fields.period, 'Period'),
    label(fields.cost, 'Cost limit, in dollars'),
    label(fields.toks, 'Token limit (give either limit, or both)'),
    label(fields.type, 'Type: a hard limit refuses calls and reservations past it, soft limits and warnings let them through and warn, ignore only counts'),
    el('fieldset', { class: 'limit-scope' },
      el('legend', { text: 'What it counts (each field left empty counts any)' }),
      ...fields.scope.map(([name, node]) => label(node, name.replace('_', ' '))),
      label(fields.tier, 'tier')),
    label(fields.budget, 'Budget (created on first use)'),
    error,
    el('div', { class: 'buttons' }, save),
    el('p', { class: 'hint', text: 'A limit with the same budget, period and scope as an existing one replaces it. From the terminal: budget set_limit daily 20.0 --component codex.' }));
  $('#limit-body').replaceChildren(form);
  if (!dialog.open) dialog.showModal();
  fields.period.focus();
}

async function createLimit(fields, button, error) {
  const read = readLimits(fields, true);
  if (read.problem) {
    error.textContent = read.problem;
    return read.input.focus();
  }
  if (read.limits.cost_limit === undefined && read.limits.token_limit === undefined) {
    error.textContent = 'Give a cost limit, a token limit, or both.';
    return fields.cost.focus();
  }
  const body = { budget: fields.budget.value.trim() || 'default', period: fields.period.value, type: fields.type.value, ...read.limits };
  for (const [name, node] of fields.scope) if (node.value.trim()) body[name] = node.value.trim();
  if (fields.tier.value) body.tier = fields.tier.value;
  button.disabled = true;
  error.textContent = '';
  try {
    const done = await api('/api/policies', { method: 'POST', body });
    $('#limit').close();
    const v = done.policy;
    const what = `${v.period.replace('_', ' ')} limit of ${limitWords(v)} on ${v.scope} in budget ${v.budget_name} (${v.type.replace('_', ' ')})`;
    const o = done.opening;
    $('#limits-note').textContent = (done.created ? `Set a ${what}.` : `Replaced the ${what} (the old one stays in the log).`)
      + (o && o.window_start ? ` Its current window counts what is already in it: ${money(o.posted_cost)} used in ${plural(o.records, 'record')}, ${money(o.pending_cost)} reserved.` : '')
      // The API's notes on a scope that looks like a typo (a component no call named, …).
      + (done.notes || []).map((n) => ` Note: ${n}.`).join('');
    await run(loadLimits);
  } catch (e) {
    error.textContent = `Not set: ${e.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---- Explain -------------------------------------------------------------------------------------

// The events behind a window's figures: this window by default, or any other of the policy's
// (its start for calendar periods, `task:ID` / `session:ID`).
async function explain(w, windowKey = w.window) {
  const dialog = $('#explain');
  $('#explain-h').textContent = `Explain: ${kind(w)} · ${w.scope}`;
  const input = el('input', { id: 'explain-window', value: windowKey, 'aria-label': 'Window', spellcheck: 'false' });
  const pick = el('form', { class: 'controls', on: { submit: (e) => { e.preventDefault(); explain(w, input.value.trim()); } } },
    el('label', { for: 'explain-window', text: 'Window' }), input, el('button', { type: 'submit' }, 'Show'));
  $('#explain-body').replaceChildren(pick, el('p', { text: 'Loading…' }));
  if (!dialog.open) dialog.showModal();
  try {
    const x = await api(`/api/policies/${w.policy_id}/explain${query({ window: windowKey })}`);
    const figures = (f) => `${money(f.posted_cost)} / ${tokens(f.posted_tokens)} tokens in ${plural(f.records, 'record')}, reserved ${money(f.pending_cost)} / ${tokens(f.pending_tokens)} tokens`;
    const shown = x.contributions.slice(-200).reverse();
    const body = el('tbody', {}, ...shown.map((c) => el('tr', {},
      el('td', { class: 'num', text: c.position }),
      el('td', { text: utc(c.recorded_at) }),
      el('td', { text: c.event_type === 'PolicySet' ? 'PolicySet (opening balance)' : c.event_type }),
      el('td', { text: short(c.subject) }),
      el('td', { class: 'num', text: money(c.posted_cost) }),
      el('td', { class: 'num', text: tokens(c.posted_tokens) }),
      el('td', { class: 'num', text: money(c.pending_cost) }),
      el('td', { class: 'num', text: tokens(c.pending_tokens) }))));
    const head = el('thead', {}, el('tr', {}, ...['Position', 'Recorded', 'Event', 'Subject', 'Cost', 'Tokens', 'Reserved $', 'Reserved tokens']
      .map((h) => el('th', { scope: 'col', text: h }))));
    $('#explain-body').replaceChildren(
      pick,
      el('p', {}, el('strong', { text: 'From the log: ' }), figures(x.folded)),
      el('p', {}, el('strong', { text: 'The account: ' }), figures(x.account)),
      el('p', { class: x.matches ? 'ok' : 'error', text: x.matches ? 'They agree.' : 'They differ: run `budget replay --verify`.' }),
      el('p', { class: 'hint', text: x.contributions.length > shown.length
        ? `The ${shown.length} latest of ${plural(x.contributions.length, 'event')}, newest first (all of them: budget explain ${w.policy_id} --window ${windowKey}).`
        : `${plural(x.contributions.length, 'event')}, newest first.` }),
      el('div', { class: 'scroll' }, el('table', {}, head, body)),
      ...(x.contributions.some((c) => c.event_type === 'PolicySet')
        ? [el('p', { class: 'hint', text: `An opening balance is what the window already held when the limit started counting; record by record: budget explain ${w.policy_id} --opening --window ${windowKey}` })]
        : []));
  } catch (e) {
    $('#explain-body').replaceChildren(pick, el('p', { class: 'error', text: e.message }));
  }
}

// ---- Spend over time -----------------------------------------------------------------------------

function spendRequest() {
  const range = $('#spend-range').value;
  const split = $('#spend-split').value;
  let period = $('#spend-period').value;
  const params = { split_by: split, group_by: split, min_position: state.position || undefined };
  let hours;
  if (range === 'day') {
    params.start_time = new Date(Date.now() - 23 * 3600e3).toISOString().slice(0, 13) + ':00:00Z';
    hours = 24;
  } else if (range === 'week' || range === 'month') {
    params.days = range === 'week' ? 7 : 30;
    hours = params.days * 24;
  } else {
    const from = $('#spend-from').value;
    const to = $('#spend-to').value;
    if (!from || !to) return null;
    params.start_time = `${from}T00:00:00Z`;
    params.end_time = new Date(Date.parse(`${to}T00:00:00Z`) + 86400e3).toISOString();
    hours = (Date.parse(params.end_time) - Date.parse(params.start_time)) / 3600e3;
  }
  if (period === 'auto') period = hours <= 72 ? 'hourly' : 'daily';
  params.period = period;
  return params;
}

async function loadSpend() {
  const params = spendRequest();
  if (!params) {
    $('#spend-total').textContent = 'Pick a start and an end date.';
    return;
  }
  const usage = await api(`/api/usage${query(params)}`);
  const split = params.split_by;
  const names = Object.entries(usage.groups[split] || {})
    .sort((a, b) => Number(b[1].cost) - Number(a[1].cost) || a[0].localeCompare(b[0]));
  const colour = new Map(names.map(([name], i) => [name, PALETTE[i % PALETTE.length]]));
  $('#spend-total').replaceChildren(
    el('strong', { dataset: { field: 'total_cost' }, text: money(usage.totals.cost) }),
    ` · ${plural(usage.totals.total_tokens, 'token')} · ${plural(usage.totals.count, 'call')} · ${utc(usage.start_time)} to ${utc(usage.end_time)}`);
  $('#legend').replaceChildren(...names.map(([name, t]) => el('li', {},
    el('span', { class: 'swatch', style: `background:${colour.get(name)}` }),
    `${name} `, el('span', { class: 'num', text: money(t.cost) }))));
  drawChart(usage, params.period, names.map(([n]) => n), colour);
}

function bucketsOf(usage, period) {
  const step = period === 'hourly' ? 3600e3 : 86400e3;
  const byStart = new Map(usage.series.map((b) => [Date.parse(b.start), b]));
  const out = [];
  const first = Date.parse(usage.start_time);
  const end = Date.parse(usage.end_time);
  for (let t = first; t < end; t += step) out.push({ start: t, bucket: byStart.get(t) || null });
  // Buckets the API returned outside the computed grid (a month's start, say) are kept too.
  for (const [t, b] of byStart) if (!out.some((o) => o.start === t)) out.push({ start: t, bucket: b });
  return out.sort((a, b) => a.start - b.start);
}

function drawChart(usage, period, names, colour) {
  const chart = $('#chart');
  const buckets = bucketsOf(usage, period);
  const width = Math.max(300, chart.clientWidth || 600);
  const height = 220;
  const pad = { left: 64, right: 8, top: 8, bottom: 28 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const max = Math.max(0, ...buckets.map((b) => (b.bucket ? Number(b.bucket.cost) : 0)));
  const scale = max > 0 ? plotH / max : 0;
  const band = plotW / Math.max(1, buckets.length);
  const root = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'group', 'aria-label': `Spend per ${period === 'hourly' ? 'hour' : 'day'}` });
  for (const f of [0, 0.5, 1]) {
    const y = pad.top + plotH - f * plotH;
    root.append(svg('line', { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: 'grid' }));
    const label = svg('text', { x: pad.left - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' });
    label.textContent = `$${(max * f).toPrecision(3).replace(/\.?0+$/, '')}`;
    root.append(label);
  }
  const every = Math.max(1, Math.ceil(buckets.length / Math.max(2, Math.floor(plotW / 70))));
  buckets.forEach((b, i) => {
    const x = pad.left + i * band;
    const g = svg('g', { class: 'bucket', tabindex: b.bucket ? 0 : -1 });
    let y = pad.top + plotH;
    const parts = b.bucket && b.bucket.parts ? b.bucket.parts : {};
    for (const name of names) {
      const part = parts[name];
      if (!part) continue;
      const h = Number(part.cost) * scale;
      y -= h;
      g.append(svg('rect', { x: x + band * 0.1, y, width: Math.max(1, band * 0.8), height: Math.max(h, Number(part.cost) > 0 ? 1 : 0), fill: colour.get(name) }));
    }
    // A transparent column the whole height, so hovering anywhere over a bucket shows its figures.
    g.append(svg('rect', { x, y: pad.top, width: band, height: plotH, class: 'hit' }));
    if (b.bucket) {
      const label = tipText(b, period, names, parts);
      g.setAttribute('aria-label', label.join('; '));
      const show = (event) => showTip(event, label, g);
      g.addEventListener('mouseenter', show);
      g.addEventListener('focus', show);
      g.addEventListener('mouseleave', hideTip);
      g.addEventListener('blur', hideTip);
    }
    root.append(g);
    if (i % every === 0) {
      const t = svg('text', { x: x + band / 2, y: height - 8, class: 'axis', 'text-anchor': 'middle' });
      const d = new Date(b.start).toISOString();
      t.textContent = period === 'hourly' ? d.slice(11, 16) : d.slice(5, 10);
      root.append(t);
    }
  });
  chart.replaceChildren(root);
  if (!usage.series.length) chart.append(el('p', { class: 'hint', text: 'No usage in this range.' }));
}

function tipText(b, period, names, parts) {
  const when = new Date(b.start).toISOString();
  const lines = [`${period === 'hourly' ? utc(when) : when.slice(0, 10)}: ${money(b.bucket.cost)}, ${plural(b.bucket.total_tokens, 'token')}, ${plural(b.bucket.count, 'call')}`];
  for (const name of names) if (parts[name]) lines.push(`${name}: ${money(parts[name].cost)} (${plural(parts[name].count, 'call')})`);
  return lines;
}

function showTip(event, lines, target) {
  const tip = $('#tip');
  tip.replaceChildren(...lines.map((l, i) => el(i ? 'div' : 'strong', { text: l })));
  tip.hidden = false;
  const box = target.getBoundingClientRect();
  const host = $('#spend').getBoundingClientRect();
  tip.style.left = `${Math.max(0, Math.min(box.left - host.left, host.width - 260))}px`;
  tip.style.top = `${box.top - host.top + 16}px`;
}

function hideTip() {
  $('#tip').hidden = true;
}

// ---- Alerts --------------------------------------------------------------------------------------

async function loadAlerts() {
  const acked = state.alertsView === 'acknowledged';
  const list = await api(`/api/alerts${query({ acknowledged: acked, limit: 100, min_position: state.position || undefined })}`);
  const shown = state.alertsExpanded ? list.alerts : list.alerts.slice(0, 8);
  const items = shown.map((a) => el('li', { class: `alert sev-${a.severity}`, dataset: { alert: a.id } },
    el('span', { class: 'badge', text: a.severity }),
    el('div', { class: 'body' },
      el('p', { class: 'message', text: a.message }),
      // What the price book of now adds: the model a misspelled name is of, and its price.
      a.hint ? el('p', { class: 'fix', text: a.hint }) : null,
      el('p', { class: 'when', text: `${a.type} · ${utc(a.timestamp)}${a.occurrences > 1 ? ` · ${plural(a.occurrences, 'time')}` : ''}${a.acknowledged ? ` · acknowledged by ${a.acknowledged_by || 'someone'} ${fromNow(a.acknowledged_at)}` : ''}` })),
    !a.acknowledged && may('admin')
      ? el('button', { type: 'button', on: { click: (e) => acknowledge(a, e.target) } }, 'Acknowledge')
      : null));
  if (shown.length < list.alerts.length) {
    items.push(el('li', {}, el('button', { type: 'button', class: 'link', on: { click: () => { state.alertsExpanded = true; run(loadAlerts); } } },
      `Show all ${list.alerts.length}${list.next_offset ? '+' : ''}`)));
  }
  $('#alert-list').replaceChildren(...(items.length ? items
    : [el('li', { class: 'hint', text: acked ? 'No acknowledged alerts.' : 'No open alerts.' })]));
  $('#alerts-h').textContent = acked ? 'Alerts' : `Alerts (${list.alerts.length}${list.next_offset ? '+' : ''} open)`;
  // Everything open at once, for admins, after an incident filled the list; the page of alerts
  // just loaded is what it acknowledges (up to 100; the button comes back for the rest).
  const all = $('#alerts-ack-all');
  state.openAlerts = acked ? [] : list.alerts;
  all.hidden = acked || !may('admin') || list.alerts.length < 2;
  if (all.dataset.armed !== 'true') {
    all.textContent = list.next_offset ? `Acknowledge the newest ${list.alerts.length}` : `Acknowledge all ${list.alerts.length}`;
  }
}

// Two clicks: the first says how many it will acknowledge, the second does it, one by one.
async function acknowledgeAll(button) {
  const alerts = state.openAlerts || [];
  if (button.dataset.armed !== 'true') {
    button.dataset.armed = 'true';
    button.textContent = `Click again to acknowledge ${plural(alerts.length, 'alert')}`;
    return;
  }
  button.disabled = true;
  $('#alerts-error').textContent = '';
  const by = state.me && state.me.actor ? { by: state.me.actor } : {};
  try {
    for (const a of alerts) {
      const done = await api(`/api/alerts/${a.id}/acknowledge`, { method: 'POST', body: by });
      seen(done.acknowledgement_position);
    }
  } catch (e) {
    $('#alerts-error').textContent = `Could not acknowledge them all: ${e.message}`;
  } finally {
    button.disabled = false;
    button.dataset.armed = 'false';
    await run(loadAlerts);
  }
}

async function acknowledge(alert, button) {
  button.disabled = true;
  $('#alerts-error').textContent = '';
  try {
    // As the signed-in key (the event records the key too).
    const by = state.me && state.me.actor ? { by: state.me.actor } : {};
    const done = await api(`/api/alerts/${alert.id}/acknowledge`, { method: 'POST', body: by });
    seen(done.acknowledgement_position);
    await loadAlerts();
  } catch (e) {
    $('#alerts-error').textContent = `Could not acknowledge: ${e.message}`;
    button.disabled = false;
  }
}

function showAlerts(view) {
  state.alertsView = view;
  state.alertsExpanded = false;
  $('#alerts-open').setAttribute('aria-pressed', String(view === 'open'));
  $('#alerts-acked').setAttribute('aria-pressed', String(view === 'acknowledged'));
  run(loadAlerts);
}

// ---- Allocations ---------------------------------------------------------------------------------

async function loadAllocations() {
  const list = await api('/api/allocations?limit=200');
  const rows = list.allocations.map((a) => el('tr', { dataset: { allocation: a.allocation_id } },
    el('td', {}, el('code', { title: a.allocation_id, text: short(a.allocation_id) })),
    el('td', { text: a.context_id }),
    el('td', { text: a.component }),
    modelCell(a),
    el('td', { class: 'num', text: `${tokens(a.remaining_tokens)} of ${tokens(a.tokens_allocated)}` }),
    el('td', { class: 'num', text: money(a.estimated_cost) }),
    el('td', { text: fromNow(a.expires_at), title: utc(a.expires_at) }),
    el('td', {}, may('write')
      ? el('button', { type: 'button', on: { click: (e) => release(a, e.target) } }, 'Release')
      : null)));
  table($('#allocation-table'), ['Id', 'Context', 'Component', 'Model or tier', 'Tokens left', 'Estimated', 'Expires', ''],
    rows.length ? rows : [el('tr', {}, el('td', { colspan: 8, class: 'hint', text: 'No active reservations.' }))]);
}

// A model the price book knows names its provider; one it does not (a typo) names none, and is
// reserved at the tier's reference price unless the client gave an estimate: the cell says so. A
// reservation that named no tier (nor provider) holds room under every tier's limits: "any tier".
function modelCell(a) {
  if (!a.model && a.tier_open) return el('td', { text: 'any tier', title: `no tier named: it holds room under every tier's limits (estimated at ${a.tier}'s price)` });
  if (!a.model) return el('td', { text: a.tier });
  if (a.provider) return el('td', { text: `${a.provider}/${a.model}` });
  return el('td', { text: `${a.model} (unpriced)`, title: `${a.model} is not in the price book (tier ${a.tier})` });
}

async function release(allocation, button) {
  button.disabled = true;
  $('#allocations-error').textContent = '';
  try {
    await api(`/api/allocations/${allocation.allocation_id}/release`, { method: 'POST', body: {} });
    await loadAllocations();
  } catch (e) {
    $('#allocations-error').textContent = `Could not release: ${e.message}`;
    button.disabled = false;
  }
}

// ---- Records -------------------------------------------------------------------------------------

async function loadRecords() {
  const before = state.recordPages[state.recordPages.length - 1];
  const page = await api(`/api/usage/records${query({ limit: 25, before })}`);
  const rows = page.records.map((r) => el('tr', { dataset: { record: r.record_id } },
    el('td', { text: utc(r.timestamp) }),
    el('td', { text: `${r.provider}/${r.model}` }),
    el('td', { text: r.component }),
    el('td', { text: r.context_id ?? '—' }),
    el('td', { text: r.task_type }),
    el('td', { class: 'num', text: tokens(r.input_tokens) }),
    el('td', { class: 'num', text: tokens(r.output_tokens) }),
    el('td', { class: 'num', text: r.cost_source === 'unpriced' ? 'unpriced' : money(r.cost) }),
    el('td', { class: 'num', text: r.position })));
  table($('#record-table'), ['Time', 'Model', 'Component', 'Context', 'Task type', 'Input', 'Output', 'Cost', 'Position'],
    rows.length ? rows : [el('tr', {}, el('td', { colspan: 9, class: 'hint', text: 'No records yet.' }))]);
  $('#records-older').disabled = !page.next_before;
  $('#records-older').onclick = () => { state.recordPages.push(page.next_before); run(loadRecords); };
  $('#records-newer').disabled = state.recordPages.length === 1;
}

// ---- Prices --------------------------------------------------------------------------------------

async function loadPrices() {
  const search = $('#price-search').value.trim();
  const list = await api(`/api/prices${query({ search })}`);
  const shown = list.prices.slice(0, 100);
  $('#price-count').textContent = list.prices.length > shown.length
    ? `${shown.length} of ${plural(list.prices.length, 'price')}; narrow the search to see the rest.`
    : plural(list.prices.length, 'price');
  const rows = shown.map((p) => el('tr', {},
    el('td', { text: p.provider }),
    el('td', { text: p.model }),
    el('td', { class: 'num', text: money(p.input_per_1m) }),
    el('td', { class: 'num', text: money(p.cached_input_per_1m) }),
    el('td', { class: 'num', text: money(p.output_per_1m) }),
    el('td', { text: utc(p.effective_from) }),
    // The day its provider retires the model: why recommend leaves a priced model out.
    el('td', { text: p.retires_on || (p.retired_by ? `by ${p.retired_by}` : '') }),
    el('td', {}, el('button', { type: 'button', class: 'link', on: { click: () => run(() => priceHistory(p)) } }, 'History'))));
  table($('#price-table'), ['Provider', 'Model', 'Input $/1M', 'Cached $/1M', 'Output $/1M', 'Since', 'Retirement', ''], rows);
}

async function priceHistory(p) {
  const h = await api(`/api/prices/history/${encodeURIComponent(p.provider)}/${encodeURIComponent(p.model)}`);
  const rows = h.versions.slice().reverse().map((v) => el('tr', {},
    el('td', { text: utc(v.effective_from) }),
    el('td', { text: v.effective_to ? utc(v.effective_to) : 'now' }),
    el('td', { class: 'num', text: money(v.input_per_1m) }),
    el('td', { class: 'num', text: money(v.cached_input_per_1m) }),
    el('td', { class: 'num', text: money(v.output_per_1m) }),
    el('td', { text: v.source })));
  const t = el('table');
  table(t, ['From', 'To', 'Input $/1M', 'Cached $/1M', 'Output $/1M', 'Source'], rows);
  $('#price-history').replaceChildren(el('h3', { text: `${h.provider}/${h.model}: ${plural(h.versions.length, 'version')}` }), el('div', { class: 'scroll' }, t));
}

// ---- Refreshing ----------------------------------------------------------------------------------

const LOADERS = { limits: loadLimits, spend: loadSpend, alerts: loadAlerts, allocations: loadAllocations, records: loadRecords, prices: loadPrices };
const pending = new Set();
let timer = null;

// Runs a loader and shows what went wrong; a 401 (a key revoked meanwhile) goes back to sign-in.
async function run(loader) {
  try {
    await loader();
    $('#banner').hidden = true;
  } catch (e) {
    if (e.status === 401) return signIn(e.message);
    $('#banner').textContent = e.message;
    $('#banner').hidden = false;
  }
}

// Coalesces a burst of messages into one refresh per panel, at most every 250 ms.
function refresh(...panels) {
  for (const p of panels) pending.add(p);
  if (timer) return;
  timer = setTimeout(async () => {
    timer = null;
    const now = [...pending];
    pending.clear();
    await Promise.all(now.map((p) => run(LOADERS[p])));
  }, 250);
}

const REFRESHES = {
  budget_update: ['limits'],
  alert: ['alerts'],
  allocation_update: ['allocations', 'limits'],
  usage_update: ['spend', 'records'],
  price_update: ['prices'],
};

function connect() {
  const url = new URL('/ws/budget/updates', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (state.key) url.searchParams.set('api_key', state.key);
  if (state.position) url.searchParams.set('since', String(state.position));
  const socket = new WebSocket(url);
  state.socket = socket;
  live('connecting');
  socket.onopen = () => {
    state.retry = 0;
    live('live');
    for (const topic of TOPICS) socket.send(JSON.stringify({ type: 'subscription', payload: { topic } }));
    // What changed while we were away: `since` replays the budget updates; the panels refetch the rest.
    refresh('limits', 'spend', 'alerts', 'allocations', 'records');
  };
  socket.onmessage = (m) => {
    const message = JSON.parse(m.data);
    seen(message.position);
    const panels = REFRESHES[message.type];
    if (panels) refresh(...panels);
  };
  socket.onclose = () => {
    if (state.socket !== socket) return;
    live('offline');
    const wait = Math.min(10000, 500 * 2 ** state.retry++);
    setTimeout(() => { if (state.socket === socket) connect(); }, wait);
  };
}

function live(s) {
  const node = $('#live');
  node.dataset.state = s;
  node.textContent = { connecting: 'connecting…', live: '● live', offline: '○ reconnecting…' }[s];
}

// ---- Signing in ----------------------------------------------------------------------------------

function signIn(message) {
  if (state.socket) { const s = state.socket; state.socket = null; s.close(); }
  $('#main').hidden = true;
  $('#sign-in').hidden = false;
  $('#sign-in-error').textContent = message || '';
  $('#sign-out').hidden = true;
  $('#whoami').textContent = '';
  $('#api-key').focus();
}

async function start() {
  const began = performance.now();
  try {
    state.me = await api('/api/keys/current');
  } catch (e) {
    if (e.status === 401) {
      const refused = state.key
        ? `This key was refused: ${e.message}`
        : '';
      state.key = null;
      sessionStorage.removeItem(KEY_STORE);
      return signIn(refused);
    }
    $('#main').hidden = false;
    $('#banner').textContent = `The service did not answer: ${e.message}`;
    $('#banner').hidden = false;
    return;
  }
  $('#sign-in').hidden = true;
  $('#main').hidden = false;
  $('#whoami').textContent = state.me.open ? 'open service (no keys)' : `${state.me.actor} · ${state.me.scope}`;
  $('#sign-out').hidden = state.me.open;
  $('#new-limit').hidden = !may('admin');
  await Promise.all(Object.values(LOADERS).map(run));
  // How long the panels took to load, and since navigation (the page's first paint with data).
  document.body.dataset.ready = String(Math.round(performance.now() - began));
  document.body.dataset.sinceNavigation = String(Math.round(performance.now()));
  connect();
}

function wire() {
  $('#sign-in-form').addEventListener('submit', (e) => {
    e.preventDefault();
    state.key = $('#api-key').value.trim();
    $('#api-key').value = '';
    sessionStorage.setItem(KEY_STORE, state.key);
    $('#sign-in-error').textContent = '';
    start();
  });
  $('#sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORE);
    state.key = null;
    state.me = null;
    signIn('Signed out.');
  });
  for (const id of ['#spend-range', '#spend-split', '#spend-period', '#spend-from', '#spend-to']) {
    $(id).addEventListener('change', () => {
      $('#custom-range').hidden = $('#spend-range').value !== 'custom';
      run(loadSpend);
    });
  }
  $('#alerts-open').addEventListener('click', () => showAlerts('open'));
  $('#alerts-acked').addEventListener('click', () => showAlerts('acknowledged'));
  $('#alerts-ack-all').addEventListener('click', (e) => acknowledgeAll(e.currentTarget));
  $('#records-newer').addEventListener('click', () => { state.recordPages.pop(); run(loadRecords); });
  let searchTimer = null;
  $('#price-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => run(loadPrices), 200);
  });
  $('#explain-close').addEventListener('click', () => $('#explain').close());
  $('#limit-close').addEventListener('click', () => $('#limit').close());
  $('#budget-close').addEventListener('click', () => $('#budget').close());
  $('#new-limit').addEventListener('click', newLimit);
  let resizeTimer = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => run(loadSpend), 200);
  });
  const today = new Date().toISOString().slice(0, 10);
  $('#spend-to').value = today;
  $('#spend-from').value = new Date(Date.now() - 6 * 86400e3).toISOString().slice(0, 10);
}

wire();
start();
