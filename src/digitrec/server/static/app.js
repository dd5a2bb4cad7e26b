// digitrec page: draw or hand in an image, send it to /v1/predict or /v1/read, show the answer.
// Plain JS, no libraries, no build step; everything it needs is served by the app itself.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const pad = $("pad"), ctx = pad.getContext("2d");
  const preview = $("preview"), boxes = $("boxes"), stage = $("stage"), hint = $("hint");
  const result = $("result"), answer = $("answer"), answerLabel = $("answer-label");
  const statusLine = $("status"), candidates = $("candidates");
  const undoButton = $("undo"), clearButton = $("clear"), submitButton = $("submit");
  const fileInput = $("file"), dropping = $("dropping");

  const SIZES = { digit: [400, 400], number: [800, 400] }; // drawing area in canvas pixels (w, h)
  const AUTO_SUBMIT_MS = 700; // after the last stroke, recognise without a click

  let mode = "digit";
  let strokes = [];        // each stroke: list of [x, y] in canvas pixels
  let current = null;      // the stroke being drawn
  let upload = null;       // {blob, name, url} when an image was handed in instead of drawn
  let autoTimer = null;
  let requestSeq = 0;      // only the newest answer is shown

  // ---- drawing -----------------------------------------------------------------------------

  function resizePad() {
    const [w, h] = SIZES[mode];
    answerLabel.textContent = mode === "number" ? "Number" : "Digit";
    hint.textContent = mode === "number" ? "Write a number here" : "Draw a digit here";
    pad.width = w;
    pad.height = h;
    redraw();
  }

  function redraw() {
    ctx.fillStyle = "#fff"; // dark ink on white paper, like a form; the server decides polarity anyway
    ctx.fillRect(0, 0, pad.width, pad.height);
    ctx.strokeStyle = "#111";
    ctx.fillStyle = "#111";
    ctx.lineWidth = pad.height / 14; // about MNIST's stroke width relative to the digit's height
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    for (const stroke of strokes) drawStroke(stroke);
    const empty = strokes.length === 0;
    undoButton.disabled = empty && !upload;
    clearButton.disabled = empty && !upload;
    hint.hidden = !empty || upload !== null;
  }

  function drawStroke(points) {
    if (points.length === 1) { // a dot
      ctx.beginPath();
      ctx.arc(points[0][0], points[0][1], ctx.lineWidth / 2, 0, 2 * Math.PI);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    ctx.moveTo(points[0][0], points[0][1]);
    for (let i = 1; i < points.length; i++) ctx.lineTo(points[i][0], points[i][1]);
    ctx.stroke();
  }

  function canvasPoint(event) {
    const rect = pad.getBoundingClientRect();
    return [(event.clientX - rect.left) * (pad.width / rect.width),
            (event.clientY - rect.top) * (pad.height / rect.height)];
  }

  // Pointer events cover mouse, touch and pen alike.
  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    if (upload) showPad();
    pad.setPointerCapture(event.pointerId);
    current = [canvasPoint(event)];
    strokes.push(current);
    clearTimeout(autoTimer);
    clearBoxes();
    redraw();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!current) return;
    event.preventDefault();
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) current.push(canvasPoint(e));
    redraw();
  });
  const endStroke = () => {
    if (!current) return;
    current = null;
    clearTimeout(autoTimer);
    autoTimer = setTimeout(submit, AUTO_SUBMIT_MS);
  };
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  undoButton.addEventListener("click", () => {
    if (upload) { showPad(); } else { strokes.pop(); }
    redraw();
    clearBoxes();
    clearTimeout(autoTimer);
    if (strokes.length) autoTimer = setTimeout(submit, AUTO_SUBMIT_MS); else showIdle();
  });
  clearButton.addEventListener("click", () => {
    strokes = [];
    showPad();
    redraw();
    clearBoxes();
    clearTimeout(autoTimer);
    showIdle();
  });

  // ---- handing in an image -----------------------------------------------------------------

  // A phone photo (6-15 MB) is over the server's upload limit (5 MB) and far finer than it reads:
  // it works at most 1600 pixels on the long side (READ_MAX_SIDE in reading/candidates.py; one
  // digit at 1024). So a large file is redrawn at that size, upright as its EXIF orientation says,
  // and sent as a JPEG, a few hundred KB; a smaller file is sent as it is, byte for byte, so the
  // page reads exactly what the API reads for that file.
  const SHRINK_OVER_BYTES = 1024 * 1024;
  const MAX_SIDE = 1600;
  const JPEG_QUALITY = 0.9;
  let handedIn = 0; // only the newest image handed in is used, however long the previous took

  async function upright(blob) {
    try {
      return [await createImageBitmap(blob, { imageOrientation: "from-image" }), null];
    } catch (err) { // no such option (older browsers): an <img> applies the EXIF orientation itself
      const url = URL.createObjectURL(blob);
      const img = new Image();
      img.src = url;
      await img.decode().catch((e) => { URL.revokeObjectURL(url); throw e; });
      return [img, url];
    }
  }

  function opaque(context, width, height) {
    const data = context.getImageData(0, 0, width, height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] < 255) return false;
    return true;
  }

  async function shrunk(blob) {
    if (blob.size <= SHRINK_OVER_BYTES) return blob;
    let image, url;
    try {
      [image, url] = await upright(blob);
    } catch (err) {
      return blob; // a format this browser cannot draw (HEIC, say): the server may still read it
    }
    const scale = Math.min(1, MAX_SIDE / Math.max(image.width, image.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(image.width * scale));
    canvas.height = Math.max(1, Math.round(image.height * scale));
    const context = canvas.getContext("2d");
    context.imageSmoothingQuality = "high";
    context.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (image.close) image.close();
    if (url) URL.revokeObjectURL(url);
    // JPEG has no transparency, and the server reads it (ink on a clear background): a picture
    // with see-through pixels goes as PNG.
    const jpeg = blob.type === "image/jpeg" || opaque(context, canvas.width, canvas.height);
    const type = jpeg ? "image/jpeg" : "image/png";
    const out = await new Promise((resolve) => canvas.toBlob(resolve, type, JPEG_QUALITY));
    return out && (scale < 1 || out.size < blob.size) ? out : blob;
  }

  async function useImage(blob, name) {
    if (!blob) return;
    const mine = ++handedIn;
    clearTimeout(autoTimer);
    if (blob.size > SHRINK_OVER_BYTES) {
      setState("busy");
      statusLine.textContent = "Making the photo smaller…";
    }
    const sent = await shrunk(blob);
    if (mine !== handedIn) return; // another image, or the drawing pad, came since
    if (upload) URL.revokeObjectURL(upload.url);
    // The preview is what is sent, so the boxes the server draws fit it.
    upload = { blob: sent, name: name || "image", url: URL.createObjectURL(sent) };
    preview.src = upload.url;
    preview.hidden = false;
    pad.hidden = true;
    clearBoxes();
    redraw();
    submit();
  }

  function showPad() {
    handedIn++; // an image still being made smaller is no longer wanted
    if (upload) URL.revokeObjectURL(upload.url);
    upload = null;
    preview.hidden = true;
    preview.removeAttribute("src");
    pad.hidden = false;
  }

  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) useImage(file, file.name);
    fileInput.value = ""; // choosing the same file again should still fire
  });

  // Drops anywhere on the page go to the reader instead of navigating away.
  let dragDepth = 0;
  document.addEventListener("dragenter", (e) => { e.preventDefault(); dragDepth++; dropping.hidden = false; });
  document.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; dropping.hidden = true; } });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    dragDepth = 0;
    dropping.hidden = true;
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (file) useImage(file, file.name);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData ? e.clipboardData.items : [])].find((i) => i.kind === "file");
    if (item) useImage(item.getAsFile(), "pasted image");
  });

  // ---- mode --------------------------------------------------------------------------------

  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => {
      if (!radio.checked) return;
      mode = radio.value;
      stage.classList.toggle("wide", mode === "number");
      resizePad(); // strokes keep their coordinates; the number pad is the digit pad made wider
      clearBoxes();
      if (strokes.length || upload) submit(); else showIdle();
    });
  }

  // ---- asking the server -------------------------------------------------------------------

  async function currentImage() {
    if (upload) return [upload.blob, upload.name];
    if (!strokes.length) return [null, null];
    const blob = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    return [blob, "drawing.png"];
  }

  async function submit() {
    clearTimeout(autoTimer);
    setState("busy"); // at once, so whoever clicked sees this request, not the previous answer
    const [blob, name] = await currentImage();
    if (!blob) {
      showIdle(mode === "number" ? "Write a number first, or choose an image." : "Draw a digit first, or choose an image.");
      return;
    }
    const seq = ++requestSeq;
    const url = mode === "number" ? "/v1/read" : "/v1/predict?top_k=5";
    const form = new FormData();
    form.append("file", blob, name);
    statusLine.textContent = "Reading…";
    let response, body;
    try {
      response = await fetch(url, { method: "POST", body: form });
      body = await response.json();
    } catch (err) {
      if (seq === requestSeq) showError("The server did not answer", String(err.message || err));
      return;
    }
    if (seq !== requestSeq) return; // a newer request is on its way
    if (!response.ok) { showError(body.title || `HTTP ${response.status}`, body.detail || ""); return; }
    if (mode === "number") showReading(body); else showPrediction(body);
  }
  submitButton.addEventListener("click", submit);

  // ---- showing answers ---------------------------------------------------------------------

  const percent = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.005 ? 0 : 1)}%`;

  function setState(state) { result.dataset.state = state; }

  function showIdle(message) {
    requestSeq++;
    setState("idle");
    answer.textContent = "–";
    answer.className = "answer";
    statusLine.textContent = message || (mode === "number" ? "Write a number and press Recognise."
                                                           : "Draw a digit and press Recognise.");
    candidates.replaceChildren();
  }

  function showError(title, detail) {
    setState("error");
    answer.textContent = "–";
    answer.className = "answer";
    statusLine.textContent = detail ? `${title}: ${detail}` : title;
    candidates.replaceChildren();
    clearBoxes();
  }

  function bar(label, probability, best) {
    const li = document.createElement("li");
    if (best) li.className = "best";
    const name = document.createElement("span");
    name.className = "digit";
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "track";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${Math.max(0, Math.min(1, probability)) * 100}%`;
    track.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(probability);
    li.append(name, track, value);
    return li;
  }

  function showPrediction(p) {
    setState("done");
    if (p.rejected) {
      answer.textContent = "Not a digit";
      answer.className = "answer rejected";
      statusLine.textContent = `${p.reason || "rejected"}: it does not look like one digit, so there is no guess.`;
    } else {
      answer.textContent = String(p.digit);
      answer.className = "answer";
      statusLine.textContent = `${percent(p.confidence)} sure`;
    }
    candidates.replaceChildren(...p.top_k.map((c, i) => bar(String(c.digit), c.probability, i === 0 && !p.rejected)));
  }

  function showReading(r) {
    setState("done");
    if (r.rejected || !r.text) {
      answer.textContent = "Not a number";
      answer.className = "answer rejected";
      statusLine.textContent = `${r.reason || "rejected"}: no number could be read, so there is no guess.`;
    } else {
      answer.textContent = r.text;
      answer.className = r.needs_review ? "answer review" : "answer";
      statusLine.textContent = r.needs_review
        ? "Please check this reading: a digit is uncertain or the digits were hard to separate."
        : `${r.digits.length} digit${r.digits.length === 1 ? "" : "s"} read.`;
    }
    candidates.replaceChildren(...r.digits.map((d) => bar(String(d.digit), d.confidence, false)));
    drawBoxes(r.digits);
  }

  function clearBoxes() { boxes.replaceChildren(); }

  // Boxes come in the input image's pixels; placed in percent they follow any display size.
  function drawBoxes(digits) {
    clearBoxes();
    const w = upload ? preview.naturalWidth : pad.width;
    const h = upload ? preview.naturalHeight : pad.height;
    if (!w || !h) return;
    for (const d of digits) {
      const [x0, y0, x1, y1] = d.box;
      const box = document.createElement("div");
      box.className = "box";
      box.style.left = `${(100 * x0) / w}%`;
      box.style.top = `${(100 * y0) / h}%`;
      box.style.width = `${(100 * (x1 - x0)) / w}%`;
      box.style.height = `${(100 * (y1 - y0)) / h}%`;
      const tag = document.createElement("span");
      tag.textContent = String(d.digit);
      box.append(tag);
      boxes.append(box);
    }
  }

  // ---- model line in the footer ------------------------------------------------------------

  fetch("/v1/model").then((r) => (r.ok ? r.json() : null)).then((m) => {
    if (!m) return;
    const test = m.metrics && m.metrics.test && m.metrics.test.accuracy;
    $("model-info").textContent = `Model: ${m.arch}` +
      (typeof test === "number" ? `, ${(100 * test).toFixed(2)}% on the MNIST test set` : "") +
      ` · digitrec ${m.version}`;
  }).catch(() => {});

  resizePad();
  showIdle();
})();
