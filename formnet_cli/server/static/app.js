// formnet serve: the page. Plain JavaScript, no build step; talks only to this server's API.
"use strict";

const $ = (id) => document.getElementById(id);
const EXTENSIONS = { "image/png": ".png", "image/jpeg": ".jpg", "image/tiff": ".tif", "image/webp": ".webp",
                     "image/avif": ".avif", "image/heic": ".heic", "image/jp2": ".jp2", "image/bmp": ".bmp" };
const items = [];      // {file, beforeUrl, resultUrl, downloadName, info, element, ...}
let current = null;    // the item the viewer shows
let running = false;
let maxUploadBytes = Infinity;   // the server's limit, from /v1/health

// -- server status ------------------------------------------------------------------------
async function checkServer() {
  try {
    const health = await (await fetch("/v1/health")).json();
    maxUploadBytes = health.max_upload_mib * 1024 * 1024;
    const workers = health.workers === 1 ? "1 worker" : `${health.workers} workers`;
    $("server-status").textContent =
      `Ready: ${workers} on ${health.device}, up to ${health.max_upload_mib} MiB per image.`;
  } catch (error) {
    $("server-status").textContent = "The server does not answer; is formnet serve running?";
  }
}

// -- options ------------------------------------------------------------------------------
function selectedTask() {
  return document.querySelector('input[name="task"]:checked').value;
}

function showLevelFields() {
  const task = selectedTask();
  for (const element of document.querySelectorAll(".level")) {
    element.hidden = element.dataset.task !== task;
  }
}

function formFields() {
  const fields = { task: selectedTask(), strength: $("strength").value };
  if (fields.task === "denoise") {
    fields.sigma = $("sigma-auto").checked ? "auto" : $("sigma").value;
  } else if (fields.task === "jpeg") {
    const mode = $("quality-mode").value;
    fields.quality = mode === "number" ? $("quality").value : mode;
  } else if (fields.task === "sr") {
    fields.scale = $("scale").value;
  }
  if ($("ext").value) fields.ext = $("ext").value;
  return fields;
}

// -- the list of images -------------------------------------------------------------------
function addFiles(files) {
  for (const file of files) {
    const item = { file, beforeUrl: URL.createObjectURL(file), resultUrl: null };
    item.element = document.createElement("li");
    item.element.innerHTML =
      '<span class="name"></span><span class="status">Ready</span>' +
      '<progress max="1" value="0" hidden></progress>' +
      '<button type="button" class="secondary" hidden>Show</button>';
    item.element.querySelector(".name").textContent = file.name;
    item.element.querySelector("button").addEventListener("click", () => show(item));
    $("queue").append(item.element);
    items.push(item);
  }
  updateButtons();
}

function setStatus(item, text, fraction, failed = false) {
  const status = item.element.querySelector(".status");
  status.textContent = text;
  status.classList.toggle("failed", failed);
  const bar = item.element.querySelector("progress");
  bar.hidden = fraction === null;
  if (fraction === undefined) bar.removeAttribute("value");   // indeterminate
  else if (fraction !== null) bar.value = fraction;
}

function updateButtons() {
  $("restore").disabled = running || items.length === 0;
  $("clear").disabled = running || items.length === 0;
}

function clearList() {
  for (const item of items) {
    URL.revokeObjectURL(item.beforeUrl);
    if (item.resultUrl) URL.revokeObjectURL(item.resultUrl);
  }
  items.length = 0;
  current = null;
  $("queue").replaceChildren();
  $("compare").hidden = $("side").hidden = $("download").hidden = true;
  $("viewer-empty").hidden = false;
  $("result-info").textContent = "";
  updateButtons();
}

// -- restoring ----------------------------------------------------------------------------
async function restoreAll(event) {
  event.preventDefault();
  running = true;
  updateButtons();
  $("error").textContent = "";
  const fields = formFields();
  let shown = false;
  for (const item of items) {
    try {
      await restoreOne(item, fields);
      if (!shown || current === item) show(item);   // the first result, and the one on view
      shown = true;
    } catch (error) {
      setStatus(item, `Failed: ${error.message}`, null, true);
    }
  }
  running = false;
  updateButtons();
}

function randomToken() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function restoreOne(item, fields) {
  return new Promise((resolve, reject) => {
    if (item.file.size > maxUploadBytes) {   // the server would refuse it (413) after the upload
      reject(new Error(`${item.file.name}: larger than the server's limit of ${maxUploadBytes / 1048576} MiB`));
      return;
    }
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("image", item.file, item.file.name);
    const token = randomToken();
    const request = new XMLHttpRequest();
    let polling = null;
    request.open("POST", "/v1/restore");
    request.responseType = "blob";
    request.setRequestHeader("X-Formnet-Progress", token);
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) setStatus(item, "Uploading…", event.loaded / event.total);
    };
    request.upload.onload = () => {
      setStatus(item, "Waiting for a worker…", undefined);
      polling = setInterval(() => pollProgress(item, token), 400);
    };
    request.onload = async () => {
      clearInterval(polling);
      if (request.status !== 200) {
        reject(new Error(await errorMessage(request)));
        return;
      }
      if (item.resultUrl) URL.revokeObjectURL(item.resultUrl);
      item.resultUrl = URL.createObjectURL(request.response);
      item.downloadName = downloadName(request, item.file.name);
      item.info = [request.getResponseHeader("X-Formnet-Task"), request.getResponseHeader("X-Formnet-Level"),
                   `model ${request.getResponseHeader("X-Formnet-Model")}`,
                   request.getResponseHeader("X-Formnet-Size"),
                   `${Number(request.getResponseHeader("X-Formnet-Seconds")).toFixed(1)} s`].join(" · ");
      setStatus(item, `Done: ${item.info}`, 1);
      item.element.querySelector("button").hidden = false;
      resolve();
    };
    request.onerror = () => {
      clearInterval(polling);
      reject(new Error("the server could not be reached (or closed the connection: a file too large?)"));
    };
    setStatus(item, "Uploading…", 0);
    request.send(form);
  });
}

