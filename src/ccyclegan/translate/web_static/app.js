// ccyclegan serve: the page. Vanilla JS, same origin only (the server's CSP allows nothing else).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    photo: null,        // the Blob/File to send
    name: "photo.jpg",
    maxUpload: 10e6,
    controller: null,   // AbortController of the request in flight
    urls: [],           // object URLs of the current result, revoked on the next one
    previewUrl: null,
    shown: false,       // a result is on screen: changing a control re-runs
    stream: null,       // webcam MediaStream
  };

  const mb = (n) => (n / 1e6).toFixed(n < 10e6 ? 1 : 0) + " MB";

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    setStatus("");
  }
  function clearError() { $("error").hidden = true; $("error").textContent = ""; }
  function setStatus(text, busy = false) {
    $("status").textContent = text;
    document.body.classList.toggle("busy", busy);
  }

  fetch("api/info").then((r) => r.json()).then((info) => {
    state.maxUpload = info.max_upload_bytes;
    $("model").textContent = `Model: ${info.model || "?"} (${info.backend}) · photos up to ` +
      `${mb(info.max_upload_bytes)} and ${(info.max_pixels / 1e6).toFixed(0)} megapixels`;
  }).catch(() => { /* the page still works with the defaults */ });

  // ---------------------------------------------------------------- the photo

  function setPhoto(blob, name) {
    clearError();
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.photo = blob;
    state.name = name || "photo.jpg";
    state.previewUrl = URL.createObjectURL(blob);
    $("preview").src = state.previewUrl;
    $("preview-name").textContent = `${state.name} · ${mb(blob.size)}`;
    $("preview-box").hidden = false;
    $("go").disabled = false;
    translate();
  }

  $("file").addEventListener("change", (e) => {
    const f = e.target.files && e.target.files[0];
    if (f) setPhoto(f, f.name);
  });

  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) setPhoto(f, f.name);
  });

  // ---------------------------------------------------------------- the webcam

  function stopCamera() {
    if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
    state.stream = null;
    $("video").srcObject = null;
    $("camera").hidden = true;
  }

  $("webcam").addEventListener("click", async () => {
    clearError();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("The browser offers the webcam only to secure pages: open this page as " +
        "http://localhost:PORT or http://127.0.0.1:PORT on this computer (or over https).");
      return;
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } },
        audio: false,
      });
    } catch (e) {
      showError(`Cannot use the webcam: ${e.message || e.name}.`);
      return;
    }
    $("video").srcObject = state.stream;
    $("camera").hidden = false;
  });

  $("cam-cancel").addEventListener("click", stopCamera);

  $("snap").addEventListener("click", () => {
    const video = $("video");
    if (!video.videoWidth) { showError("The webcam has no picture yet; try again."); return; }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    stopCamera();
    canvas.toBlob((blob) => {
      if (blob) setPhoto(blob, "webcam.jpg");
      else showError("Could not capture the webcam picture.");
    }, "image/jpeg", 0.92);
  });

  // ---------------------------------------------------------------- the controls

  const emotion = () => document.querySelector('input[name="to"]:checked').value;
  const intensity = () => Number($("intensity").value).toFixed(2);

  $("intensity").addEventListener("input", () => { $("intensity-value").value = intensity(); });
  $("intensity").addEventListener("change", () => { if (state.shown) translate(); });
  $("emotions").addEventListener("change", () => { if (state.shown) translate(); });
  $("crop").addEventListener("change", () => { if (state.shown) translate(); });
  $("go").addEventListener("click", () => translate());

  // ---------------------------------------------------------------- the request

  function blobOf(img) {
    const bin = atob(img.data);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Blob([bytes], { type: img.type });
  }
  function urlOf(img) {
    const url = URL.createObjectURL(blobOf(img));
    state.urls.push(url);
    return url;
  }

  async function translate() {
    if (!state.photo) return;
    clearError();
    if (state.photo.size > state.maxUpload) {
      showError(`This file is ${mb(state.photo.size)}; the limit is ${mb(state.maxUpload)} ` +
        "(ccyclegan serve --max-upload-mb).");
      return;
    }
    if (state.controller) state.controller.abort();
    const controller = new AbortController();
    state.controller = controller;
    const form = new FormData();
    form.append("to", emotion());
    form.append("intensity", intensity());
    form.append("detect", $("crop").checked ? "false" : "true");
    form.append("image", state.photo, state.name);
    setStatus("Working…", true);
    $("go").disabled = true;
    let resp, data;
    try {
      resp = await fetch("api/translate", { method: "POST", body: form,
        signal: controller.signal });
      try { data = await resp.json(); } catch (e) { data = null; }
    } catch (e) {
      if (controller.signal.aborted) return;  // a newer request replaced this one
      showError(`Cannot reach the server (${e.message}). Is ccyclegan serve still running?`);
      return;
    } finally {
      if (state.controller === controller) {
        state.controller = null;
        $("go").disabled = false;
        document.body.classList.remove("busy");
      }
    }
    if (controller.signal.aborted) return;
    if (!resp.ok || !data || data.error) {
      showError((data && data.error) || `The server answered ${resp.status} ${resp.statusText}.`);
      return;
    }
    show(data);
  }

  function show(data) {
    state.urls.forEach((u) => URL.revokeObjectURL(u));
    state.urls = [];
    const main = urlOf(data.image);
    $("result-img").src = main;
    $("download").href = main;
    $("download").download = data.filename;
    const n = data.faces.length;
    const what = data.targets.length > 1 ? "every face in all 7 emotions"
      : `${data.targets[0]} at intensity ${Number(data.intensity).toFixed(2)}`;
    $("result-info").textContent = `${data.filename} · ${what} · ${n} face${n === 1 ? "" : "s"}` +
      ` · ${data.seconds.toFixed(2)} s`;
    const faces = $("faces");
    faces.replaceChildren();
    data.faces.forEach((face, i) => {
      const div = document.createElement("div");
      div.className = "face";
      const p = document.createElement("p");
      const [x, y, w, h] = face.box;
      p.textContent = `Face ${i + 1} at x ${x}, y ${y} (${w}×${h})`;
      div.append(p);
      if (face.region) {
        const region = document.createElement("img");
        region.src = urlOf(face.region);
        region.alt = `Face ${i + 1} before and after`;
        region.className = "region";
        div.append(region);
      }
      const crops = document.createElement("img");
      crops.src = urlOf(face.crops);
      crops.alt = `Face ${i + 1} as the model saw it (48×48), then its translation`;
      crops.className = "crops";
      const cols = document.createElement("p");
      cols.className = "cols muted";
      cols.textContent = ["input", ...data.targets].join(" · ");
      div.append(crops, cols);
      faces.append(div);
    });
    $("result").hidden = false;
    state.shown = true;
    setStatus("");
  }
})();
