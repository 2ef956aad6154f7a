"use strict";

/*
 * The colorize page: queue dropped or chosen photos, upload a few at a time to /api/colorize, show
 * each result beside its original with a before/after slider, and zip all results in the browser.
 */
(() => {
  const PARALLEL = 2; // uploads at once; the server queues beyond its workers
  const MAX_RETRIES = 8; // on 503, wait as Retry-After says and try again
  const EXTENSIONS = { "image/jpeg": ".jpg", "image/png": ".png" };
  const SIZES = [256, 384, 512, 768, 1024, 1536, 2048];

  const $ = (selector) => document.querySelector(selector);
  const els = {
    input: $("#file-input"), drop: $("#drop"), results: $("#results"), template: $("#card-template"),
    summary: $("#summary"), zip: $("#zip"), saturation: $("#saturation"),
    saturationValue: $("#saturation-value"), size: $("#size"), model: $("#model"), limits: $("#limits"),
  };
  const items = []; // {file, card, state, result, downloadName}
  let running = 0;
  let limits = null;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const stem = (name) => name.replace(/\.[^.]*$/, "") || "photo";

  function formatBytes(n) {
    return n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(0)} MB` : `${(n / 1024).toFixed(0)} KB`;
  }

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
    els.size.options[0].textContent = `model default (${size.default})`;
    for (const s of SIZES) {
      if (s >= size.min && s <= size.max && s !== size.default) els.size.add(new Option(String(s), String(s)));
    }
  }

  function setState(item, state, text) {
    item.state = state;
    item.card.dataset.state = state;
    item.card.querySelector(".status").textContent = text;
    updateSummary();
  }

  function updateSummary() {
    const count = (state) => items.filter((it) => it.state === state).length;
    const done = count("done");
    const failed = count("error");
    const parts = items.length ? [`${done} of ${items.length} done`] : [];
    if (failed) parts.push(`${failed} failed`);
    els.summary.textContent = parts.join(", ");
    els.zip.disabled = done === 0;
  }

  function addFiles(files) {
    for (const file of files) {
      const card = els.template.content.firstElementChild.cloneNode(true);
      const item = { file, card, state: "queued", result: null, downloadName: "" };
      const name = card.querySelector(".name");
      name.textContent = name.title = file.name;
      const before = card.querySelector(".before");
      before.addEventListener("error", () => card.classList.add("no-preview")); // not something a browser shows
      before.src = URL.createObjectURL(file);
      const compare = card.querySelector(".compare");
      card.querySelector(".slider").addEventListener("input", (e) => {
        compare.style.setProperty("--pos", `${e.target.value}%`);
      });
      items.push(item);
      els.results.append(card);
      if (limits && file.size > limits.max_upload_bytes) {
        const limit = formatBytes(limits.max_upload_bytes);
        setState(item, "error", `too large (${formatBytes(file.size)}; the limit is ${limit})`);
      } else {
        setState(item, "queued", "waiting");
      }
    }
    pump();
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

  function requestUrl() {
    const params = new URLSearchParams({ saturation: els.saturation.value });
    if (els.size.value) params.set("size", els.size.value);
    return `/api/colorize?${params}`;
  }

  /** POST one photo as multipart field "file"; resolves with {status, blob, retryAfter}. */
  function upload(item, url) {
    return new Promise((resolve, reject) => {
      const bar = item.card.querySelector("progress");
      bar.value = 0;
      const xhr = new XMLHttpRequest();
      xhr.open("POST", url);
      xhr.responseType = "blob";
      xhr.upload.onprogress = (e) => {
        if (!e.lengthComputable) return;
        bar.value = e.loaded / e.total;
        item.card.querySelector(".status").textContent = `uploading ${Math.round(100 * bar.value)}%`;
      };
      xhr.upload.onload = () => {
        bar.removeAttribute("value"); // indeterminate while the server works
        setState(item, "working", "colorizing…");
      };
      xhr.onload = () => resolve({
        status: xhr.status, blob: xhr.response, retryAfter: xhr.getResponseHeader("Retry-After"),
      });
      xhr.onerror = () => reject(new Error("network error"));
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

  async function process(item) {
    const url = requestUrl();
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      setState(item, "uploading", "uploading");
      let res;
      try {
        res = await upload(item, url);
      } catch (err) {
        setState(item, "error", `${err.message}; is the server still running?`);
        return;
      }
      if (res.status === 200) {
        showResult(item, res.blob, performance.now() - started);
        return;
      }
      if (res.status === 503 && attempt < MAX_RETRIES) {
        const wait = Math.min(30, Number(res.retryAfter) || 2);
        setState(item, "waiting", `server busy; retrying in ${wait} s`);
        await sleep(wait * 1000);
        continue;
      }
      setState(item, "error", await errorText(res));
      return;
    }
  }

  function showResult(item, blob, ms) {
    item.result = blob;
    item.downloadName = `${stem(item.file.name)}_color${EXTENSIONS[blob.type] || ".png"}`;
    const url = URL.createObjectURL(blob);
    item.card.querySelector(".after").src = url;
    const link = item.card.querySelector(".download");
    link.href = url;
    link.download = item.downloadName;
    link.textContent = `Download ${item.downloadName}`;
    link.hidden = false;
    setState(item, "done", `done in ${(ms / 1000).toFixed(1)} s`);
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

  els.input.addEventListener("change", () => {
    addFiles(els.input.files);
    els.input.value = ""; // so choosing the same file again starts again
  });
  els.saturation.addEventListener("input", () => {
    els.saturationValue.textContent = Number(els.saturation.value).toFixed(2);
  });
  els.zip.addEventListener("click", downloadAll);
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

  loadInfo();
})();