async function pollProgress(item, token) {
  try {
    const response = await fetch(`/v1/progress/${token}`);
    if (!response.ok) return;   // finished meanwhile
    const progress = await response.json();
    if (progress.state === "running" && progress.total > 0) {
      setStatus(item, `Restoring: ${progress.done} of ${progress.total} tiles`, progress.done / progress.total);
    } else if (progress.state === "running") {
      setStatus(item, "Restoring…", undefined);
    }
  } catch (error) {
    // the request itself reports a lost server
  }
}

async function errorMessage(request) {
  try {
    return JSON.parse(await request.response.text()).error;
  } catch (error) {
    return `the server answered ${request.status}`;
  }
}

function downloadName(request, inputName) {
  const disposition = request.getResponseHeader("Content-Disposition") || "";
  const encoded = /filename\*=UTF-8''([^;]+)/.exec(disposition);
  if (encoded) return decodeURIComponent(encoded[1]);
  const stem = inputName.replace(/\.[^.]*$/, "");
  return `${stem}-restored${EXTENSIONS[request.response.type] || ""}`;
}

// -- the viewer ---------------------------------------------------------------------------
function show(item) {
  current = item;
  for (const other of items) other.element.classList.toggle("current", other === item);
  $("error").textContent = "";
  $("viewer-empty").hidden = true;
  for (const id of ["before", "side-before-image"]) $(id).src = item.beforeUrl;
  for (const id of ["after", "side-after-image"]) $(id).src = item.resultUrl;
  const download = $("download");
  download.href = item.resultUrl;
  download.download = item.downloadName;
  download.textContent = `Download ${item.downloadName}`;
  download.hidden = false;
  $("result-info").textContent = `${item.file.name}: ${item.info}`;
  showMode();
}

function showMode() {
  if (current === null) return;
  const side = document.querySelector('input[name="mode"]:checked').value === "side";
  $("compare").hidden = side;
  $("side").hidden = !side;
  applyZoom();
}

function applyZoom() {
  const zoom = $("zoom").value;
  const after = $("after");
  const width = zoom === "fit" || !after.naturalWidth ? "100%" : `${after.naturalWidth * Number(zoom)}px`;
  for (const id of ["stage", "side-before-image", "side-after-image"]) $(id).style.width = width;
  for (const id of ["compare", "side"]) $(id).classList.toggle("pixelated", zoom !== "fit" && Number(zoom) >= 2);
}

function setSplit(percent) {
  const value = Math.min(100, Math.max(0, percent));
  $("split").value = String(value);
  $("after").style.clipPath = `inset(0 0 0 ${value}%)`;
  $("divider").style.left = `${value}%`;
}

function dragSplit(event) {
  if (event.type === "pointerdown") $("stage").setPointerCapture(event.pointerId);
  else if (!$("stage").hasPointerCapture(event.pointerId)) return;
  const box = $("stage").getBoundingClientRect();
  setSplit(Math.round(((event.clientX - box.left) / box.width) * 100));
}

function syncScroll(first, second) {
  let leader = null;   // the pane being scrolled by the user; the other follows
  const follow = (source, target) => () => {
    if (leader !== null && leader !== source) return;
    leader = source;
    target.scrollLeft = source.scrollLeft;
    target.scrollTop = source.scrollTop;
    requestAnimationFrame(() => { leader = null; });
  };
  first.addEventListener("scroll", follow(first, second));
  second.addEventListener("scroll", follow(second, first));
}

function afterFailedToShow() {
  if (current === null || !current.resultUrl) return;
  $("error").textContent = `This browser cannot display ${current.downloadName}; the download has the ` +
                           "result. Choose PNG under “Save as” to compare it here.";
}

// -- wiring -------------------------------------------------------------------------------
function start() {
  $("files").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    addFiles(event.dataTransfer.files);
  });
  for (const radio of document.querySelectorAll('input[name="task"]')) radio.addEventListener("change", showLevelFields);
  $("sigma-auto").addEventListener("change", () => { $("sigma").disabled = $("sigma-auto").checked; });
  $("quality-mode").addEventListener("change", () => { $("quality").disabled = $("quality-mode").value !== "number"; });
  $("strength").addEventListener("input", () => { $("strength-value").value = Number($("strength").value).toFixed(2); });
  $("options").addEventListener("submit", restoreAll);
  $("clear").addEventListener("click", clearList);
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener("change", showMode);
  $("zoom").addEventListener("change", applyZoom);
  $("after").addEventListener("load", applyZoom);
  $("after").addEventListener("error", afterFailedToShow);
  $("split").addEventListener("input", () => setSplit(Number($("split").value)));
  for (const type of ["pointerdown", "pointermove"]) $("stage").addEventListener(type, dragSplit);
  syncScroll($("side-before"), $("side-after"));
  setSplit(50);
  showLevelFields();
  checkServer();
}

start();
