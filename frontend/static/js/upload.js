/* The zip import page (dashboard study-import): drag and drop onto div#dropzone or the file input, then an
 * XHR upload to the researcher API (POST /api/v1/studies/<id>/import/, session auth + the CSRF header) with
 * progress#upload-progress following the upload's progress events. The API's checks are the only ones: its
 * message (naming the bad file) goes to div#import-errors. After 202 the import job's progress is the study's
 * build panel (div#build), fetched with htmx and polled by it until the page reloads itself. */
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const form = $("import-form");
  if (!form) return;
  const input = $("archive-input");
  const zone = $("dropzone");
  const bar = $("upload-progress");
  const percent = $("upload-percent");
  const errors = $("import-errors");
  const button = $("upload-start");

  function showName() {
    const file = input.files && input.files[0];
    $("archive-name").textContent = file ? `Chosen: ${file.name} (${Math.max(1, Math.round(file.size / 1024))} KiB)` : "";
  }
  input.addEventListener("change", showName);

  zone.addEventListener("keydown", (ev) => {
    if (ev.target !== zone) return;
    if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); input.click(); }
  });
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (ev) => { ev.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "dragend"]) zone.addEventListener(name, () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("dragging");
    const files = ev.dataTransfer && ev.dataTransfer.files;
    if (!files || !files.length) return;
    const chosen = new DataTransfer();
    chosen.items.add(files[0]);
    input.files = chosen.files;
    showName();
  });

  function setProgress(value, text) {
    bar.value = value;
    bar.textContent = `${value} %`;
    percent.textContent = text;
  }

  function problem(xhr) {
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (e) { data = {}; }
    let message = data.message || `the upload was refused (${xhr.status})`;
    const fields = data.extra && data.extra.fields;
    if (fields) {
      message = Object.entries(fields).map(([name, errs]) => `${name}: ${[].concat(errs).join(" ")}`).join("; ");
    }
    return message;
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    errors.textContent = "";
    button.disabled = true;
    setProgress(0, "Uploading…");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action);
    xhr.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) {
        const value = Math.round((100 * e.loaded) / e.total);
        setProgress(value, `Uploading: ${value} %`);
      }
    });
    xhr.addEventListener("load", () => {
      button.disabled = false;
      if (xhr.status === 202) {
        setProgress(100, "Uploaded and checked: the import is queued.");
        form.reset();
        showName();
        if (window.htmx) {
          window.htmx.ajax("GET", form.dataset.buildUrl, { target: "#build", swap: "outerHTML" });
        }
        return;
      }
      setProgress(0, "");
      errors.textContent = problem(xhr);
    });
    xhr.addEventListener("error", () => {
      button.disabled = false;
      setProgress(0, "");
      errors.textContent = "The upload did not reach the server (network error); try again.";
    });
    xhr.send(new FormData(form));
  });
})();
