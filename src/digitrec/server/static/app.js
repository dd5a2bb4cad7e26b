// digitrec page: draw or hand in an image, send it to /v1/predict or /v1/read, show the answer.
// In form mode, a page template goes with the image (or PDF) to /v1/read and each field is shown.
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
  const templatePanel = $("template-panel"), templateBox = $("template"), templateFile = $("template-file");
  const fieldList = $("fields");

  const SIZES = { digit: [400, 400], number: [800, 400], form: [800, 400] }; // drawing area in canvas pixels (w, h)
  const LABELS = { digit: "Digit", number: "Number", form: "Form" };
  const HINTS = { digit: "Draw a digit here", number: "Write a number here", form: "Choose a form page" };
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
    answerLabel.textContent = LABELS[mode];
    hint.textContent = HINTS[mode];
    templatePanel.hidden = mode !== "form";
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
    // A form page goes as it is: its template's boxes are in its pixels (and a PDF cannot be redrawn).
    const asItIs = mode === "form" || isDocument(blob, name);
    if (blob.size > SHRINK_OVER_BYTES && !asItIs) {
      setState("busy");
      statusLine.textContent = "Making the photo smaller…";
    }
    const sent = asItIs ? blob : await shrunk(blob);
    if (mine !== handedIn) return; // another image, or the drawing pad, came since
    if (upload) URL.revokeObjectURL(upload.url);
    // The preview is what is sent, so the boxes the server draws fit it.
    upload = { blob: sent, name: name || "image", url: URL.createObjectURL(sent) };
    preview.src = upload.url;
    preview.hidden = isDocument(sent, name); // a browser shows neither PDFs nor TIFFs in an <img>
    hint.textContent = preview.hidden ? `${upload.name}: its fields are listed beside` : HINTS[mode];
    pad.hidden = true;
    clearBoxes();
    redraw();
    submit();
  }

  function isDocument(blob, name) {
    return /pdf|tiff/.test(blob.type || "") || /\.(pdf|tiff?)$/i.test(name || "");
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
      stage.classList.toggle("wide", mode !== "digit");
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
      showIdle({ digit: "Draw a digit first, or choose an image.", number: "Write a number first, or choose an image.",
                 form: "Choose the form page first: an image, a PDF or a TIFF." }[mode]);
      return;
    }
    const template = templateBox.value.trim();
    if (mode === "form" && !template) {
      showIdle("Give the page template first: paste its JSON, or load the file.");
      return;
    }
    const seq = ++requestSeq;
    const url = mode === "digit" ? "/v1/predict?top_k=5" : "/v1/read";
    const form = new FormData();
    form.append("file", blob, name);
    if (mode === "form") form.append("template", template);
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
    if (mode === "form") showFields(body); else if (mode === "number") showReading(body); else showPrediction(body);
  }
  submitButton.addEventListener("click", submit);

  // ---- showing answers ---------------------------------------------------------------------

  const IDLE = {
    digit: "Draw a digit and press Recognise.",
    number: "Write a number and press Recognise.",
    form: "Give the page template, then choose the page: an image, a PDF or a TIFF.",
  };

  const percent = (p) => `${(100 * p).toFixed(p >= 0.995 || p < 0.005 ? 0 : 1)}%`;

  function setState(state) { result.dataset.state = state; }

  function showIdle(message) {
    requestSeq++;
    setState("idle");
    answer.textContent = "–";
    answer.className = "answer";
    statusLine.textContent = message || IDLE[mode];
    candidates.replaceChildren();
    fieldList.replaceChildren();
  }

  function showError(title, detail) {
    setState("error");
    answer.textContent = "–";
    answer.className = "answer";
    statusLine.textContent = detail ? `${title}: ${detail}` : title;
    candidates.replaceChildren();
    fieldList.replaceChildren();
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
    fieldList.replaceChildren();
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
    fieldList.replaceChildren();
    if (r.rejected || !r.text) {
      answer.textContent = "Not a number";
      answer.className = "answer rejected";
      statusLine.textContent = `${r.reason || "rejected"}: no number could be read, so there is no guess.`;
    } else {
      answer.textContent = r.text;
      answer.className = r.needs_review ? "answer review" : "answer";
      statusLine.textContent = r.needs_review
        ? `Please check this reading: ${r.reason}.`
        : `${r.digits.length} digit${r.digits.length === 1 ? "" : "s"} read.`;
    }
    candidates.replaceChildren(...r.digits.map((d) => bar(String(d.digit), d.confidence, false)));
    drawBoxes(r.digits);
  }

  // A form's fields: listed with what was read and why a person should look, and drawn on the page
  // (a single image; the fields of a PDF's or TIFF's pages are listed only).
  function showFields(readings) {
    setState("done");
    candidates.replaceChildren();
    const unsure = readings.filter((r) => r.needs_review || r.rejected).length;
    const pages = new Set(readings.map((r) => r.page)).size;
    answer.textContent = `${readings.length} field${readings.length === 1 ? "" : "s"}`;
    answer.className = unsure ? "answer review" : "answer";
    statusLine.textContent = (pages > 1 ? `${pages} pages. ` : "") +
      (unsure ? `${unsure} to check: see why below.` : "Every field read cleanly.");
    fieldList.replaceChildren(...readings.map((r) => fieldItem(r, pages > 1)));
    clearBoxes();
    if (!upload || preview.hidden) return;
    for (const r of readings.filter((r) => r.page === 1 && r.box)) {
      place(r.box, `box field ${fieldState(r)}`, `${r.field}: ${r.rejected ? "–" : r.text}`);
      for (const d of r.digits) place(d.box, "box digit", null);
    }
  }

  function fieldState(r) { return r.rejected ? "rejected" : r.needs_review ? "review" : "clean"; }

  function fieldItem(r, withPage) {
    const li = document.createElement("li");
    li.className = fieldState(r);
    li.dataset.field = r.field;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = withPage ? `${r.field} (page ${r.page})` : r.field;
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = r.rejected ? "–" : r.text;
    li.append(name, text);
    if (r.needs_review || r.rejected) {
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = `${r.rejected ? "nothing read" : "needs review"}: ${r.reason || "uncertain"}`;
      li.append(note);
    }
    return li;
  }

  function clearBoxes() { boxes.replaceChildren(); }

  // Boxes come in the input image's pixels; placed in percent they follow any display size.
  function place([x0, y0, x1, y1], className, label) {
    const w = upload ? preview.naturalWidth : pad.width;
    const h = upload ? preview.naturalHeight : pad.height;
    if (!w || !h) return;
    const box = document.createElement("div");
    box.className = className;
    box.style.left = `${(100 * x0) / w}%`;
    box.style.top = `${(100 * y0) / h}%`;
    box.style.width = `${(100 * (x1 - x0)) / w}%`;
    box.style.height = `${(100 * (y1 - y0)) / h}%`;
    if (label !== null) {
      const tag = document.createElement("span");
      tag.textContent = label;
      box.append(tag);
    }
    boxes.append(box);
  }

  function drawBoxes(digits) {
    clearBoxes();
    for (const d of digits) place(d.box, "box", String(d.digit));
  }

  // ---- the page template -------------------------------------------------------------------

  templateFile.addEventListener("change", async () => {
    const file = templateFile.files && templateFile.files[0];
    templateFile.value = "";
    if (!file) return;
    templateBox.value = await file.text();
    if (upload || strokes.length) submit(); else showIdle();
  });

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
