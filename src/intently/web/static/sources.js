// Upload progress for the sources pages' file forms (form[data-upload]), no inline script:
// while the file travels, a <progress> shows the bytes sent; once it has arrived and the
// server imports it, the form polls data-progress-url every second for the run's counts.
(function () {
  "use strict";

  function parts(form) {
    return {
      bar: form.querySelector("progress"),
      status: form.querySelector("[data-upload-status]"),
      live: form.querySelector("[data-import-progress]")
    };
  }

  function stopPolling(form) {
    if (form._importTimer) { window.clearInterval(form._importTimer); form._importTimer = null; }
  }

  // A poll answered after the import finished must not bring back "importing…".
  document.addEventListener("htmx:beforeSwap", function (ev) {
    var target = ev.detail.target;
    if (!target || !target.matches || !target.matches("[data-import-progress]")) return;
    var form = target.closest("form[data-upload]");
    if (form && !form._importTimer) ev.detail.shouldSwap = false;
  });

  document.addEventListener("htmx:beforeSend", function (ev) {
    var form = ev.detail.elt;
    if (!form || !form.matches || !form.matches("form[data-upload]")) return;
    var p = parts(form);
    var xhr = ev.detail.xhr;
    stopPolling(form);
    if (p.bar) { p.bar.hidden = false; p.bar.max = 100; p.bar.value = 0; }
    if (p.status) p.status.textContent = "Uploading…";
    if (p.live) p.live.textContent = "";
    xhr.upload.addEventListener("progress", function (e) {
      if (!e.lengthComputable || !p.bar) return;
      p.bar.max = e.total;
      p.bar.value = e.loaded;
      if (p.status) p.status.textContent = "Uploading… " + Math.floor((100 * e.loaded) / e.total) + "%";
    });
    xhr.upload.addEventListener("load", function () {
      if (p.bar) p.bar.removeAttribute("value");  // indeterminate while the server imports
      if (p.status) p.status.textContent = "Uploaded; importing…";
      var url = form.dataset.progressUrl;
      if (!url || !p.live || !window.htmx) return;
      form._importTimer = window.setInterval(function () {
        window.htmx.ajax("GET", url, { target: p.live, swap: "innerHTML" });
      }, 1000);
    });
  });

  document.addEventListener("htmx:afterRequest", function (ev) {
    var form = ev.detail.elt;
    if (!form || !form.matches || !form.matches("form[data-upload]")) return;
    var p = parts(form);
    stopPolling(form);
    if (p.bar) p.bar.hidden = true;
    if (p.status) p.status.textContent = "";
    if (p.live) p.live.textContent = "";
  });
})();
