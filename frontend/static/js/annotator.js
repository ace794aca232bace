/* perceptlab annotator: landing -> consent -> instructions -> practice (feedback) -> trials -> completion.
 *
 * Data safety (docs/design-notes.md, "Annotator data safety and timing"): every answer goes into
 * localStorage as the trial ends, with an idempotency key stored before the first attempt; answers are
 * POSTed in batches (at most page.flush_ms after the oldest unsent one, at once at the HIT's end, on a
 * reload and when the page is hidden) and retried with exponential backoff, so a reload re-sends what was
 * unsent and resumes at the first trial the server does not hold.
 * The completion code / redirect comes from the server only after it holds every trial.
 * Timing: response times use performance.now(); JND flashes are scheduled with requestAnimationFrame
 * against the measured refresh rate, and the measured on-screen duration of each phase is sent along.
 * Images for the next PREFETCH trials are loaded and decoded before they may be shown.
 * Preview mode (page.preview, the researcher's "try it as an annotator" page, dashboard study-try): the HIT
 * comes from page.preview.hit (owner-only, stored nowhere) and nothing is sent or kept: no start, answer,
 * heartbeat or submit request, no localStorage; the end shows a preview completion screen.
 */
(() => {
  "use strict";
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const $ = (id) => document.getElementById(id);
  const PREFETCH = 5;
  const HEARTBEAT_MS = 60000;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const preview = page.preview || null;

  // ---- crowd identity ---------------------------------------------------------------------------------
  // PROLIFIC_PID / workerId arrive in the address; keep them for this tab only (sessionStorage, so a reload
  // still resumes) and take them out of the address bar at once: not in the history, bookmarks, screenshots
  // or anything the address is copied into.
  const paramsKey = `perceptlab:params:${page.study}`;
  let p = page.params;
  if (preview) {
    p = {}; // the researcher's try-out: no crowd identity, nothing read from or kept in the tab
  } else if (Object.values(p).some((v) => v)) {
    try { sessionStorage.setItem(paramsKey, JSON.stringify(p)); } catch (e) { /* private mode: this load only */ }
    if (window.history && history.replaceState) history.replaceState(history.state, "", window.location.pathname + window.location.hash);
  } else {
    try { p = JSON.parse(sessionStorage.getItem(paramsKey)) || p; } catch (e) { /* keep the empty params */ }
  }
  let platform = "anonymous";
  let identity = "anon";
  if (p.PROLIFIC_PID) {
    platform = "prolific";
    identity = `prolific:${p.PROLIFIC_PID}:${p.SESSION_ID}`;
  } else if (p.assignmentId || p.workerId) {
    platform = "mturk";
    identity = `mturk:${p.workerId}:${p.assignmentId}`;
  }
  const mturkPreview = platform === "mturk" && (!p.assignmentId || p.assignmentId === "ASSIGNMENT_ID_NOT_AVAILABLE");
  const prefix = `perceptlab:${page.study}:${identity}:`;
  const memory = new Map(); // preview: nothing outlives the page
  const store = preview ? {
    get(key) { return memory.has(key) ? memory.get(key) : null; },
    set(key, value) { memory.set(key, value); },
    del(key) { memory.delete(key); },
  } : {
    get(key) {
      try { return JSON.parse(localStorage.getItem(prefix + key)); } catch (e) { return null; }
    },
    set(key, value) { try { localStorage.setItem(prefix + key, JSON.stringify(value)); } catch (e) { /* private mode */ } },
    del(key) { try { localStorage.removeItem(prefix + key); } catch (e) { /* ignore */ } },
  };

  // ---- screens ----------------------------------------------------------------------------------------
  function show(name) {
    for (const s of document.querySelectorAll(".screen")) s.hidden = s.id !== `screen-${name}`;
    const heading = document.querySelector(`#screen-${name} h1, #screen-${name} h2`);
    if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
    document.body.dataset.screen = name;
  }
  const say = (msg) => { $("status").textContent = msg || ""; };
  function fail(msg) { $("error-message").textContent = msg; show("error"); }

  // ---- HTTP with retries ------------------------------------------------------------------------------
  async function api(method, path, body, retries = 8, keepalive = false) {
    let delay = 400;
    for (let attempt = 0; ; attempt++) {
      let resp = null;
      try {
        resp = await fetch(page.api + path, {
          method,
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: body === undefined ? undefined : JSON.stringify(body),
          credentials: "same-origin",
          cache: "no-store",
          keepalive,
        });
      } catch (e) { resp = null; } // network error: retry
      if (resp && resp.status < 500 && resp.status !== 429) {
        const data = await resp.json().catch(() => ({}));
        if (attempt > 0) say("");
        return { status: resp.status, data };
      }
      if (attempt >= retries) throw new Error(resp ? `the server answered ${resp.status}` : "the network is unreachable");
      say(`Connection problem, retrying (${attempt + 1})… Your answers are kept.`);
      await sleep(delay + Math.random() * delay * 0.5);
      delay = Math.min(delay * 2, 15000);
    }
  }

  // ---- display profile --------------------------------------------------------------------------------
  const display = {
    viewport: [window.innerWidth, window.innerHeight],
    screen: [window.screen.width, window.screen.height],
    device_pixel_ratio: window.devicePixelRatio,
    patch_css_px: page.patch_px,
    user_agent: navigator.userAgent.slice(0, 200),
    refresh_hz: null,
  };
  function measureRefresh(frames = 40) {
    return new Promise((resolve) => {
      const stamps = [];
      const tick = (ts) => {
        stamps.push(ts);
        if (stamps.length <= frames) { requestAnimationFrame(tick); return; }
        const d = stamps.slice(1).map((t, i) => t - stamps[i]).sort((a, b) => a - b);
        const median = d[Math.floor(d.length / 2)] || 16.67;
        resolve(Math.round(1000 / median));
      };
      requestAnimationFrame(tick);
    });
  }

  // ---- image preloading -------------------------------------------------------------------------------
  const images = new Map();
  function load(url) {
    if (!images.has(url)) {
      images.set(url, (async () => {
        let delay = 300;
        for (let attempt = 0; attempt < 5; attempt++) {
          const img = new Image();
          img.src = url;
          try {
            await img.decode();
            if (img.naturalWidth > 0) return img;
          } catch (e) { /* retry */ }
          await sleep(delay);
          delay *= 2;
        }
        images.delete(url);
        throw new Error(`could not load an image (${url})`);
      })());
    }
    return images.get(url);
  }
  const urlsOf = (t) => Object.values(t.images);
  function prefetch(from) {
    for (const t of trials.slice(from, from + PREFETCH)) urlsOf(t).forEach((u) => load(u).catch(() => {}));
  }

  // ---- the outbox: answers persisted at once, sent in idempotent batches ---------------------------------
  // The oldest unsent answer waits at most page.flush_ms for others to join it (longer only while a send is
  // in flight), so that one request carries several: the server's work per request costs more than storing
  // an answer. The HIT's end, a reload and a page being hidden send at once; unsent answers survive a reload
  // in localStorage. An answer the server can never take (400: not this HIT's, out of range) is dropped;
  // one the HIT can no longer take (it expired, was returned) stops the HIT with the server's reason.
  const BATCH_MAX = 20;
  const FLUSH_MS = Number.isFinite(page.flush_ms) ? page.flush_ms : 2000;
  let outbox = [];
  const queuedAt = new Map(); // trial -> when its answer was given (this page load only)
  let sending = null;
  let timer = null;
  function kick(leaving = false) { // send now; the promise of the send in flight (null: nothing to send)
    clearTimeout(timer);
    timer = null;
    if (outbox.length && !sending) {
      // after a refusal nothing is rescheduled: the HIT's end (drain) tries once more and shows the reason
      sending = flush(leaving).then(() => { sending = null; schedule(); }, (err) => { sending = null; throw err; });
    }
    return sending;
  }
  const kickQuietly = (leaving = false) => { const p = kick(leaving); if (p) p.catch(() => {}); };
  function schedule() {
    if (sending || timer || !outbox.length) return;
    // the oldest unsent answer waits at most FLUSH_MS in all (an answer kept from before a reload: none)
    const waited = performance.now() - (queuedAt.get(outbox[0].trial) ?? -Infinity);
    if (outbox.length >= BATCH_MAX || waited >= FLUSH_MS) kickQuietly();
    else timer = setTimeout(kickQuietly, FLUSH_MS - waited);
  }
  function enqueue(payload) {
    if (preview) return; // preview: the answer is shown nowhere and sent nowhere
    outbox.push(payload);
    queuedAt.set(payload.trial, performance.now());
    store.set("outbox", outbox);
    schedule();
  }
  async function flush(leaving) {
    const batch = outbox.slice(0, BATCH_MAX);
    // leaving: the page is being hidden (maybe closed); keepalive lets the request outlive it
    const { status, data } = await api("POST", `assignments/${A.token}/judgments/batch/`, { answers: batch }, leaving ? 0 : 30, leaving);
    if (status !== 200) throw new Error(data.message || `the answers were refused (${status})`);
    const done = new Set();
    let refusal = null;
    for (const r of data.results || []) {
      if (r.stored || (r.status === 409 && r.extra && r.extra.code === "answered")) done.add(r.trial);
      else if (r.status === 400) { done.add(r.trial); console.warn("an answer the server can never take was dropped:", r.message); }
      else refusal = refusal || r; // the HIT takes no more answers (expired, returned, ...)
    }
    const answered = new Set((data.results || []).map((r) => r.trial));
    outbox = outbox.filter((o) => !done.has(o.trial));
    store.set("outbox", outbox);
    done.forEach((trial) => queuedAt.delete(trial));
    if (refusal) throw new Error(refusal.message || `an answer was refused (${refusal.status})`);
    if (batch.some((o) => !answered.has(o.trial))) throw new Error("the server did not take every answer; please retry");
  }
  async function drain() {
    while (outbox.length || sending) await (kick() || sending);
  }
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "hidden") kickQuietly(true); });

  // ---- assignment state -------------------------------------------------------------------------------
  let A = null;
  let trials = [];
  let heartbeat = null;

  function adopt(assignment) {
    A = assignment;
    trials = assignment.trials;
    store.set("token", A.token);
    const ids = new Set(trials.map((t) => t.id));
    const stale = outbox.filter((o) => !ids.has(o.trial)); // answers of an earlier HIT, which is over
    if (stale.length) { outbox = outbox.filter((o) => ids.has(o.trial)); store.set("outbox", outbox); }
    const pendingIds = new Set(outbox.map((o) => o.trial));
    for (const t of trials) if (pendingIds.has(t.id)) t.answered = true; // sent before the reload
    if (!heartbeat && !preview) {
      heartbeat = setInterval(() => { if (A && A.status === "started") api("POST", `assignments/${A.token}/heartbeat/`, undefined, 2).catch(() => {}); }, HEARTBEAT_MS);
    }
  }

  async function startPreview() {
    const resp = await fetch(preview.hit, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
    const data = await resp.json().catch(() => ({}));
    if (resp.status !== 200) throw new Error(data.message || `could not load the preview (${resp.status})`);
    adopt(data);
  }

  async function startAssignment() {
    if (preview) { await startPreview(); return; }
    const body = { platform, consent: true };
    if (platform === "prolific") Object.assign(body, { worker_id: p.PROLIFIC_PID, study_id: p.STUDY_ID, session_id: p.SESSION_ID });
    if (platform === "mturk") Object.assign(body, { worker_id: p.workerId, assignment_id: p.assignmentId, hit_id: p.hitId, turk_submit_to: p.turkSubmitTo });
    if (platform === "anonymous" && store.get("worker")) body.worker_id = store.get("worker");
    const { status, data } = await api("POST", `studies/${page.study}/assignments/`, body);
    if (status !== 200 && status !== 201) throw new Error(data.message || `could not start (${status})`);
    if (data.worker_id) store.set("worker", data.worker_id);
    adopt(data);
  }

  // A new HIT's first lease is short (it holds items for nobody who never answers): after a long read of the
  // instructions it may have gone, and the page simply starts again (same worker, same platform session).
  async function ensureLive() {
    if (preview) return;
    if (trials.some((t) => t.answered)) return;
    const { status } = await api("POST", `assignments/${A.token}/heartbeat/`, undefined, 2);
    if (status === 410) {
      store.del("token");
      await startAssignment();
      prefetch(0);
    }
  }

  // ---- an example on the instructions screen (a practice item, whose answer the annotator may know) ---------
  function showExample() {
    const ex = trials.find((t) => t.practice && t.answer);
    if (!ex) return;
    for (const [slot, url] of Object.entries(ex.images)) {
      const img = document.getElementById(`ex-${slot}`);
      if (img) img.src = url;
    }
    $("ex-caption").textContent = page.kind === "2afc"
      ? `Example: the ${ex.answer} patch is more similar to the reference (middle), so the answer is "${ex.answer}".`
      : `Example: shown one after the other, these two patches are ${ex.answer}.`;
    $("example").hidden = false;
  }

  // ---- trials -----------------------------------------------------------------------------------------
  const uuid = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const frames = (n = 2) => new Promise((resolve) => {
    const step = (ts) => (--n <= 0 ? resolve(ts) : requestAnimationFrame(step));
    requestAnimationFrame(step);
  });
  let answerHandler = null;
  document.addEventListener("keydown", (ev) => {
    if (!answerHandler || ev.repeat || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const map = page.kind === "2afc" ? { ArrowLeft: "left", ArrowRight: "right" } : { s: "same", S: "same", d: "different", D: "different" };
    if (map[ev.key]) { ev.preventDefault(); answerHandler(map[ev.key]); }
  });
  const buttons = page.kind === "2afc"
    ? { left: $("choice-left"), right: $("choice-right") }
    : { same: $("choice-same"), different: $("choice-different") };
  for (const [response, btn] of Object.entries(buttons)) btn.addEventListener("click", () => answerHandler && answerHandler(response));
  const waitForAnswer = () => new Promise((resolve) => { answerHandler = (r) => { answerHandler = null; resolve(r); }; });

  async function present2afc(t) {
    const [left, ref, right] = await Promise.all([load(t.images.left), load(t.images.ref), load(t.images.right)]);
    $("img-left").src = left.src;
    $("img-ref").src = ref.src;
    $("img-right").src = right.src;
    document.body.dataset.trial = t.id;
    const shown = await frames(2); // painted
    document.body.dataset.ready = t.id;
    const response = await waitForAnswer();
    return { response, shown, answered: performance.now(), durations: {} };
  }

  async function presentJnd(t) {
    const [first, second] = await Promise.all([load(t.images.first), load(t.images.second)]);
    const a = $("img-first");
    const b = $("img-second");
    a.src = first.src;
    b.src = second.src;
    a.style.visibility = "hidden";
    b.style.visibility = "hidden";
    buttons.same.disabled = true;
    buttons.different.disabled = true;
    document.body.dataset.trial = t.id;
    const fixation = $("fixation");
    fixation.hidden = false;
    await frames(2);
    const T = page.timing;
    const frame = 1000 / (display.refresh_hz || 60);
    const phases = [["ref_ms", a, T.ref_ms], ["gap_ms", null, T.gap_ms], ["distorted_ms", b, T.distorted_ms]];
    const onsets = await new Promise((resolve) => {
      const on = [];
      let i = -1;
      const step = (ts) => {
        if (i < 0 || ts - on[i] >= phases[i][2] - frame / 2) {
          i += 1;
          on.push(ts);
          a.style.visibility = i === 0 ? "visible" : "hidden";
          b.style.visibility = i === 2 ? "visible" : "hidden";
          fixation.hidden = i === 0 || i === 2;
          if (i === phases.length) { resolve(on); return; }
        }
        requestAnimationFrame(step);
      };
      requestAnimationFrame(step);
    });
    const durations = {};
    phases.forEach(([name], i) => { durations[name] = Math.round((onsets[i + 1] - onsets[i]) * 10) / 10; });
    buttons.same.disabled = false;
    buttons.different.disabled = false;
    const shown = onsets[phases.length];
    document.body.dataset.ready = t.id;
    const response = await waitForAnswer();
    return { response, shown, answered: performance.now(), durations };
  }

  async function runTrial(t, n, total) {
    $("trial-label").textContent = t.practice ? `Practice ${n} of ${total}` : `Trial ${n} of ${total}`;
    $("trial-progress").max = total;
    $("trial-progress").value = n - 1;
    $("feedback").textContent = "";
    const r = await (page.kind === "2afc" ? present2afc(t) : presentJnd(t));
    const key = store.get(`key:${t.id}`) || uuid();
    store.set(`key:${t.id}`, key);
    enqueue({
      trial: t.id,
      response: r.response,
      rt_ms: Math.round((r.answered - r.shown) * 10) / 10,
      idempotency_key: key,
      client_shown_at: performance.timeOrigin + r.shown,
      client_answered_at: performance.timeOrigin + r.answered,
      durations: r.durations,
      display,
    });
    t.answered = true;
    if (t.practice && t.answer) {
      const right = r.response === t.answer;
      $("feedback").textContent = right ? "Correct!" : (page.kind === "2afc" ? `Not quite: the ${t.answer} patch was more similar.` : `Not quite: they were ${t.answer}.`);
      $("feedback").className = `feedback ${right ? "good" : "bad"}`;
      await sleep(900);
    }
  }

  async function runAll() {
    const practice = trials.filter((t) => t.practice);
    const main = trials.filter((t) => !t.practice);
    const todoPractice = practice.filter((t) => !t.answered);
    show("trial");
    for (const t of todoPractice) {
      prefetch(trials.indexOf(t));
      await runTrial(t, practice.indexOf(t) + 1, practice.length);
    }
    if (todoPractice.length && main.some((t) => !t.answered)) {
      prefetch(trials.indexOf(main[0]));
      show("practice-done");
      await new Promise((resolve) => $("btn-trials").addEventListener("click", resolve, { once: true }));
      show("trial");
    }
    for (const t of main) {
      if (t.answered) continue;
      prefetch(trials.indexOf(t));
      await runTrial(t, main.indexOf(t) + 1, main.length);
    }
    await finish();
  }

  async function finish() {
    if (preview) { complete(A.completion); return; }
    say("Saving your answers…");
    await drain();
    const { status, data } = await api("POST", `assignments/${A.token}/submit/`);
    if (status !== 200) throw new Error(data.message || `could not finish (${status})`);
    A = data;
    say("");
    complete(data.completion);
  }

  function complete(completion) {
    clearInterval(heartbeat);
    show("done");
    document.body.dataset.done = "1";
    if (completion && completion.preview) {
      $("done-title").textContent = "Preview finished";
      $("done-message").textContent = "Nothing was recorded: no answer, worker or HIT was stored. A participant would now be told their answers are saved"
        + (completion.prolific_redirect_url ? "; from Prolific they would be sent back to Prolific with the code below; from MTurk the HIT would be submitted." : ".");
      if (completion.code) {
        $("completion-code").textContent = completion.code;
        $("done-code").hidden = false;
      }
      return;
    }
    if (completion && completion.code) {
      $("completion-code").textContent = completion.code;
      $("done-code").hidden = false;
    }
    if (completion && completion.redirect_url) {
      $("done-message").textContent = "All your answers are saved. Taking you back to Prolific…";
      setTimeout(() => { window.location.href = completion.redirect_url; }, 1500);
    } else if (completion && completion.mturk_form) {
      const form = $("mturk-form");
      form.action = completion.mturk_form.action;
      for (const [name, value] of Object.entries(completion.mturk_form.fields)) {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.appendChild(input);
      }
      $("done-message").textContent = "All your answers are saved. Submitting the HIT to Mechanical Turk…";
      form.submit();
    }
  }

  // ---- flow -------------------------------------------------------------------------------------------
  async function resume() {
    const token = store.get("token");
    if (!token) return false;
    const { status, data } = await api("GET", `assignments/${token}/`);
    if (status !== 200) { store.del("token"); return false; }
    adopt(data);
    if (data.status === "submitted") { complete(data.completion); return true; }
    if (data.status !== "started") { store.del("token"); return false; }
    if (!trials.some((t) => t.answered)) { showExample(); show("instructions"); return true; }
    say("Welcome back: continuing where you stopped.");
    kickQuietly(); // answers left unsent before the reload
    await runAll();
    return true;
  }

  async function main() {
    outbox = store.get("outbox") || [];
    show("landing");
    measureRefresh().then((hz) => { display.refresh_hz = hz; });
    if (mturkPreview) {
      $("preview-note").hidden = false;
      $("btn-begin").disabled = true;
      return;
    }
    if (preview) document.body.dataset.preview = "1";
    if (!preview && page.status !== "active" && !store.get("token")) {
      say("This study is not taking new participants at the moment.");
      $("btn-begin").disabled = true;
      return;
    }
    $("btn-start").addEventListener("click", () => ensureLive().then(runAll).catch((err) => fail(err.message)));
    $("btn-begin").addEventListener("click", () => show("consent"));
    $("btn-decline").addEventListener("click", () => show("declined"));
    $("consent-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (!$("consent-check").checked) return;
      $("btn-consent").disabled = true;
      try {
        await startAssignment();
        prefetch(0);
        showExample();
        show("instructions");
      } catch (err) {
        fail(err.message);
      }
    });
    if (!preview) await resume();
  }

  main().catch((err) => fail(err.message));
})();
