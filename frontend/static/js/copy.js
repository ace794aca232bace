/* Copy buttons: <button class="copy" data-copy="<id of an input or textarea>" aria-describedby="<status id>">.
 * navigator.clipboard where the page may use it (https or localhost), else select() and execCommand("copy");
 * either way the text ends up selected, and the status next to the button (role=status) says what happened,
 * for screen readers too. */
(() => {
  "use strict";

  function say(button, message) {
    const id = button.getAttribute("aria-describedby");
    const status = id && document.getElementById(id);
    if (!status) return;
    status.textContent = message;
    clearTimeout(status.copyTimer);
    status.copyTimer = setTimeout(() => { status.textContent = ""; }, 4000);
  }

  function fallback(field) {
    field.focus();
    field.select();
    try {
      return document.execCommand("copy");
    } catch (e) {
      return false;
    }
  }

  async function copy(button) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    const text = field.value;
    let ok = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        ok = true;
      } catch (e) {
        ok = false;
      }
    }
    if (!ok) ok = fallback(field);
    else field.select();
    say(button, ok ? "Copied" : "Selected: press Ctrl+C (⌘C) to copy");
    button.dataset.copied = ok ? "1" : "0";
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button.copy");
    if (button) copy(button);
  });
})();
