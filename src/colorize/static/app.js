"use strict";

/*
 * The colorize page: queue dropped or chosen photos, upload a few at a time to /api/colorize, show
 * each result beside its original with a before/after slider, re-run finished photos with new
 * settings, remove them, and zip all results in the browser. Color hints: pins dropped on a result
 * re-render it through /api/photos/{id}/render (the server kept the network's prediction), and can be
 * downloaded and loaded again as the JSON the CLI's --hints reads.
 *
 * One function per concern: server info, settings, cards (what a photo shows), announcements (what a
 * screen reader hears), the queue, the network, the actions on photos, hints (pins, rendering, files,
 * the confidence overlay), and the wiring of controls.
 */
(() => {
  const PARALLEL = 2; // uploads at once; the server queues beyond its workers
  const MAX_RETRIES = 8; // on 503, wait as Retry-After says and try again
  const EXTENSIONS = { "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp" };
  const SIZES = [256, 384, 512, 768, 1024, 1536, 2048];
  const FINISHED = ["done", "error"];
  const ANNOUNCEMENTS_KEPT = 10;
  const RENDER_DELAY_MS = 250; // hints settle this long before the photo re-renders
  const DEFAULT_HINT_COLOR = "#2a6fdb";
  const SWATCHES = [ // common colors of old photos' subjects
    ["sky", "#86a8d0"], ["foliage", "#4c7336"], ["grass", "#7f9c45"], ["water", "#3f6e86"],
    ["skin, fair", "#efc9ab"], ["skin, light", "#d9a67c"], ["skin, medium", "#b07850"], ["skin, deep", "#6e4630"],
    ["brick", "#9b4a33"], ["wood", "#8a5a35"], ["navy", "#1f2d55"], ["khaki", "#b5a677"],
    ["red", "#b3262c"], ["gold", "#c9a23a"],
  ];

  const $ = (selector) => document.querySelector(selector);
  const els = {
    input: $("#file-input"), drop: $("#drop"), results: $("#results"), template: $("#card-template"),
    summary: $("#summary"), zip: $("#zip"), rerunAll: $("#rerun-all"), clear: $("#clear"),
    saturation: $("#saturation"), saturationValue: $("#saturation-value"), size: $("#size"),
    model: $("#model"), limits: $("#limits"), announcer: $("#announcer"),
  };
  /** Every photo on the page: {file, card, state, settings, result, resultUrl, inputColor, downloadName, xhr,
   * photoId (the server's kept prediction), width, height, hints: [{x, y, color, radius?}], selected (index)}. */
  const items = [];
  let running = 0;
  let limits = null;
  let defaultSize = null;
  let serverConfidence = false; // the model gives a confidence map (classification models)

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const stem = (name) => name.replace(/\.[^.]*$/, "") || "photo";
  const part = (item, selector) => item.card.querySelector(selector);

  function formatBytes(n) {
    return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MB` : `${(n / 1024).toFixed(0)} KB`;
  }

  /** A pixel limit in words, rounded down so that it is never more than the server takes. */
  function formatPixels(n) {
    if (n >= 1e7) return `${Math.floor(n / 1e6)} megapixels`;
    if (n >= 1e5) return `${Math.floor(n / 1e5) / 10} megapixels`;
    return `${n.toLocaleString("en")} pixels`;
  }

  // -- server info -------------------------------------------------------------------------------

  /** Model name, limits and the working sizes on offer, from the server. */
  async function loadInfo() {
    let info;
    try {
      const res = await fetch("/api/models");
      if (!res.ok) return;
      info = await res.json();
    } catch {
      return; // the page still works; the server checks everything again
    }
    limits = info.limits;
    serverConfidence = Boolean(info.confidence);
    els.model.textContent = `model: ${info.default}`;
    const heic = (info.formats || []).includes("HEIF"); // a phone's photos, where the server reads them
    els.limits.textContent = `JPEG, PNG, WebP, TIFF, BMP${heic ? ", GIF or HEIC" : " or GIF"}, up to ` +
      `${formatBytes(limits.max_upload_bytes)} and ${formatPixels(limits.max_pixels)} each`;
    const size = info.options.size;
    defaultSize = size.default;
    els.size.options[0].textContent = `model default (${size.default})`;
    for (const s of SIZES) {
      if (s >= size.min && s <= size.max && s !== size.default) els.size.add(new Option(String(s), String(s)));
    }
    items.forEach(showSettings);
  }

  // -- settings ----------------------------------------------------------------------------------

  /** The settings a new request uses: what the controls say now. */
  function currentSettings() {
    return { saturation: Number(els.saturation.value), size: els.size.value ? Number(els.size.value) : null };
  }

  const sameSettings = (a, b) => a.saturation === b.saturation && a.size === b.size;

  function describeSettings(settings) {
    const size = settings.size ?? (defaultSize ? `${defaultSize} (default)` : "default");
    return `saturation ${settings.saturation.toFixed(2)}, size ${size}`;
  }

  /** Finished photos made with settings other than the current ones. */
  function staleItems() {
    const now = currentSettings();
    return items.filter((it) => it.state === "done" && !sameSettings(it.settings, now));
  }

  function onSettingsChanged() {
    els.saturationValue.textContent = Number(els.saturation.value).toFixed(2);
    items.forEach(showSettings);
    updateSummary();
  }

  // -- cards -------------------------------------------------------------------------------------

  /** A new card for a photo; the caller puts it on the page. */
  function createCard(file) {
    const card = els.template.content.firstElementChild.cloneNode(true);
    const name = card.querySelector(".name");
    name.textContent = name.title = file.name;
    const before = card.querySelector(".before");
    before.alt = `${file.name}, original`;
    before.addEventListener("error", () => card.classList.add("no-preview")); // not something a browser shows
    before.src = URL.createObjectURL(file);
    card.querySelector(".after").alt = `${file.name}, colorized`;
    const slider = card.querySelector(".slider");
    slider.setAttribute("aria-label", `Compare original and colorized ${file.name}`);
    slider.addEventListener("input", () => moveDivider(card, slider.value));
    moveDivider(card, slider.value);
    card.querySelector(".remove").setAttribute("aria-label", `Remove ${file.name}`);
    card.querySelector(".rerun").setAttribute("aria-label", `Re-run ${file.name} with the current settings`);
    card.querySelector(".before-after").setAttribute("aria-label", `Download ${file.name} before and after, side by side`);
    card.querySelector(".edit-hints").setAttribute("aria-label", `Color hints for ${file.name}`);
    card.querySelector(".pins").setAttribute("aria-label", `Hint pins on ${file.name}`);
    card.querySelector(".hints-title").textContent = `Color hints for ${file.name}`;
    const swatches = card.querySelector(".swatches");
    for (const [name, color] of SWATCHES) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "swatch";
      button.dataset.color = color;
      button.style.setProperty("--swatch", color);
      button.title = name;
      button.setAttribute("aria-label", `${name} (${color})`);
      swatches.append(button);
    }
    return card;
  }

  /** Original to the left of ``percent``, colorized to the right. */
  function moveDivider(card, percent) {
    card.querySelector(".compare").style.setProperty("--pos", `${percent}%`);
    card.querySelector(".slider").setAttribute("aria-valuetext", `${percent}% original, ${100 - percent}% colorized`);
  }

  function setState(item, state, text) {
    item.state = state;
    item.card.dataset.state = state;
    part(item, ".status").textContent = text;
    part(item, ".rerun").hidden = !FINISHED.includes(state);
    part(item, ".edit-hints").hidden = state !== "done" || !item.photoId;
    showSettings(item);
    updateSummary();
  }

  /** What a photo was (or is being) made with, and whether the controls now say otherwise. */
  function showSettings(item) {
    const stale = item.state === "done" && !sameSettings(item.settings, currentSettings());
    item.card.classList.toggle("stale", stale);
    part(item, ".settings").textContent = item.settings
      ? describeSettings(item.settings) + (stale ? " · settings changed since" : "") : "";
  }

  /** A multi-page TIFF or an animated GIF: the server colorizes its first frame only. */
  const firstFrameOnly = (frames) => `Only the first of its ${frames} pages (frames) was colorized.`;

  function showResult(item, blob, inputColor, photoId, ms, frames = 1) {
    item.inputColor = inputColor;
    if (photoId !== item.photoId) dropConfidence(item); // another prediction: its own confidence
    item.photoId = photoId;
    const hadColor = inputColor === "color";
    part(item, ".badge").hidden = !hadColor;
    part(item, ".after").alt = `${item.file.name}, colorized` + (hadColor ? " (it already had color)" : "");
    showImage(item, blob);
    const note = part(item, ".note");
    note.textContent = frames > 1 ? firstFrameOnly(frames) : "";
    note.hidden = frames <= 1;
    setState(item, "done", `done in ${(ms / 1000).toFixed(1)} s`);
  }

  /** Put a colorized image (a first result or a re-render with hints) on the card and its download link. */
  function showImage(item, blob) {
    if (item.resultUrl) URL.revokeObjectURL(item.resultUrl);
    item.result = blob;
    item.resultUrl = URL.createObjectURL(blob);
    item.downloadName = `${stem(item.file.name)}_color${EXTENSIONS[blob.type] || ".png"}`;
    part(item, ".after").src = item.resultUrl;
    const link = part(item, ".download");
    link.href = item.resultUrl;
    link.download = item.downloadName;
    link.textContent = `Download ${item.downloadName}`;
    link.hidden = false;
    part(item, ".before-after").hidden = false;
  }

  const SIDE_BY_SIDE_WIDTH = 4096; // px at most: an image to share, not an archive's master

  /** sRGB pixels made the gray of the same CIE lightness: their luminance, in linear light, encoded again (CSS's
   * grayscale() weighs the encoded values, which is not the lightness the photo was colorized from). */
  function lightnessOf(image) {
    const linear = new Float32Array(256);
    for (let v = 0; v < 256; v++) {
      const c = v / 255;
      linear[v] = c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    }
    const encode = (y) => 255 * (y <= 0.0031308 ? 12.92 * y : 1.055 * y ** (1 / 2.4) - 0.055);
    const px = image.data;
    for (let i = 0; i < px.length; i += 4) {
      const y = 0.2126 * linear[px[i]] + 0.7152 * linear[px[i + 1]] + 0.0722 * linear[px[i + 2]];
      px[i] = px[i + 1] = px[i + 2] = Math.round(encode(y));
    }
    return image;
  }

  /** Download the original and the colorized photo side by side, as one JPEG to share. The original is the upload
   * as the browser shows it; where it cannot show it (TIFF, HEIC), the colorized photo's own lightness, which is
   * the original's. */
  function downloadBeforeAfter(item) {
    const after = part(item, ".after");
    const before = part(item, ".before");
    const width = after.naturalWidth;
    const height = after.naturalHeight;
    if (!width || !height) return;
    const scale = Math.min(1, SIDE_BY_SIDE_WIDTH / (2 * width));
    const w = Math.round(width * scale);
    const h = Math.round(height * scale);
    const canvas = document.createElement("canvas");
    canvas.width = 2 * w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(after, w, 0, w, h);
    if (item.card.classList.contains("no-preview") || !before.naturalWidth) {
      ctx.putImageData(lightnessOf(ctx.getImageData(w, 0, w, h)), 0, 0);
    } else {
      ctx.drawImage(before, 0, 0, w, h);
    }
    canvas.toBlob((blob) => {
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = `${stem(item.file.name)}_before_after.jpg`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      announce(`${item.file.name}: before and after saved as ${a.download}`);
    }, "image/jpeg", 0.92);
  }

  function updateSummary() {
    const count = (state) => items.filter((it) => it.state === state).length;
    const done = count("done");
    const failed = count("error");
    const parts = items.length ? [`${done} of ${items.length} done`] : [];
    if (failed) parts.push(`${failed} failed`);
    els.summary.textContent = parts.join(", ");
    els.zip.disabled = done === 0;
    els.clear.disabled = items.length === 0;
    const stale = staleItems().length;
    els.rerunAll.disabled = stale === 0;
    els.rerunAll.textContent = stale ? `Re-run ${stale} with these settings` : "Re-run with these settings";
  }

  // -- announcements -----------------------------------------------------------------------------

  /** Tell screen readers, politely: each message is a new line in a live log. */
  function announce(text) {
    const line = document.createElement("p");
    line.textContent = text;
    els.announcer.append(line);
    while (els.announcer.childElementCount > ANNOUNCEMENTS_KEPT) els.announcer.firstElementChild.remove();
  }

  function announceWhenAllFinished() {
    if (!items.length || !items.every((it) => FINISHED.includes(it.state))) return;
    const failed = items.filter((it) => it.state === "error").length;
    announce(`All photos finished: ${items.length - failed} done` + (failed ? `, ${failed} failed` : ""));
  }

  // -- the queue ---------------------------------------------------------------------------------

  /** Queue a photo with the current settings. */
  function enqueue(item) {
    item.settings = currentSettings();
    setState(item, "queued", "waiting");
  }

  function pump() {
    while (running < PARALLEL) {
      const next = items.find((it) => it.state === "queued");
      if (!next) return;
      running++;
      next.state = "starting";
      process(next).finally(() => {
        running--;
        pump();
      });
    }
  }

  async function process(item) {
    const url = requestUrl(item.settings);
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      setState(item, "uploading", "uploading");
      let res;
      try {
        res = await upload(item, url);
      } catch (err) {
        if (item.removed) return;
        finish(item, "error", await uploadFailure(item.file, err));
        return;
      }
      if (item.removed) return;
      if (res.status === 200) {
        showResult(item, res.blob, res.inputColor, res.photoId, performance.now() - started, res.frames);
        announce(`${item.file.name}: colorized` + (res.inputColor === "color" ? "; it already had color" : "")
          + (res.frames > 1 ? `. ${firstFrameOnly(res.frames)}` : ""));
        announceWhenAllFinished();
        return;
      }
      if (res.status === 503 && attempt < MAX_RETRIES) {
        const wait = Math.min(30, Number(res.retryAfter) || 2);
        setState(item, "waiting", `server busy; retrying in ${wait} s`);
        await sleep(wait * 1000);
        if (item.removed) return;
        continue;
      }
      finish(item, "error", await errorText(res));
      return;
    }
  }

  function finish(item, state, text) {
    setState(item, state, text);
    announce(`${item.file.name}: failed: ${text}`);
    announceWhenAllFinished();
  }

  // -- the network -------------------------------------------------------------------------------

  function requestUrl(settings) {
    const params = new URLSearchParams({ saturation: String(settings.saturation) });
    if (settings.size) params.set("size", String(settings.size));
    return `/api/colorize?${params}`;
  }

  /** POST one photo as multipart field "file"; resolves with {status, blob, retryAfter, inputColor, photoId,
   * frames}. */
  function upload(item, url) {
    return new Promise((resolve, reject) => {
      const bar = part(item, "progress");
      bar.value = 0;
      const xhr = new XMLHttpRequest();
      item.xhr = xhr;
      xhr.open("POST", url);
      xhr.responseType = "blob";
      xhr.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        bar.value = e.loaded / e.total;
        part(item, ".status").textContent = `uploading ${Math.round(100 * bar.value)}%`;
      };
      xhr.upload.onload = () => {
        bar.removeAttribute("value"); // indeterminate while the server works
        setState(item, "working", "colorizing…");
      };
      xhr.onload = () => resolve({
        status: xhr.status, blob: xhr.response, retryAfter: xhr.getResponseHeader("Retry-After"),
        inputColor: xhr.getResponseHeader("X-Input-Color"), photoId: xhr.getResponseHeader("X-Photo-Id"),
        frames: Number(xhr.getResponseHeader("X-Frames")) || 1,
      });
      xhr.onerror = () => reject(new Error("network error"));
      xhr.onabort = () => reject(new Error("cancelled"));
      xhr.onloadend = () => { item.xhr = null; };
      const form = new FormData();
      form.append("file", item.file, item.file.name);
      if (item.hints.length) form.append("hints", JSON.stringify(hintsJson(item))); // a re-run keeps its pins
      xhr.send(form);
    });
  }

  /** Why an upload got no answer: the file could not be read here (moved, deleted, a folder), or the server
   * is gone. */
  async function uploadFailure(file, err) {
    try {
      await file.slice(0, 1).arrayBuffer();
    } catch {
      return "could not be read from this computer (moved or deleted since it was chosen, or a folder?)";
    }
    return `${err.message}; is the server still running?`;
  }

  async function errorText(res) {
    try {
      const body = JSON.parse(await res.blob.text());
      if (typeof body.detail === "string") return body.detail;
      if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
    } catch {
      // not JSON: fall through
    }
    return `HTTP ${res.status}`;
  }

  // -- actions on photos -------------------------------------------------------------------------

  /** Put photos on the page and queue them; with ``problem``, each fails at once with that reason. */
  function addFiles(files, problem = null) {
    for (const file of files) {
      const item = { file, card: createCard(file), state: "new", settings: null, result: null, resultUrl: "",
        inputColor: null, downloadName: "", xhr: null, removed: false, photoId: null, width: 0, height: 0,
        hints: [], selected: -1, renderTimer: 0, renderAbort: null, confidenceUrl: "" };
      part(item, ".rerun").addEventListener("click", () => rerun(item));
      part(item, ".before-after").addEventListener("click", () => downloadBeforeAfter(item));
      part(item, ".remove").addEventListener("click", () => remove(item));
      bindHints(item);
      items.push(item);
      els.results.append(item.card);
      if (problem) {
        item.settings = currentSettings();
        finish(item, "error", problem);
      } else if (limits && file.size > limits.max_upload_bytes) {
        const limit = formatBytes(limits.max_upload_bytes);
        item.settings = currentSettings();
        finish(item, "error", `too large (${formatBytes(file.size)}; the limit is ${limit})`);
      } else {
        enqueue(item);
      }
    }
    pump();
  }

  /** Colorize a finished photo again with the current settings. */
  function rerun(item) {
    if (!FINISHED.includes(item.state)) return;
    enqueue(item);
    announce(`${item.file.name}: re-running with ${describeSettings(item.settings)}`);
    pump();
  }

  function rerunAll() {
    const stale = staleItems();
    for (const item of stale) enqueue(item);
    if (stale.length) announce(`Re-running ${stale.length} photos with ${describeSettings(currentSettings())}`);
    pump();
  }

  /** Take a photo off the page, cancelling its upload; focus moves to the next photo's Remove button. */
  function remove(item, { quiet = false } = {}) {
    const index = items.indexOf(item);
    if (index < 0) return;
    item.removed = true;
    if (item.xhr) item.xhr.abort();
    clearTimeout(item.renderTimer);
    if (item.renderAbort) item.renderAbort.abort();
    item.resizeObserver?.disconnect();
    if (item.confidenceUrl) URL.revokeObjectURL(item.confidenceUrl);
    items.splice(index, 1);
    for (const img of item.card.querySelectorAll("img")) if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    const hadFocus = item.card.contains(document.activeElement);
    item.card.remove();
    if (!quiet) {
      announce(`${item.file.name}: removed`);
      if (hadFocus) (items[index] || items[index - 1])?.card.querySelector(".remove").focus();
      if (hadFocus && !items.length) els.input.focus();
    }
    updateSummary();
  }

  function clearAll() {
    const count = items.length;
    for (const item of [...items]) remove(item, { quiet: true });
    if (count) announce(`All ${count} photos removed`);
    els.input.focus();
  }

  function uniqueName(name, used) {
    let candidate = name;
    for (let n = 2; used.has(candidate); n++) candidate = name.replace(/(\.[^.]*)?$/, (ext) => ` (${n})${ext}`);
    used.add(candidate);
    return candidate;
  }

  async function downloadAll() {
    const done = items.filter((it) => it.state === "done");
    if (!done.length) return;
    els.zip.disabled = true;
    const used = new Set();
    const now = new Date();
    const entries = done.map((it) => ({ name: uniqueName(it.downloadName, used), blob: it.result, date: now }));
    const url = URL.createObjectURL(await ColorizeZip.build(entries));
    const a = document.createElement("a");
    a.href = url;
    a.download = "colorized.zip";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    updateSummary();
  }

  // -- hints: pins on the photo ------------------------------------------------------------------

  /** The hints as the CLI's --hints JSON: [{x, y, color, radius?}] in the photo's pixels. */
  function hintsJson(item) {
    return item.hints.map((h) => (h.radius != null ? { x: h.x, y: h.y, color: h.color, radius: h.radius }
      : { x: h.x, y: h.y, color: h.color }));
  }

  function toggleHints(item, open = !item.card.classList.contains("hinting")) {
    item.card.classList.toggle("hinting", open);
    part(item, ".hints").hidden = !open;
    part(item, ".pins").hidden = !open;
    part(item, ".edit-hints").setAttribute("aria-expanded", String(open));
    if (!open) {
      showConfidence(item, false);
      return;
    }
    const toggle = part(item, ".confidence-toggle");
    toggle.disabled = !serverConfidence;
    part(item, ".confidence-note").textContent = serverConfidence ? "(bright: the model is unsure)"
      : "(not available: this model predicts colors directly)";
    layoutPins(item);
    item.card.scrollIntoView({ block: "start" }); // the whole photo in view to pin on, its panel below
    part(item, ".hint-color").focus({ preventScroll: true });
  }

  /** The photo's pixel size and the rectangle it is drawn in (object-fit: contain) inside the compare box. */
  function photoRect(item) {
    const after = part(item, ".after");
    item.width = after.naturalWidth || item.width;
    item.height = after.naturalHeight || item.height;
    const box = part(item, ".compare");
    const scale = Math.min(box.clientWidth / item.width, box.clientHeight / item.height);
    const width = item.width * scale;
    const height = item.height * scale;
    return { left: (box.clientWidth - width) / 2, top: (box.clientHeight - height) / 2, width, height };
  }

  /** Lay the pin layer over the drawn photo and draw every pin. */
  function layoutPins(item) {
    if (!item.card.classList.contains("hinting") || !item.width && !part(item, ".after").naturalWidth) return;
    const rect = photoRect(item);
    const layer = part(item, ".pins");
    Object.assign(layer.style, { left: `${rect.left}px`, top: `${rect.top}px`, width: `${rect.width}px`,
      height: `${rect.height}px` });
    drawPins(item);
  }

  /** Pins follow ``item.hints``; the elements are reused, so a pin being dragged or focused stays itself. */
  function drawPins(item) {
    const layer = part(item, ".pins");
    while (layer.childElementCount > item.hints.length) layer.lastElementChild.remove();
    while (layer.childElementCount < item.hints.length) {
      const pin = document.createElement("button");
      pin.type = "button";
      pin.className = "pin";
      layer.append(pin);
    }
    item.hints.forEach((hint, i) => {
      const pin = layer.children[i];
      pin.dataset.index = String(i);
      pin.style.left = `${(100 * (hint.x + 0.5)) / item.width}%`;
      pin.style.top = `${(100 * (hint.y + 0.5)) / item.height}%`;
      pin.style.setProperty("--pin", hint.color);
      pin.setAttribute("aria-pressed", String(i === item.selected));
      pin.setAttribute("aria-label", `Hint ${i + 1}: ${hint.color} at x ${hint.x}, y ${hint.y}`);
    });
    const selected = item.hints[item.selected];
    if (selected) part(item, ".hint-color").value = selected.color;
    part(item, ".delete-pin").disabled = !selected;
    part(item, ".clear-pins").disabled = !item.hints.length;
    part(item, ".save-hints").disabled = !item.hints.length;
  }

  /** A point on the pin layer (client coordinates) -> the photo's pixel under it, kept inside the photo. */
  function pixelAt(item, clientX, clientY) {
    const box = part(item, ".pins").getBoundingClientRect();
    const x = Math.floor(((clientX - box.left) / box.width) * item.width);
    const y = Math.floor(((clientY - box.top) / box.height) * item.height);
    return { x: Math.min(item.width - 1, Math.max(0, x)), y: Math.min(item.height - 1, Math.max(0, y)) };
  }

  function addPin(item, x, y) {
    item.hints.push({ x, y, color: part(item, ".hint-color").value });
    item.selected = item.hints.length - 1;
    drawPins(item);
    announce(`${item.file.name}: pin ${item.hints.length} added at x ${x}, y ${y}`);
    scheduleRender(item);
  }

  function selectPin(item, index) {
    item.selected = index;
    drawPins(item);
  }

  function deletePin(item, index = item.selected) {
    if (!item.hints[index]) return;
    const hadFocus = part(item, ".pins").contains(document.activeElement);
    item.hints.splice(index, 1);
    item.selected = Math.min(index, item.hints.length - 1);
    drawPins(item);
    if (hadFocus) (part(item, ".pins").children[item.selected] || part(item, ".add-pin")).focus();
    announce(`${item.file.name}: pin ${index + 1} removed; ${item.hints.length} left`);
    scheduleRender(item);
  }

  function moveSelected(item, dx, dy) {
    const hint = item.hints[item.selected];
    if (!hint) return;
    hint.x = Math.min(item.width - 1, Math.max(0, hint.x + dx));
    hint.y = Math.min(item.height - 1, Math.max(0, hint.y + dy));
    drawPins(item);
    scheduleRender(item);
  }

  /** The selected pin takes ``color``; with none selected, it is the color of the next pin. */
  function setPinColor(item, color) {
    part(item, ".hint-color").value = color;
    const hint = item.hints[item.selected];
    if (!hint || hint.color === color) return;
    hint.color = color;
    drawPins(item);
    scheduleRender(item);
  }

  /** Drag a pin with the mouse, a pen or a finger; a click without moving just selects it. */
  function dragPin(item, event) {
    const pin = event.target.closest(".pin");
    if (!pin || event.button !== 0) return;
    event.preventDefault();
    const index = Number(pin.dataset.index);
    selectPin(item, index);
    const layer = part(item, ".pins");
    layer.children[index].focus();
    const start = { ...item.hints[index] };
    const move = (e) => {
      Object.assign(item.hints[index], pixelAt(item, e.clientX, e.clientY));
      drawPins(item);
    };
    const end = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", end);
      const hint = item.hints[index];
      if (hint && (hint.x !== start.x || hint.y !== start.y)) {
        item.dragged = true; // the click that ends a drag drops no pin
        setTimeout(() => { item.dragged = false; }, 0);
        announce(`${item.file.name}: pin ${index + 1} moved to x ${hint.x}, y ${hint.y}`);
        scheduleRender(item);
      }
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", end);
  }

  function pinKeys(item, event) {
    const pin = event.target.closest(".pin");
    if (!pin) return;
    // a step of one screen pixel (a 4000-pixel scan shown 800 wide: 5 of its pixels), ten with Shift
    const perScreenPixel = item.width / (part(item, ".pins").getBoundingClientRect().width || item.width);
    const step = Math.max(1, Math.ceil(perScreenPixel - 1e-6)) * (event.shiftKey ? 10 : 1);
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (event.key === "Delete" || event.key === "Backspace") {
      deletePin(item, Number(pin.dataset.index));
    } else if (moves[event.key]) {
      if (item.selected !== Number(pin.dataset.index)) selectPin(item, Number(pin.dataset.index));
      moveSelected(item, ...moves[event.key]);
    } else {
      return;
    }
    event.preventDefault();
  }

  // -- hints: rendering --------------------------------------------------------------------------

  function hintStatus(item, text) {
    part(item, ".hint-status").textContent = text;
  }

  /** Re-render once the pins have been still for RENDER_DELAY_MS; the photo shows it is updating. */
  function scheduleRender(item) {
    clearTimeout(item.renderTimer);
    item.card.classList.add("rendering");
    hintStatus(item, "updating…");
    item.renderTimer = setTimeout(() => renderHints(item), RENDER_DELAY_MS);
  }

  /** The kept prediction rendered with the pins (no network run); a newer render cancels an older one. */
  async function renderHints(item) {
    if (item.renderAbort) item.renderAbort.abort();
    const abort = new AbortController();
    item.renderAbort = abort;
    const started = performance.now();
    const count = item.hints.length;
    let res;
    try {
      res = await fetch(`/api/photos/${encodeURIComponent(item.photoId)}/render`, {
        method: "POST", headers: { "Content-Type": "application/json" }, signal: abort.signal,
        body: JSON.stringify({ hints: hintsJson(item) }),
      });
      if (res.status === 404) { // the server forgot the photo (restarted, or memory): colorize it again
        item.renderAbort = null;
        item.card.classList.remove("rendering");
        hintStatus(item, "the server had forgotten this photo: colorizing it again with the pins");
        enqueue(item);
        pump();
        return;
      }
      if (!res.ok) throw new Error(await errorText({ status: res.status, blob: await res.blob() }));
      const blob = await res.blob();
      if (abort.signal.aborted) return;
      showImage(item, blob);
    } catch (err) {
      if (abort.signal.aborted) return;
      item.renderAbort = null;
      item.card.classList.remove("rendering");
      hintStatus(item, `could not update: ${err.message}`);
      announce(`${item.file.name}: could not apply the hints: ${err.message}`);
      return;
    }
    item.renderAbort = null;
    item.card.classList.remove("rendering");
    const noun = count === 1 ? "hint" : "hints";
    hintStatus(item, `updated with ${count} ${noun} in ${Math.round(performance.now() - started)} ms`);
  }

  // -- hints: files (the CLI's --hints JSON) -------------------------------------------------------

  function saveHints(item) {
    const blob = new Blob([JSON.stringify(hintsJson(item), null, 2) + "\n"], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `${stem(item.file.name)}.hints.json`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  const colorProbe = document.createElement("canvas").getContext("2d");

  /** Any CSS color (as the CLI reads: #rgb, #rrggbb, names, rgb(...)) -> #rrggbb; null if not a color. */
  function hexColor(text) {
    const seen = [];
    for (const sentinel of ["#000000", "#ffffff"]) { // an invalid color leaves the sentinel in place
      colorProbe.fillStyle = sentinel;
      colorProbe.fillStyle = String(text);
      seen.push(colorProbe.fillStyle);
    }
    return seen[0] === seen[1] && /^#[0-9a-f]{6}$/.test(seen[0]) ? seen[0] : null;
  }

  /** Hints from a file's JSON: a list, or {"photo.jpg": [...]} naming this photo (or holding one photo). */
  function parseHints(item, data) {
    if (data && !Array.isArray(data) && typeof data === "object") {
      const keys = Object.keys(data);
      const key = keys.find((k) => k.replace(/\\/g, "/").split("/").pop() === item.file.name)
        ?? (keys.length === 1 ? keys[0] : null);
      if (key == null) throw new Error(`it holds no hints for ${item.file.name}`);
      data = data[key];
    }
    if (!Array.isArray(data)) throw new Error('expected a list of {"x", "y", "color", "radius"?}');
    return data.map((h, i) => {
      const where = `hint ${i + 1}`;
      if (!h || typeof h !== "object") throw new Error(`${where} is not an object`);
      const { x, y, radius } = h;
      if (!Number.isFinite(x) || !Number.isFinite(y)) throw new Error(`${where}: x and y must be numbers`);
      if (x < 0 || y < 0 || x >= item.width || y >= item.height) {
        throw new Error(`${where}: (${x}, ${y}) is outside the ${item.width}x${item.height} photo`);
      }
      const color = hexColor(h.color);
      if (!color) throw new Error(`${where}: unknown color ${JSON.stringify(h.color)}`);
      if (radius != null && !(Number.isFinite(radius) && radius > 0)) throw new Error(`${where}: bad radius`);
      return radius != null ? { x: Math.round(x), y: Math.round(y), color, radius } : { x: Math.round(x), y: Math.round(y), color };
    });
  }

  async function loadHints(item, file) {
    try {
      item.hints = parseHints(item, JSON.parse(await file.text()));
    } catch (err) {
      hintStatus(item, `${file.name}: not loaded: ${err.message}`);
      announce(`${file.name}: not loaded: ${err.message}`);
      return;
    }
    item.selected = item.hints.length - 1;
    drawPins(item);
    announce(`${item.file.name}: ${item.hints.length} hints loaded from ${file.name}`);
    scheduleRender(item);
  }

  // -- hints: the confidence overlay ---------------------------------------------------------------

  /** Overlay the network's confidence (bright where it is unsure: where a hint would help most). */
  async function showConfidence(item, on) {
    const overlay = part(item, ".confidence");
    part(item, ".confidence-toggle").checked = on;
    if (!on) {
      overlay.hidden = true;
      return;
    }
    if (!item.confidenceUrl) {
      hintStatus(item, "loading the confidence map…");
      try {
        const res = await fetch(`/api/photos/${encodeURIComponent(item.photoId)}/confidence`);
        if (!res.ok) throw new Error(await errorText({ status: res.status, blob: await res.blob() }));
        item.confidenceUrl = URL.createObjectURL(await res.blob());
      } catch (err) {
        part(item, ".confidence-toggle").checked = false;
        hintStatus(item, `no confidence map: ${err.message}`);
        return;
      }
      hintStatus(item, "");
    }
    overlay.src = item.confidenceUrl;
    overlay.alt = `where a hint would help most on ${item.file.name}: the bright parts`;
    overlay.hidden = !part(item, ".confidence-toggle").checked;
  }

  function dropConfidence(item) {
    if (item.confidenceUrl) URL.revokeObjectURL(item.confidenceUrl);
    item.confidenceUrl = "";
    if (part(item, ".confidence-toggle").checked && item.photoId) showConfidence(item, true);
  }

  /** Wire one card's hint controls. */
  function bindHints(item) {
    part(item, ".edit-hints").addEventListener("click", () => toggleHints(item));
    const layer = part(item, ".pins");
    layer.addEventListener("click", (e) => {
      if (e.target !== layer || item.dragged) return; // a click on a pin selects it (pointerdown)
      const { x, y } = pixelAt(item, e.clientX, e.clientY);
      addPin(item, x, y);
    });
    layer.addEventListener("pointerdown", (e) => dragPin(item, e));
    layer.addEventListener("keydown", (e) => pinKeys(item, e));
    layer.addEventListener("focusin", (e) => {
      const pin = e.target.closest(".pin");
      if (pin && Number(pin.dataset.index) !== item.selected) selectPin(item, Number(pin.dataset.index));
    });
    part(item, ".hint-color").addEventListener("input", (e) => setPinColor(item, e.target.value));
    part(item, ".swatches").addEventListener("click", (e) => {
      const swatch = e.target.closest(".swatch");
      if (swatch) setPinColor(item, swatch.dataset.color);
    });
    part(item, ".add-pin").addEventListener("click", () => {
      layoutPins(item);
      addPin(item, Math.floor(item.width / 2), Math.floor(item.height / 2));
      part(item, ".pins").children[item.selected].focus({ preventScroll: true }); // the arrow keys move it now
    });
    part(item, ".delete-pin").addEventListener("click", () => deletePin(item));
    part(item, ".clear-pins").addEventListener("click", () => {
      const count = item.hints.length;
      item.hints = [];
      item.selected = -1;
      drawPins(item);
      announce(`${item.file.name}: all ${count} pins removed`);
      scheduleRender(item);
    });
    part(item, ".save-hints").addEventListener("click", () => saveHints(item));
    const fileInput = part(item, ".hints-file");
    fileInput.addEventListener("change", () => {
      if (fileInput.files.length) loadHints(item, fileInput.files[0]);
      fileInput.value = "";
    });
    part(item, ".confidence-toggle").addEventListener("change", (e) => showConfidence(item, e.target.checked));
    part(item, ".after").addEventListener("load", () => layoutPins(item));
    item.resizeObserver = new ResizeObserver(() => layoutPins(item));
    item.resizeObserver.observe(part(item, ".compare"));
  }

  // -- dropped folders ---------------------------------------------------------------------------

  /** A dropped file as it is, or a folder's image files (its subfolders' too) in the order of their names. */
  async function entryFiles(entry) {
    if (entry.isFile) return [await new Promise((resolve, reject) => entry.file(resolve, reject))];
    const reader = entry.createReader();
    const children = [];
    for (;;) { // readEntries answers in batches (100 in Chromium) until an empty one
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      children.push(...batch);
    }
    children.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
    const files = [];
    for (const child of children) {
      const found = await entryFiles(child);
      files.push(...(child.isFile ? found.filter((f) => f.type.startsWith("image/")) : found));
    }
    return files;
  }

  /** What a drop brought: a folder comes in dataTransfer.files as one 0-byte file no browser can read, so
   * folders are walked through their entries (taken while the drop event lasts). */
  async function addDropped(dataTransfer) {
    const items = [...(dataTransfer.items || [])].filter((item) => item.kind === "file");
    const entries = items.map((item) => item.webkitGetAsEntry?.());
    if (!entries.length || !entries.every(Boolean)) {
      addFiles(dataTransfer.files);
      return;
    }
    for (const entry of entries) {
      let files;
      try {
        files = await entryFiles(entry);
      } catch (err) {
        addFiles([new File([], entry.name)], `could not be read (${err.message})`);
        continue;
      }
      if (entry.isDirectory && !files.length) addFiles([new File([], entry.name)], "a folder with no photos in it");
      addFiles(files);
    }
  }

  // -- wiring ------------------------------------------------------------------------------------

  function bindControls() {
    els.input.addEventListener("change", () => {
      addFiles(els.input.files);
      els.input.value = ""; // so choosing the same file again starts again
    });
    els.saturation.addEventListener("input", onSettingsChanged);
    els.size.addEventListener("change", onSettingsChanged);
    els.rerunAll.addEventListener("click", rerunAll);
    els.clear.addEventListener("click", clearAll);
    els.zip.addEventListener("click", downloadAll);
  }

  function bindDrop() {
    for (const type of ["dragenter", "dragover"]) {
      els.drop.addEventListener(type, (e) => {
        e.preventDefault();
        els.drop.classList.add("over");
      });
    }
    els.drop.addEventListener("dragleave", () => els.drop.classList.remove("over"));
    els.drop.addEventListener("drop", (e) => {
      e.preventDefault();
      els.drop.classList.remove("over");
      addDropped(e.dataTransfer);
    });
    // a photo dropped beside the drop zone must not replace the page
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
  }

  bindControls();
  bindDrop();
  updateSummary();
  loadInfo();
})();
