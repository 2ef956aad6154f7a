"use strict";

/*
 * The colorize page: queue dropped or chosen photos, upload a few at a time to /api/colorize, show
 * each result beside its original with a before/after slider, re-run finished photos with new
 * settings, remove them, and zip all results in the browser.
 *
 * One function per concern: server info, settings, cards (what a photo shows), announcements (what a
 * screen reader hears), the queue, the network, the actions on photos, and the wiring of controls.
 */
(() => {
  const PARALLEL = 2; // uploads at once; the server queues beyond its workers
  const MAX_RETRIES = 8; // on 503, wait as Retry-After says and try again
  const EXTENSIONS = { "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp" };
  const SIZES = [256, 384, 512, 768, 1024, 1536, 2048];
  const FINISHED = ["done", "error"];
  const ANNOUNCEMENTS_KEPT = 10;

  const $ = (selector) => document.querySelector(selector);
  const els = {
    input: $("#file-input"), drop: $("#drop"), results: $("#results"), template: $("#card-template"),
    summary: $("#summary"), zip: $("#zip"), rerunAll: $("#rerun-all"), clear: $("#clear"),
    saturation: $("#saturation"), saturationValue: $("#saturation-value"), size: $("#size"),
    model: $("#model"), limits: $("#limits"), announcer: $("#announcer"),
  };
  /** Every photo on the page: {file, card, state, settings, result, resultUrl, inputColor, downloadName, xhr}. */
  const items = [];
  let running = 0;
  let limits = null;
  let defaultSize = null;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const stem = (name) => name.replace(/\.[^.]*$/, "") || "photo";
  const part = (item, selector) => item.card.querySelector(selector);

  function formatBytes(n) {
    return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MB` : `${(n / 1024).toFixed(0)} KB`;
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
    els.model.textContent = `model: ${info.default}`;
    const megapixels = Math.floor(limits.max_pixels / 1e6);
    els.limits.textContent = `JPEG, PNG, WebP, TIFF, BMP or GIF, up to ${formatBytes(limits.max_upload_bytes)} ` +
      `and ${megapixels} megapixels each`;
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

  function showResult(item, blob, inputColor, ms) {
    if (item.resultUrl) URL.revokeObjectURL(item.resultUrl);
    item.result = blob;
    item.resultUrl = URL.createObjectURL(blob);
    item.inputColor = inputColor;
    item.downloadName = `${stem(item.file.name)}_color${EXTENSIONS[blob.type] || ".png"}`;
    const hadColor = inputColor === "color";
    part(item, ".badge").hidden = !hadColor;
    part(item, ".after").src = item.resultUrl;
    part(item, ".after").alt = `${item.file.name}, colorized` + (hadColor ? " (it already had color)" : "");
    const link = part(item, ".download");
    link.href = item.resultUrl;
    link.download = item.downloadName;
    link.textContent = `Download ${item.downloadName}`;
    link.hidden = false;
    setState(item, "done", `done in ${(ms / 1000).toFixed(1)} s`);
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
        finish(item, "error", `${err.message}; is the server still running?`);
        return;
      }
      if (item.removed) return;
      if (res.status === 200) {
        showResult(item, res.blob, res.inputColor, performance.now() - started);
        announce(`${item.file.name}: colorized` + (res.inputColor === "color" ? "; it already had color" : ""));
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

  /** POST one photo as multipart field "file"; resolves with {status, blob, retryAfter, inputColor}. */
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
        inputColor: xhr.getResponseHeader("X-Input-Color"),
      });
      xhr.onerror = () => reject(new Error("network error"));
      xhr.onabort = () => reject(new Error("cancelled"));
      xhr.onloadend = () => { item.xhr = null; };
      const form = new FormData();
      form.append("file", item.file, item.file.name);
      xhr.send(form);
    });
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

  function addFiles(files) {
    for (const file of files) {
      const item = { file, card: createCard(file), state: "new", settings: null, result: null, resultUrl: "",
        inputColor: null, downloadName: "", xhr: null, removed: false };
      part(item, ".rerun").addEventListener("click", () => rerun(item));
      part(item, ".remove").addEventListener("click", () => remove(item));
      items.push(item);
      els.results.append(item.card);
      if (limits && file.size > limits.max_upload_bytes) {
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
      addFiles(e.dataTransfer.files);
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
