// labelops labeling page: vanilla JS, talks only to the /v1 API of the server that served it:
// a campaign's worker (<body data-mode="campaign">), or a pool's router (data-mode="pool"),
// whose tasks each name their campaign.
"use strict";

(() => {
  const TOKEN_KEY = "labelops.token";
  const TASK_KEY = "labelops.task"; // the task on screen, so a reload resumes its lease
  const $ = (id) => document.getElementById(id);

  const state = {
    pool: document.body.dataset.mode === "pool",
    documents: new Map(), // campaign ("" for a worker's own) -> Promise of GET /v1/campaign's body
    current: null, // {task, idempotencyKey}
    view: null, // the task type's renderer
    busy: false,
  };

  // --- HTTP ---------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, problem, retryAfter) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
      this.retryAfter = retryAfter;
    }
  }

  async function api(method, path, body, extraHeaders = {}) {
    const headers = {
      Accept: "application/json, application/problem+json",
      Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}`,
      ...extraHeaders,
    };
    const init = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ApiError(0, {
        title: "The worker did not answer",
        detail: "Check your connection, then try again.",
      });
    }
    if (response.status === 204) return { status: 204, body: null };
    const isJson = (response.headers.get("Content-Type") || "").includes("json");
    const data = isJson ? await response.json() : await response.text();
    if (!response.ok) {
      const problem = isJson ? data : { title: response.statusText, detail: String(data) };
      throw new ApiError(response.status, problem, response.headers.get("Retry-After"));
    }
    return { status: response.status, body: data };
  }

  const taskPath = (id, action) => `/v1/tasks/${encodeURIComponent(id)}/${action}`;

  function randomKey() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // --- small DOM helpers ----------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  const kbd = (key) => el("kbd", { text: key });

  function textBlock(title, text) {
    return el("div", { class: "prompt" }, el("h3", { text: title }), el("div", { class: "text", text }));
  }

  function toast(message) {
    const node = $("toast");
    node.textContent = message;
    node.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (node.hidden = true), 1800);
  }

  function showError(err) {
    const problem = err instanceof ApiError ? err.problem : { title: "Something went wrong", detail: String(err) };
    $("error-title").textContent = problem.title || "Error";
    let detail = problem.detail || "";
    if (err.retryAfter) detail += ` You can try again in ${humanSeconds(Number(err.retryAfter))}.`;
    $("error-detail").textContent = detail;
    const list = $("error-list");
    list.replaceChildren(
      ...(problem.errors || []).map((e) => el("li", {}, el("code", { text: e.pointer || "(body)" }), ` ${e.message}`)),
    );
    $("error").hidden = false;
  }

  const clearError = () => ($("error").hidden = true);

  function humanSeconds(seconds) {
    if (!Number.isFinite(seconds)) return "a moment";
    if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${Math.round(seconds / 3600)} h`;
  }

  // --- task views, one per task type --------------------------------------------------------
  // A view has: node, value() (the label value, or null while incomplete), onKey(event)
  // (true when it handled the key) and shortcuts ([key, what] pairs for the legend).

  function optionButton(heading, key, body, onclick, role = "button") {
    const attrs = { type: "button", class: "option", onclick };
    if (role === "checkbox") {
      attrs.role = "checkbox";
      attrs["aria-checked"] = "false";
    } else {
      attrs["aria-pressed"] = "false";
    }
    return el(
      "button",
      attrs,
      el("span", { class: "option-head" }, el("h3", { text: heading }), key ? kbd(key) : null),
      body,
    );
  }

  function setPressed(buttons, chosen) {
    for (const [value, button] of buttons) button.setAttribute("aria-pressed", String(value === chosen));
  }

  function pairwiseView(payload, onChange) {
    let preferred = null;
    const [a, b] = payload.responses;
    const buttons = new Map();
    const choose = (id) => {
      preferred = id;
      setPressed(buttons, id);
      onChange();
    };
    buttons.set(a.id, optionButton("Response A", "1", el("div", { class: "text", text: a.text }), () => choose(a.id)));
    buttons.set(b.id, optionButton("Response B", "2", el("div", { class: "text", text: b.text }), () => choose(b.id)));
    const tie = el("button", { type: "button", class: "option tie", "aria-pressed": "false", onclick: () => choose("tie") },
      "They are equally good ", kbd("T"));
    buttons.set("tie", tie);
    const rationale = el("textarea", { id: "rationale", rows: "2", maxlength: "10000", placeholder: "What makes it better? A sentence helps reviewers." });
    const node = el(
      "div",
      { class: "task-content" },
      textBlock("Prompt", payload.prompt),
      el("div", { class: "pair" }, buttons.get(a.id), buttons.get(b.id)),
      el("div", { class: "row" }, tie),
      el("div", { class: "field" }, el("label", { for: "rationale", text: "Rationale (optional)" }), rationale),
    );
    return {
      node,
      value: () => {
        if (preferred === null) return null;
        const text = rationale.value.trim();
        return text ? { preferred, rationale: text } : { preferred };
      },
      onKey: (event) => {
        const pick = { 1: a.id, 2: b.id, t: "tie", T: "tie" }[event.key];
        if (pick === undefined) return false;
        choose(pick);
        return true;
      },
      shortcuts: [["1", "Response A is better"], ["2", "Response B is better"], ["T", "Tie"]],
    };
  }

  function ratingView(payload, task, onChange) {
    const { min, max } = task.scale;
    let score = null;
    const direct = min >= 0 && max <= 9; // each score is its own digit key
    const keyFor = (s) => (direct ? String(s) : s - min < 10 ? String((s - min + 1) % 10) : null);
    const buttons = new Map();
    const choose = (s) => {
      score = s;
      setPressed(buttons, s);
      onChange();
    };
    for (let s = min; s <= max; s++) {
      const key = keyFor(s);
      buttons.set(s, el("button", { type: "button", class: "option", "aria-pressed": "false", onclick: () => choose(s) },
        String(s), key && key !== String(s) ? el("span", {}, " ", kbd(key)) : null));
    }
    const node = el(
      "div",
      { class: "task-content" },
      payload.prompt ? textBlock("Prompt", payload.prompt) : null,
      textBlock("Text to rate", payload.text),
      el("div", { class: "field" },
        el("label", { text: `Your score (${min} = lowest, ${max} = highest)` }),
        el("div", { class: "row scale" }, ...buttons.values())),
    );
    return {
      node,
      value: () => (score === null ? null : { score }),
      onKey: (event) => {
        for (const s of buttons.keys()) {
          if (keyFor(s) === event.key) {
            choose(s);
            return true;
          }
        }
        return false;
      },
      shortcuts: [[direct ? `${min}–${max}` : "1–0", "Score"]],
    };
  }

  function classificationView(payload, task, onChange) {
    const multiple = Boolean(task.multiple);
    const selected = new Set();
    const buttons = task.choices.map((choice, i) => {
      const key = i < 9 ? String(i + 1) : null;
      return [choice, optionButton(choice, key, null, () => toggle(choice), multiple ? "checkbox" : "button")];
    });
    const attr = multiple ? "aria-checked" : "aria-pressed";
    function toggle(choice) {
      if (multiple) {
        if (selected.has(choice)) selected.delete(choice);
        else selected.add(choice);
      } else {
        selected.clear();
        selected.add(choice);
      }
      for (const [c, button] of buttons) button.setAttribute(attr, String(selected.has(c)));
      onChange();
    }
    const node = el(
      "div",
      { class: "task-content" },
      textBlock("Text", payload.text),
      el("div", { class: "field" },
        el("label", { text: multiple ? "Pick every choice that applies" : "Pick one choice" }),
        el("div", { class: "choices" }, ...buttons.map(([, b]) => b))),
    );
    return {
      node,
      value: () => {
        if (selected.size === 0) return null;
        // Keep the campaign's order, whatever order the labeler clicked in.
        const picked = task.choices.filter((c) => selected.has(c));
        return multiple ? { choices: picked } : { choice: picked[0] };
      },
      onKey: (event) => {
        const index = Number(event.key) - 1;
        if (!/^[1-9]$/.test(event.key) || index >= task.choices.length) return false;
        toggle(task.choices[index]);
        return true;
      },
      shortcuts: [[`1–${Math.min(9, task.choices.length)}`, multiple ? "Toggle a choice" : "Pick a choice"]],
    };
  }

  function rankingView(payload, onChange) {
    const order = payload.responses.map((r) => r.id);
    const textOf = new Map(payload.responses.map((r) => [r.id, r.text]));
    let selected = 0;
    const list = el("ol", { class: "ranking", "aria-label": "Responses, best first" });
    function move(index, delta) {
      const target = index + delta;
      if (target < 0 || target >= order.length) return;
      [order[index], order[target]] = [order[target], order[index]];
      selected = target;
      draw();
      onChange();
    }
    function draw() {
      list.replaceChildren(
        ...order.map((id, i) =>
          el(
            "li",
            { class: i === selected ? "selected" : "", "data-response-id": id, onclick: () => { selected = i; draw(); } },
            el("span", { class: "rank", text: String(i + 1) }),
            el("div", { class: "text", text: textOf.get(id) }),
            el("div", { class: "move" },
              el("button", { type: "button", "aria-label": "Move up", onclick: (e) => { e.stopPropagation(); move(i, -1); } }, "▲"),
              el("button", { type: "button", "aria-label": "Move down", onclick: (e) => { e.stopPropagation(); move(i, 1); } }, "▼")),
          ),
        ),
      );
    }
    draw();
    const node = el("div", { class: "task-content" }, textBlock("Prompt", payload.prompt),
      el("p", { class: "muted", text: "Order the responses from best (top) to worst." }), list);
    return {
      node,
      value: () => ({ order: [...order] }),
      onKey: (event) => {
        if (/^[1-9]$/.test(event.key) && Number(event.key) <= order.length) {
          selected = Number(event.key) - 1;
          draw();
          return true;
        }
        if (event.key === "ArrowUp" || event.key === "k") {
          move(selected, -1);
          return true;
        }
        if (event.key === "ArrowDown" || event.key === "j") {
          move(selected, 1);
          return true;
        }
        return false;
      },
      shortcuts: [["1–9", "Select a response"], ["↑ / K", "Move it up"], ["↓ / J", "Move it down"]],
    };
  }

  function freeTextView(payload, task, onChange) {
    const min = task.minLength ?? 0;
    const max = task.maxLength ?? null;
    const area = el("textarea", { id: "answer", rows: "7", placeholder: "Type your answer…" });
    const counter = el("div", { class: "counter", "aria-live": "polite" });
    const length = () => [...area.value].length; // code points, as the label schema counts
    const fits = () => length() >= Math.max(1, min) && (max === null || length() <= max);
    function count() {
      const limits = [min ? `min ${min}` : null, max !== null ? `max ${max}` : null].filter(Boolean).join(", ");
      counter.textContent = `${length()} characters${limits ? ` (${limits})` : ""}`;
      counter.classList.toggle("bad", length() > 0 && !fits());
      onChange();
    }
    area.addEventListener("input", count);
    count();
    const node = el("div", { class: "task-content" }, textBlock("Prompt", payload.prompt),
      el("div", { class: "field" }, el("label", { for: "answer", text: "Your answer" }), area, counter));
    setTimeout(() => area.focus(), 0);
    return {
      node,
      value: () => (fits() ? { text: area.value } : null),
      onKey: () => false,
      shortcuts: [["Ctrl+Enter", "Submit from the text box"], ["Esc", "Leave the text box"]],
    };
  }

  // --- campaign documents -------------------------------------------------------------------
  // What a task's campaign asks for (task type, instructions, choices, limits). Direct to a
  // worker every task is its one campaign's (GET /v1/campaign); through a pool's router each
  // task names its "campaign", whose document the router forwards (GET /v1/campaigns/{name}).
  // Each is fetched once per page load; a failed fetch is tried again with the next task.

  function campaignOf(task) {
    const name = task.campaign ?? "";
    let loading = state.documents.get(name);
    if (loading === undefined) {
      const path = name ? `/v1/campaigns/${encodeURIComponent(name)}` : "/v1/campaign";
      loading = api("GET", path).then((response) => response.body);
      loading.catch(() => state.documents.delete(name));
      state.documents.set(name, loading);
    }
    return loading;
  }

  function viewFor(task, campaign) {
    const campaignTask = campaign.task;
    const payload = task.payload;
    // Views report changes while they are built, before state.view points at them.
    const changed = () => {
      if (state.view) $("submit").disabled = state.busy || state.view.value() === null;
    };
    switch (campaignTask.type) {
      case "pairwise":
        return pairwiseView(payload, changed);
      case "rating":
        return ratingView(payload, campaignTask, changed);
      case "classification":
        return classificationView(payload, campaignTask, changed);
      case "ranking":
        return rankingView(payload, changed);
      case "free-text":
        return freeTextView(payload, campaignTask, changed);
      default:
        throw new Error(`this page cannot show ${campaignTask.type} tasks`);
    }
  }

  // --- screens ----------------------------------------------------------------------------

  function showOnly(id) {
    for (const section of ["task", "empty", "loading"]) $(section).hidden = section !== id;
  }

  function renderShortcuts(extra) {
    const rows = [...extra, ["Enter", "Submit"], ["S", "Skip this task"]];
    $("shortcut-list").replaceChildren(...rows.map(([key, what]) => el("li", {}, el("span", { text: what }), kbd(key))));
  }

  async function showTask(current) {
    // Saved first: a reload resumes this lease even if its campaign could not be loaded.
    sessionStorage.setItem(TASK_KEY, JSON.stringify(current));
    const { task } = current;
    let campaign;
    try {
      campaign = await campaignOf(task);
    } catch (err) {
      $("empty-detail").textContent = "This task's campaign could not be loaded. Check again to retry.";
      showOnly("empty");
      renderShortcuts([]);
      throw err;
    }
    state.current = current;
    state.view = viewFor(task, campaign);
    $("instructions").textContent = campaign.task.instructions;
    $("task-type").textContent = campaign.task.type;
    $("task-type").hidden = false;
    // Through a router: the task's campaign, and its item id without the campaign prefix.
    const routed = typeof task.campaign === "string";
    $("task-campaign").hidden = !routed;
    $("task-campaign-name").textContent = routed ? task.campaign : "";
    const prefix = routed ? `${task.campaign}:` : "";
    $("item-id").textContent = routed && task.id.startsWith(prefix) ? task.id.slice(prefix.length) : task.id;
    const until = new Date(task.leaseExpiresAt);
    $("lease").textContent = `Reserved for you until ${until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
    $("task-body").replaceChildren(state.view.node);
    $("submit").disabled = state.view.value() === null;
    renderShortcuts(state.view.shortcuts);
    showOnly("task");
  }

  function forgetTask() {
    state.current = null;
    state.view = null;
    sessionStorage.removeItem(TASK_KEY);
  }

  async function refreshStats() {
    if (state.pool) return refreshPoolStats();
    try {
      const [me, progress] = await Promise.all([api("GET", "/v1/me"), api("GET", "/v1/progress")]);
      const m = me.body;
      $("labeler").textContent = m.labeler;
      $("me-today").textContent = `${m.labelsToday} / ${m.dailyQuota}`;
      $("me-left").textContent = String(m.dailyLeft);
      $("me-total").textContent = String(m.labelsTotal);
      $("me-leases").textContent = `${m.activeLeases} / ${m.maxLeases}`;
      $("me-meter").style.width = `${Math.min(100, (100 * m.labelsToday) / Math.max(1, m.dailyQuota))}%`;
      const p = progress.body;
      $("campaign-percent").textContent = `${p.percent}%`;
      $("campaign-counts").textContent =
        `${p.labels} of ${p.labelsTarget} labels · ${p.itemsCompleted} of ${p.itemsTarget} items done`;
      $("campaign-meter").style.width = `${p.percent}%`;
    } catch (err) {
      handleFailure(err);
    }
  }

  const percent = (share) => (typeof share === "number" ? `${Math.round(100 * share)}%` : "–");

  // Through a router: what it knows of you (tasks held per campaign, up to the pool's
  // capacity) and of the pool (each campaign's share of the labels against its nominal one).
  async function refreshPoolStats() {
    try {
      const [me, pool] = await Promise.all([api("GET", "/v1/me"), api("GET", "/v1/pool")]);
      const m = me.body;
      $("labeler").textContent = m.labeler;
      $("me-leases").textContent = `${m.activeLeases} / ${m.maxLeases}`;
      $("me-blocked").textContent = m.blockedIn.length ? m.blockedIn.join(", ") : "none";
      $("me-meter").style.width = `${Math.min(100, (100 * m.activeLeases) / Math.max(1, m.maxLeases))}%`;
      $("me-campaigns").replaceChildren(
        ...Object.entries(m.leases)
          .filter(([, held]) => held > 0)
          .map(([name, held]) => el("li", {}, el("span", { text: name }), el("span", { class: "count", text: `${held} held` }))),
      );
      const p = pool.body;
      const active = p.activeLabelers === 1 ? "1 labeler" : `${p.activeLabelers} labelers`;
      $("pool-labelers").textContent = `${p.namespace}/${p.pool} · ${active} active`;
      $("pool-campaigns").replaceChildren(
        ...p.campaigns.map((c) => {
          const fill = el("div", { class: "meter-fill" });
          fill.style.width = `${typeof c.actualShare === "number" ? Math.round(100 * c.actualShare) : 0}%`;
          return el(
            "li",
            { "data-campaign": c.name },
            el("span", { class: "campaign-title", text: c.name }),
            el("span", { class: c.hasWork ? "count" : "count idle", text: c.hasWork ? "has work" : "no work now" }),
            el("span", { class: "share muted", text: `share ${percent(c.actualShare)} of ${percent(c.nominalShare)} · ${c.served} served` }),
            el("div", { class: "meter", "aria-hidden": "true" }, fill),
          );
        }),
      );
    } catch (err) {
      handleFailure(err);
    }
  }

  async function nextTask() {
    forgetTask();
    showOnly("loading");
    try {
      const claimed = await api("POST", "/v1/tasks/claim");
      if (claimed.status === 204) {
        $("empty-detail").textContent =
          "Every available item has enough labels, or you have labeled all of them. New items may arrive later.";
        showOnly("empty");
        renderShortcuts([]);
      } else {
        await showTask({ task: claimed.body, idempotencyKey: randomKey() });
      }
    } catch (err) {
      showOnly("empty");
      if (err instanceof ApiError && err.status === 429) {
        $("empty-detail").textContent = "You cannot take another task yet; see the message above.";
      }
      handleFailure(err);
    }
    // After every claim: the new lease counts in "Tasks held", a label in "Today".
    if (sessionStorage.getItem(TOKEN_KEY)) await refreshStats();
  }

  function handleFailure(err) {
    if (err instanceof ApiError && err.status === 401) {
      signOut("Your token was not accepted. Sign in again.");
      return;
    }
    showError(err);
  }

  async function submit() {
    if (!state.current || state.busy) return;
    const value = state.view.value();
    if (value === null) return;
    state.busy = true;
    $("submit").disabled = true;
    const { task, idempotencyKey } = state.current;
    try {
      // ?next=true: the receipt carries the next task, leased with the label (one request).
      const result = await api("POST", `${taskPath(task.id, "labels")}?next=true`, { value }, { "Idempotency-Key": idempotencyKey });
      clearError();
      toast(result.body.replayed ? "Already saved" : "Label saved");
      if (result.body.next) {
        forgetTask();
        await showTask({ task: result.body.next, idempotencyKey: randomKey() });
        await refreshStats();
      } else {
        // Nothing was leased: a claim says why (none left, or a quota with its wait).
        await nextTask();
      }
    } catch (err) {
      handleFailure(err);
      // The item is gone for this labeler (full, labeled, lease lost): move on.
      if (err instanceof ApiError && (err.status === 409 || err.status === 404)) await nextTask();
    } finally {
      state.busy = false;
      if (state.view) $("submit").disabled = state.view.value() === null;
    }
  }

  async function skip() {
    if (!state.current || state.busy) return;
    state.busy = true;
    const { task } = state.current;
    try {
      await api("POST", taskPath(task.id, "release"));
      clearError();
      toast("Skipped");
    } catch (err) {
      // A lease that already ended or an item that vanished needs no release.
      if (!(err instanceof ApiError && (err.status === 409 || err.status === 404))) handleFailure(err);
    } finally {
      state.busy = false;
    }
    await nextTask();
  }

  // --- sign in / out ----------------------------------------------------------------------

  // The task a reload left on screen, while its lease lasts.
  function savedTask() {
    const saved = JSON.parse(sessionStorage.getItem(TASK_KEY) || "null");
    return saved && new Date(saved.task.leaseExpiresAt) > new Date() ? saved : null;
  }

  async function enter() {
    try {
      if (state.pool) {
        // A router has no one campaign: a token it refuses is a 401 here, before any task.
        await api("GET", "/v1/me");
      } else {
        $("instructions").textContent = (await campaignOf({})).task.instructions;
      }
      $("signin").hidden = true;
      $("workspace").hidden = false;
      $("session").hidden = false;
      const saved = savedTask();
      if (saved) {
        await showTask(saved);
        await refreshStats();
      } else {
        await nextTask();
      }
    } catch (err) {
      handleFailure(err);
    }
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    forgetTask();
    $("workspace").hidden = true;
    $("session").hidden = true;
    $("signin").hidden = false;
    const box = $("signin-error");
    box.textContent = message || "";
    box.hidden = !message;
    $("token").value = "";
    $("token").focus();
  }

  // --- wiring ------------------------------------------------------------------------------

  document.addEventListener("keydown", (event) => {
    if ($("workspace").hidden || !state.current || !state.view) return;
    const typing = event.target instanceof HTMLTextAreaElement || event.target instanceof HTMLInputElement;
    if (typing) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submit();
      } else if (event.key === "Escape") {
        event.target.blur();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    // Enter on a focused action button (reached with Tab) is that button's own click.
    const ownAction = event.target instanceof Element && event.target.closest("#skip, #sign-out, .move button");
    if (event.key === "Enter" && !ownAction) {
      event.preventDefault();
      submit();
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      skip();
    } else if (state.view.onKey(event)) {
      event.preventDefault();
    }
  });

  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("signin-error").hidden = true;
    enter();
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("submit").addEventListener("click", submit);
  $("skip").addEventListener("click", skip);
  $("check-again").addEventListener("click", async () => {
    clearError();
    // A task whose campaign could not be loaded is still leased: show it rather than claim.
    const saved = savedTask();
    if (!saved) return nextTask();
    try {
      await showTask(saved);
    } catch (err) {
      handleFailure(err);
    }
  });

  if (sessionStorage.getItem(TOKEN_KEY)) enter();
  else $("token").focus();
})();
