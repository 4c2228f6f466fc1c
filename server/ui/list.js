// The run list: the newest runs (GET /v1/fusion/runs), filtered here in the page, newest first.
// A run still executing is followed through its events (GET .../events?after=N): its row changes state
// as the run does, without reloading; new runs appear with the next refresh of the list.
"use strict";

(() => {
  const { api, el, ms, cost, when, tokens, badge, showError, TERMINAL } = FK;
  const LIST_EVERY_MS = 3000;
  const EVENTS_EVERY_MS = 1000;
  let runs = []; // summaries, newest first, as the API gave them (updated in place by events)
  const cursors = new Map(); // run_id -> event cursor followed so far
  const filters = ["f-state", "f-mode", "f-model", "f-since", "f-limit"].map((id) => document.getElementById(id));

  function shown() {
    const [state, mode, model, since] = filters.map((f) => f.value);
    const oldest = since ? Date.now() - Number(since) * 1000 : null;
    return runs.filter((run) => {
      const fk = run.fusionkit || {};
      if (state === "live" ? TERMINAL.has(run.state) : state && run.state !== state) return false;
      if (mode && fk.mode !== mode && fk.route !== mode) return false;
      if (model && !(fk.models || []).includes(model)) return false;
      if (oldest !== null && Date.parse(fk.created_at) < oldest) return false;
      return true;
    });
  }

  function row(run) {
    const fk = run.fusionkit || {};
    const live = !TERMINAL.has(run.state);
    const decision = fk.decision ? `${fk.decision.type === "synthesize" ? "synthesized" : "selected"} (${fk.decision.reason})` : "";
    const mode = fk.route && fk.route !== fk.mode ? `${fk.mode} → ${fk.route}` : fk.mode || "";
    return el(
      "tr",
      { class: live ? "live" : null, dataset: { runId: run.run_id, state: run.state } },
      el("td", { class: "muted" }, when(fk.created_at)),
      el("td", { class: "mono" }, el("a", { href: `run.html?id=${encodeURIComponent(run.run_id)}` }, run.run_id)),
      el("td", {}, mode),
      el("td", {}, badge(run.state)),
      el("td", {}, (fk.models || []).join(", ")),
      el("td", { class: "muted" }, decision || (run.terminal_error ? run.terminal_error.error_code : "")),
      el("td", { class: "num" }, ms((fk.latency_ms || {}).total)),
      el("td", { class: "num" }, tokens(fk.usage)),
      el("td", { class: "num" }, fk.cost_estimate ? cost(fk.cost_estimate.amount, fk.cost_estimate.currency) : "–"),
    );
  }

  function render() {
    const models = new Set(runs.flatMap((run) => (run.fusionkit || {}).models || []));
    const picker = document.getElementById("f-model");
    const chosen = picker.value;
    for (const model of [...models].sort()) {
      if (![...picker.options].some((o) => o.value === model)) picker.append(el("option", { value: model }, model));
    }
    picker.value = chosen;
    const visible = shown();
    document.querySelector("#runs tbody").replaceChildren(...visible.map(row));
    const live = runs.filter((run) => !TERMINAL.has(run.state)).length;
    document.getElementById("count").textContent =
      `${visible.length} of the ${runs.length} newest runs` + (live ? `; ${live} still running, followed live` : "");
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function refreshList() {
    try {
      const page = await api(`fusion/runs?limit=${document.getElementById("f-limit").value}`);
      runs = page.data;
      for (const run of runs) if (!cursors.has(run.run_id)) cursors.set(run.run_id, run.event_cursor);
      showError(null);
      render();
    } catch (error) {
      if (!(error instanceof FK.Unauthorized)) showError(`Could not list runs: ${error.message}`);
    }
  }

  async function followLiveRuns() {
    const live = runs.filter((run) => !TERMINAL.has(run.state));
    let ended = false;
    for (const run of live) {
      try {
        const page = await api(`fusion/runs/${encodeURIComponent(run.run_id)}/events?after=${cursors.get(run.run_id) || 0}`);
        if (!page.events.length) continue;
        const last = page.events[page.events.length - 1];
        cursors.set(run.run_id, page.next_event_cursor);
        run.state = last.state;
        run.event_cursor = last.event_seq;
        ended = ended || TERMINAL.has(last.state);
      } catch (error) {
        if (error instanceof FK.Unauthorized) return;
      }
    }
    if (live.length) render();
    if (ended) await refreshList(); // its latency, tokens, cost and decision are in its summary now
  }

  async function loop(step, every) {
    await step();
    setTimeout(() => loop(step, every), every);
  }

  FK.installKeyBar(refreshList);
  for (const filter of filters) filter.addEventListener("change", filter.id === "f-limit" ? refreshList : render);
  refreshList().then(() => {
    setTimeout(() => loop(refreshList, LIST_EVERY_MS), LIST_EVERY_MS);
    loop(followLiveRuns, EVENTS_EVERY_MS);
  });
})();
