// Shared by the prompt and review pages: element lookup, the status line, the tool choice, source pixels, POST.
const $ = id => document.getElementById(id), status = t => $('status').textContent = t;
const mode = () => document.querySelector('input[name=mode]:checked').value;
// The source pixel under a mouse event on a canvas showing a frame `width` source pixels wide, scaled to fit.
function sourcePixel(e, canvas, width) { const r = canvas.getBoundingClientRect(), s = r.width / width;
  return [Math.round((e.clientX - r.left) / s * 100) / 100, Math.round((e.clientY - r.top) / s * 100) / 100]; }
async function post(url, body) { const r = await fetch(url, {method: 'POST', headers: {'content-type': 'application/json'}, body: JSON.stringify(body)});
  const d = await r.json(); if (!r.ok) throw new Error(d.detail); return d; }
