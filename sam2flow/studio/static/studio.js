// Shared by the prompt and review pages: element lookup, the status line, the tool choice, source pixels, POST,
// track colours, drawing RLE masks, undo/redo, keyboard shortcuts and their help overlay.
const $ = id => document.getElementById(id);
function status(t, error = false) { const s = $('status'); s.textContent = t; s.className = error ? 'error' : ''; }
const mode = () => document.querySelector('input[name=mode]:checked').value;
// The source pixel under a mouse event on a canvas showing a frame `width` source pixels wide, scaled to fit.
function sourcePixel(e, canvas, width) { const r = canvas.getBoundingClientRect(), s = r.width / width;
  return [Math.round((e.clientX - r.left) / s * 100) / 100, Math.round((e.clientY - r.top) / s * 100) / 100]; }
async function post(url, body) { const r = await fetch(url, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});
  const d = await r.json(); if (!r.ok) throw new Error(d.detail); return d; }
async function getJSON(url) { const r = await fetch(url); const d = await r.json(); if (!r.ok) throw new Error(d.detail); return d; }
const fmtTime = s => { const m = Math.floor(s / 60), r = s - 60 * m; return `${m}:${r.toFixed(2).padStart(5, '0')}`; };

// The colour of a track id (and of the object a prompt numbers): the one annotated.mp4 draws (sam2flow.io.render).
function trackRGB(id) { const h = (id * 0.618033988749895) % 1, s = 0.85, v = 1, i = Math.floor(h * 6), f = h * 6 - i;
  const p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return [Math.trunc(r * 255), Math.trunc(g * 255), Math.trunc(b * 255)]; }
const trackColour = id => `rgb(${trackRGB(id).join(',')})`;

// COCO compressed RLE counts string → run lengths (zeros first, column-major), as pycocotools reads it.
function rleCounts(text) { const counts = []; let value = 0, shift = 0;
  for (let k = 0; k < text.length; k++) { const c = text.charCodeAt(k) - 48; value |= (c & 0x1f) << shift; shift += 5;
    if (c & 0x20) continue; if (c & 0x10) value |= -1 << shift; if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value); value = shift = 0; }
  return counts; }
// Masks drawn over a frame: `masks` is a list of {id, rle} in a `w`×`h` source frame, each filled in its track colour
// (opacity alpha/255, later masks over earlier ones) on an offscreen canvas of source size, then scaled onto `ctx`.
// A run of the column-major RLE is at most three rectangles (its first column, whole columns, its last column).
const maskCanvas = document.createElement('canvas');
function drawMasks(ctx, masks, w, h, alpha = 130) {
  if (!masks.length) return; if (maskCanvas.width !== w || maskCanvas.height !== h) { maskCanvas.width = w; maskCanvas.height = h; }
  const mc = maskCanvas.getContext('2d'); mc.clearRect(0, 0, w, h); mc.globalAlpha = alpha / 255;
  for (const m of masks) { mc.fillStyle = trackColour(m.id); const counts = rleCounts(m.rle); let at = 0;
    for (let j = 0; j < counts.length; j++) { const end = at + counts[j];
      if (j % 2 && end > at) { const x0 = Math.floor(at / h), y0 = at - x0 * h, x1 = Math.floor((end - 1) / h), y1 = end - 1 - x1 * h;
        if (x0 === x1) mc.fillRect(x0, y0, 1, y1 - y0 + 1);
        else { mc.fillRect(x0, y0, 1, h - y0); if (x1 > x0 + 1) mc.fillRect(x0 + 1, 0, x1 - x0 - 1, h); mc.fillRect(x1, 0, 1, y1 + 1); } }
      at = end; } }
  mc.globalAlpha = 1; ctx.drawImage(maskCanvas, 0, 0, ctx.canvas.width, ctx.canvas.height); }

// Undo/redo over snapshots of a page's editable state: `save()` before each change, `undo()`/`redo()` return the
// state to restore (or null).
class History { constructor(snapshot) { this.snapshot = snapshot; this.past = []; this.future = []; }
  save() { this.past.push(this.snapshot()); if (this.past.length > 200) this.past.shift(); this.future = []; }
  undo() { if (!this.past.length) return null; this.future.push(this.snapshot()); return this.past.pop(); }
  redo() { if (!this.future.length) return null; this.past.push(this.snapshot()); return this.future.pop(); } }

// Keyboard shortcuts: `keys` maps a key name ('ArrowLeft', ' ', 'z' with 'ctrl+' for Ctrl or ⌘) to [what, action];
// '?' opens the list. Keys typed into a text field are left to it.
function shortcuts(keys) {
  const box = document.createElement('div'); box.id = 'help'; box.hidden = true;
  const names = {' ': 'Space', ArrowLeft: '←', ArrowRight: '→', Delete: 'Delete', Escape: 'Esc'};
  box.innerHTML = '<div><h2>Keyboard shortcuts</h2><table></table><p>Press <kbd>?</kbd> or <kbd>Esc</kbd> to close.</p></div>';
  for (const [k, [what]] of Object.entries(keys)) { const tr = box.querySelector('table').insertRow();
    tr.insertCell().innerHTML = k.split('+').map(p => `<kbd>${p === 'ctrl' ? 'Ctrl' : (names[p] || p)}</kbd>`).join(' + ');
    tr.insertCell().textContent = what; }
  document.body.appendChild(box); box.onclick = () => { box.hidden = true; };
  document.addEventListener('keydown', e => { const t = e.target;
    if ((t.tagName === 'INPUT' && !['checkbox', 'radio', 'range', 'button'].includes(t.type)) || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || e.altKey) return;
    if (e.key === '?' || (e.key === 'Escape' && !box.hidden)) { box.hidden = !box.hidden || e.key === 'Escape'; e.preventDefault(); return; }
    const ctrl = e.ctrlKey || e.metaKey;
    const name = (ctrl ? 'ctrl+' : '') + (ctrl && e.shiftKey ? 'shift+' : '') + (e.key.length === 1 ? e.key.toLowerCase() : e.key);
    const hit = keys[name]; if (!hit) return; e.preventDefault(); hit[1](); }); }

// A run started from a page: its status, progress, log, the Prefect link and, when it is done, the review page's link,
// shown in #runStatus, #runLinks and #runLog every second until it ends; then `ended()`.
async function watchRun(id, ended) { let s;
  try { s = await getJSON('/api/run/' + id); } catch (e) { status('run status unknown: ' + e.message, true); ended(); return; }
  $('runStatus').textContent = `${s.status} (${s.via === 'deployment' ? 'deployment' : 'local run'}) ${s.progress.join(' ')} ${s.note || ''}`;
  $('runStatus').dataset.status = s.status; $('runLog').textContent = (s.log_tail || []).join('\n'); $('runLinks').innerHTML = '';
  if (s.flow_run_url) { const a = document.createElement('a'); a.href = s.flow_run_url; a.target = '_blank'; a.textContent = 'Prefect flow run'; $('runLinks').append(a, ' '); }
  if (s.run_dir) { const a = document.createElement('a'); a.href = '/review?run=' + encodeURIComponent(s.run_dir); a.id = 'reviewLink'; a.textContent = 'review the tracks'; $('runLinks').append(a); }
  if (s.status === 'running') { setTimeout(() => watchRun(id, ended), 1000); return; }
  if (s.status === 'failed') { $('runLogBox').open = true; status('run failed: ' + (s.reason || 'see the run log'), true); }
  else status('run finished' + (s.run_dir ? ': ' + s.run_dir : ''));
  ended(s); }
