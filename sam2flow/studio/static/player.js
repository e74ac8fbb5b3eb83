// The review page's player: the run's source video plays in the browser at its own rate (a hidden <video>, drawn
// frame by frame onto the canvas), with the run's masks drawn over it from their RLE (fetched in chunks of frames
// ahead of the playhead). Where the browser cannot play the video, frames come from the server, masks drawn there.
const CHUNK = 240;
class Player {
  constructor(canvas, video, run, afterDraw) { Object.assign(this, {canvas, video, run, afterDraw});
    this.ctx = canvas.getContext('2d'); this.frame = 0; this.playing = false; this.selected = null; this.chunks = new Map();
    this.image = new Image(); this.mode = 'video'; this.drawn = 0; }
  async open(info) { this.info = info; this.chunks.clear();
    this.times = info.times || Array.from({length: info.frames}, (_, f) => f / info.fps);
    if (info.video && this.video.canPlayType('video/mp4')) {
      const ok = await new Promise(done => { this.video.onloadeddata = () => done(true); this.video.onerror = () => done(false);
        if (this.video.src) done(this.video.readyState >= 2); else this.video.src = '/api/media?path=' + encodeURIComponent(this.run); });
      this.mode = ok ? 'video' : 'frames'; } else this.mode = 'frames';
    this.video.onseeked = () => this.draw(); this.video.onended = () => this.pause();
    this.canvas.dataset.mode = this.mode; this.seek(this.frame); }
  // The frame the video shows at media time t: the last whose time is ≤ t (half a millisecond of slack).
  frameAt(t) { let lo = 0, hi = this.times.length - 1; while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.times[mid] <= t + 5e-4) lo = mid; else hi = mid - 1; } return lo; }
  // A media time inside frame f's display interval, away from both edges.
  timeOf(f) { const t = this.times[f], next = f + 1 < this.times.length ? this.times[f + 1] : t + 1 / this.info.fps; return t + (next - t) / 3; }
  seek(f) { f = Math.max(0, Math.min(this.info.frames - 1, f)); this.frame = f; this.canvas.dataset.ready = ''; this.show();
    if (this.mode === 'video') { if (this.playing) this.pause(); this.video.currentTime = this.timeOf(f); }
    else { this.image.onload = () => { this.draw(); if (this.playing) setTimeout(() => this.frame + 1 < this.info.frames ? this.seekNext() : this.pause(), 1000 / this.info.fps); };
      this.image.src = `/api/runframe?path=${encodeURIComponent(this.run)}&frame=${f}&t=${Date.now()}`; } }
  seekNext() { const playing = this.playing; this.seek(this.frame + 1); this.playing = playing; }
  show() { $('frame').value = $('frameNum').value = this.frame;
    $('time').textContent = `${fmtTime(this.times[this.frame])} / ${fmtTime(this.times[this.times.length - 1])}`; }
  toggle() { if (this.playing) this.pause(); else this.play(); }
  play() { this.playing = true; $('play').textContent = '❚❚'; this.drawn = 0; this.started = performance.now();
    if (this.mode !== 'video') { this.seekNext(); return; }
    if (this.frame >= this.info.frames - 1) this.video.currentTime = 0;
    const tick = (now, meta) => { if (!this.playing) return; this.frame = this.frameAt(meta.mediaTime); this.show(); this.draw(); this.drawn++;
      this.video.requestVideoFrameCallback(tick); };
    this.video.requestVideoFrameCallback(tick); this.video.play(); }
  pause() { this.playing = false; $('play').textContent = '▶'; if (this.mode === 'video') this.video.pause();
    const s = (performance.now() - this.started) / 1000; if (this.drawn && s > 0) this.canvas.dataset.playedFps = (this.drawn / s).toFixed(1); }
  chunk(f) { const c = Math.floor(f / CHUNK); if (!this.chunks.has(c)) {
      const want = getJSON(`/api/runmasks?path=${encodeURIComponent(this.run)}&start=${c * CHUNK}&stop=${(c + 1) * CHUNK}`).then(d => {
        const by = {}; for (const [frame, id, rle, ...box] of d.rows) (by[frame] = by[frame] || []).push({id, rle, box}); this.chunks.set(c, by);
        if (Math.floor(this.frame / CHUNK) === c) this.draw(); }).catch(e => { this.chunks.delete(c); status('masks not loaded: ' + e.message, true); });
      this.chunks.set(c, want); }
    const got = this.chunks.get(c); return got instanceof Promise ? null : got; }
  draw() { const {ctx, canvas, info} = this; if (!info) return;
    if (this.mode === 'video') { ctx.drawImage(this.video, 0, 0, canvas.width, canvas.height);
      const by = this.chunk(this.frame); if (this.frame % CHUNK > CHUNK / 2 && this.frame + CHUNK < info.frames) this.chunk(this.frame + CHUNK);
      if (by === null) { canvas.dataset.ready = ''; this.afterDraw(); return; }
      const masks = by[this.frame] || []; drawMasks(ctx, masks, info.width, info.height);
      const k = canvas.width / info.width; ctx.font = 'bold 13px system-ui'; ctx.textBaseline = 'bottom';
      for (const m of masks) { const [x0, y0, x1, y1] = m.box, t = info.tracks.find(t => t.track_id === m.id);
        ctx.strokeStyle = trackColour(m.id); ctx.lineWidth = m.id === this.selected ? 3 : 1; ctx.strokeRect(x0 * k, y0 * k, (x1 - x0) * k, (y1 - y0) * k);
        const label = `${m.id} ${t ? t.class_name : ''}`, top = Math.max(16, y0 * k);  // inside the frame at its top edge
        ctx.fillStyle = trackColour(m.id); ctx.fillRect(x0 * k, top - 16, ctx.measureText(label).width + 6, 16);
        ctx.fillStyle = '#000'; ctx.fillText(label, x0 * k + 3, top - 2); } }
    else ctx.drawImage(this.image, 0, 0, canvas.width, canvas.height);
    this.afterDraw(); canvas.dataset.frame = this.frame; canvas.dataset.ready = '1'; }
  // How many frames two or more of these tracks are on (each track's spans are [first, last] frames).
  sharedFrames(tracks) { const edges = [];
    for (const t of tracks) for (const [a, b] of (t ? t.spans : [])) edges.push([a, 1], [b + 1, -1]);
    edges.sort((x, y) => x[0] - y[0] || x[1] - y[1]); let on = 0, from = 0, n = 0;
    for (const [f, d] of edges) { if (on >= 2) n += f - from; on += d; from = f; } return n; }
}
