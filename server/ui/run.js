// One run: its facts, a timeline drawn from its events, every candidate side by side, the judge's analysis,
// the final answer against the candidate it drew most from, tool calls and pauses, errors and drops.
// A run still executing is followed through its events (GET .../events?after=N) until it ends.
"use strict";

(() => {
  const { api, el, svg, ms, cost, when, tokens, badge, showError, TERMINAL } = FK;
  const EVENTS_EVERY_MS = 700;
  const runId = new URLSearchParams(location.search).get("id") || "";
  const run = { events: [], cursor: 0, inspection: null, state: null };

  // -- reading the run ------------------------------------------------------------------------------

  async function readEvents() {
    let fresh = false;
    for (;;) {
      const page = await api(`fusion/runs/${encodeURIComponent(runId)}/events?after=${run.cursor}`);
      if (page.events.length) {
        run.events.push(...page.events);
        run.cursor = page.next_event_cursor;
        fresh = true;
      }
      if (!page.has_more) return fresh;
    }
  }

  async function refresh() {
    try {
      const fresh = await readEvents();
      if (fresh || !run.inspection) {
        run.inspection = await api(`fusion/runs/${encodeURIComponent(runId)}/inspect`);
      }
      run.state = run.inspection.state;
      showError(null);
      render();
    } catch (error) {
      if (error instanceof FK.Unauthorized) return; // the key bar calls refresh again once a key is given
      showError(`Could not read run ${runId}: ${error.message}`);
    }
    // A live run is followed until it ends; an ended one is read once (its record no longer changes).
    if (!run.state || !TERMINAL.has(run.state)) setTimeout(refresh, EVENTS_EVERY_MS);
  }

  /** Our own event (type and payload) inside each API event. */
  function ours(event) {
    const fk = event.payload.fusionkit || {};
    return { seq: event.event_seq, at: Date.parse(event.created_at), type: fk.type, payload: fk.payload || {} };
  }

  // -- what the events add up to ------------------------------------------------------------------

  function model(events) {
    const t0 = events.length ? events[0].at : Date.now();
    const calls = new Map();
    const states = [];
    let members = [];
    for (const event of events) {
      const p = event.payload;
      const at = event.at - t0;
      if (event.type === "model_call.started") {
        calls.set(p.call, { ...p, start: at, end: null, outcome: "running" });
      } else if (event.type === "model_call.completed" || event.type === "model_call.failed") {
        const call = calls.get(p.call) || { ...p, start: at - (p.latency_ms || 0) };
        Object.assign(call, p, { end: call.start + (p.latency_ms ?? at - call.start), outcome: event.type.split(".")[1] });
        calls.set(p.call, call);
      } else if (event.type === "run.state" || event.type === "run.expired") {
        states.push({ state: p.state || "expired", at });
        if (p.members) members = p.members;
      }
    }
    const ended = states.find((s) => TERMINAL.has(s.state));
    const now = ended ? ended.at : Date.now() - t0;
    return { t0, calls: [...calls.values()].sort((a, b) => a.call - b.call), states, members, now };
  }

  function pricingByEndpoint(inspection) {
    const prices = {};
    for (const meta of inspection.provider_metadata || []) if (meta.endpoint_id) prices[meta.endpoint_id] = meta.pricing;
    return prices;
  }

  function callCost(call, prices) {
    const price = prices[call.endpoint_id];
    if (!price || price.input_per_1m_tokens == null || price.output_per_1m_tokens == null || !call.usage) return null;
    return (call.usage.prompt_tokens * price.input_per_1m_tokens + call.usage.completion_tokens * price.output_per_1m_tokens) / 1e6;
  }

  // -- drawing -------------------------------------------------------------------------------------

  function render() {
    const inspection = run.inspection;
    const fk = inspection.fusionkit || {};
    const events = run.events.map(ours);
    const timeline = model(events);
    document.title = `FusionKit run ${runId}`;
    document.getElementById("run-id").textContent = runId;
    document.getElementById("run-state").replaceChildren(badge(inspection.state));
    document.getElementById("updated").textContent = TERMINAL.has(inspection.state)
      ? `ended ${when(fk.updated_at)}`
      : `live, updated ${new Date().toLocaleTimeString()}`;
    renderFacts(inspection, fk, timeline);
    renderTimeline(timeline);
    renderCandidates(inspection, fk, timeline);
    renderJudge(fk);
    renderFinal(inspection, fk);
    renderTools(events, fk);
    renderProblems(inspection, fk, timeline);
  }

  function renderFacts(inspection, fk, timeline) {
    const costEstimate = fk.cost_estimate;
    const decision = fk.decision;
    const fact = (name, ...value) => el("div", {}, el("span", {}, name), ...value);
    document.getElementById("facts").replaceChildren(
      fact("Front door", fk.door || "native runs API"),
      fact("Mode", fk.route && fk.route !== fk.mode ? `${fk.mode} → ${fk.route}` : fk.mode || "–"),
      fact("Route reasons", (fk.route_reasons || []).join("; ") || "–"),
      fact("Created", when(fk.created_at)),
      fact("Latency", ms((fk.latency_ms || {}).total ?? (TERMINAL.has(inspection.state) ? null : timeline.now))),
      fact("Tokens", tokens(fk.usage)),
      fact("Cost estimate", costEstimate ? cost(costEstimate.amount, costEstimate.currency) + (costEstimate.complete ? "" : " (partial)") : "–"),
      fact("Decision", decision ? `${decision.type} (${decision.reason})` : "–"),
      fact("Model calls", String(timeline.calls.length)),
      fact("Trace", el("span", { class: "mono" }, inspection.trace_id)),
    );
  }

  function niceStep(span) {
    const raw = span / 8;
    const power = 10 ** Math.floor(Math.log10(raw || 1));
    return [1, 2, 5, 10].map((m) => m * power).find((step) => step >= raw) || power * 10;
  }

  function renderTimeline(t) {
    const box = document.getElementById("timeline");
    const width = Math.max(760, box.clientWidth - 16);
    const label = 200;
    const right = 80;
    const rowH = 26;
    const top = 8;
    const plot = width - label - right;
    const end = Math.max(t.now, ...t.calls.map((c) => c.end ?? t.now), 1);
    const x = (at) => label + (Math.max(0, at) / end) * plot;
    const rows = 1 + t.calls.length;
    const height = top + rows * rowH + 26;
    const step = niceStep(end);
    const parts = [];
    for (let tick = 0; tick <= end + 1e-9; tick += step) {
      parts.push(svg("line", { class: "grid", x1: x(tick), x2: x(tick), y1: top, y2: top + rows * rowH }));
      parts.push(svg("text", { x: x(tick), y: top + rows * rowH + 16, "text-anchor": "middle", class: "axis" }, ms(tick)));
    }
    // The run: its whole span, a mark at each change of state.
    const y0 = top + 4;
    parts.push(svg("text", { x: 0, y: y0 + 13 }, "the run (router)"));
    parts.push(svg("rect", { class: "run-bar", x: x(0), y: y0, width: Math.max(2, x(t.now) - x(0)), height: rowH - 8, fill: "#c8ccd2", rx: 2 }));
    for (const change of t.states) {
      const failed = TERMINAL.has(change.state) && change.state !== "completed";
      const mark = svg("line", { class: "state-mark", x1: x(change.at), x2: x(change.at), y1: y0, y2: y0 + rowH - 8, stroke: failed ? "var(--bad)" : "#444", "stroke-width": 1.5 });
      mark.append(svg("title", {}, `${change.state} at ${ms(change.at)}`));
      parts.push(mark);
    }
    parts.push(svg("text", { x: x(t.now) + 6, y: y0 + 13 }, ms(t.now)));
    t.calls.forEach((call, index) => {
      const y = top + (index + 1) * rowH + 4;
      const stop = call.end ?? t.now;
      const who = `${call.role}: ${call.endpoint_id}${call.candidate_id && call.role === "panel" ? ` (${call.candidate_id})` : ""}`;
      const colour = call.outcome === "failed" ? "var(--bad)" : `var(--${call.role}, var(--panel))`;
      const bar = svg("rect", {
        class: `call-bar ${call.outcome}`,
        "data-call": call.call,
        "data-role": call.role,
        x: x(call.start),
        y,
        width: Math.max(2, x(stop) - x(call.start)),
        height: rowH - 8,
        fill: colour,
        "fill-opacity": call.outcome === "running" ? 0.45 : 0.9,
        stroke: call.outcome === "running" ? colour : "none",
        "stroke-dasharray": call.outcome === "running" ? "4 3" : null,
        rx: 2,
      });
      bar.append(svg("title", {}, `${who}: ${call.outcome}, ${ms(stop - call.start)}${call.reason ? ` (${call.reason})` : ""}`));
      parts.push(svg("text", { x: 0, y: y + 13 }, who), bar);
      const note = call.outcome === "running" ? "running…" : call.outcome === "failed" ? `failed (${call.status})` : ms(call.latency_ms);
      parts.push(svg("text", { x: x(stop) + 6, y: y + 13 }, note));
    });
    box.replaceChildren(svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "phase timeline" }, parts));
  }

  function renderCandidates(inspection, fk, timeline) {
    const prices = pricingByEndpoint(inspection);
    const calls = fk.model_calls && fk.model_calls.length ? fk.model_calls : timeline.calls;
    const details = [...(fk.candidates || [])];
    const known = new Set(details.map((d) => d.candidate_id));
    for (const member of timeline.members) {
      if (!known.has(member.candidate_id)) details.push({ ...member, status: "waiting" });
    }
    const analysis = (fk.judge || {}).analysis || {};
    const selected = (fk.decision || {}).selected_candidate_id || analysis.best_candidate_id;
    document.getElementById("candidate-count").textContent = `(${details.length})`;
    document.getElementById("candidates").replaceChildren(
      ...details.map((d) => {
        const own = calls.filter((c) => c.candidate_id === d.candidate_id && (c.role === "panel" || c.role === "single"));
        const usage = own.reduce(
          (sum, c) => ({ prompt_tokens: sum.prompt_tokens + ((c.usage || {}).prompt_tokens || 0), completion_tokens: sum.completion_tokens + ((c.usage || {}).completion_tokens || 0) }),
          { prompt_tokens: 0, completion_tokens: 0 },
        );
        const costs = own.map((c) => callCost(c, prices)).filter((c) => c !== null);
        const currency = (prices[d.endpoint_id] || {}).currency;
        const status = d.status === "ok" ? (d.candidate_id === selected ? "best" : "") : d.status;
        return el(
          "article",
          { class: `card candidate ${d.status === "dropped" ? "dropped" : ""} ${d.candidate_id === selected ? "best" : ""}`, dataset: { candidate: d.candidate_id } },
          el("h3", {}, d.candidate_id, el("span", { class: "muted" }, `${d.endpoint_id}${d.model ? ` · ${d.model}` : ""}`), status ? badge(status) : null),
          el(
            "div",
            { class: "meta" },
            `latency ${ms(d.latency_ms)} · ${own.length ? tokens(usage) : "no tokens yet"} · cost ${costs.length ? cost(costs.reduce((a, b) => a + b, 0), currency) : "not priced"}`,
            d.rank ? ` · judge's rank ${d.rank}` : "",
            d.finish_reason ? ` · ${d.finish_reason}` : "",
          ),
          d.status === "dropped" ? el("p", { class: "reason" }, `Dropped: ${d.reason}`) : null,
          d.status === "waiting" ? el("p", { class: "muted" }, "Waiting for its answer…") : null,
          (d.tool_calls || []).length
            ? el("ul", { class: "plain" }, d.tool_calls.map((c) => el("li", { class: "mono" }, `${c.function.name}(${c.function.arguments})`)))
            : null,
          d.text ? el("pre", {}, d.text) : null,
        );
      }),
    );
  }

  function renderJudge(fk) {
    const judge = fk.judge;
    const section = document.getElementById("judge-section");
    section.hidden = !judge;
    if (!judge) return;
    document.getElementById("judge-model").textContent = `(${judge.judge_model_id})`;
    const analysis = judge.analysis;
    const box = document.getElementById("analysis");
    if (!analysis) {
      box.replaceChildren(
        el("div", { class: "card" }, el("p", { class: "reason" }, judge.parse_error || "no analysis"), judge.raw ? el("pre", {}, judge.raw) : null),
      );
      return;
    }
    const list = (title, items) => el("div", { class: "card" }, el("strong", {}, title), items && items.length ? el("ul", {}, items.map((i) => el("li", {}, i))) : el("p", { class: "muted" }, "none"));
    box.replaceChildren(
      list("Consensus", analysis.consensus),
      list("Contradictions", analysis.contradictions),
      list("Unique insights", analysis.unique_insights),
      list("Coverage gaps", analysis.coverage_gaps),
      list("Likely errors", analysis.likely_errors),
      el(
        "div",
        { class: "card" },
        el("strong", {}, "Ranking"),
        el("p", {}, (analysis.ranking || []).join(" > ") || "–", analysis.best_candidate_id ? ` (best: ${analysis.best_candidate_id})` : ""),
        analysis.rationale ? el("p", { class: "muted" }, analysis.rationale) : null,
      ),
    );
  }

  function renderFinal(inspection, fk) {
    const message = fk.final_message || {};
    const text = inspection.final_output ?? message.content ?? null;
    const section = document.getElementById("final-section");
    section.hidden = text === null && !(message.tool_calls || []).length;
    if (section.hidden) return;
    document.getElementById("final").textContent = text ?? (message.tool_calls || []).map((c) => `${c.function.name}(${c.function.arguments})`).join("\n");
    const answered = (fk.candidates || []).filter((c) => c.status === "ok" && c.text);
    if (!text || !answered.length) {
      document.getElementById("drew-from").textContent = "";
      document.getElementById("diff").textContent = "";
      return;
    }
    let best = null;
    for (const candidate of answered) {
      const compared = FKDiff.compare(candidate.text, text);
      if (!best || compared.similarity > best.compared.similarity) best = { candidate, compared };
    }
    const share = Math.round(best.compared.sharedOfFinal * 100);
    document.getElementById("drew-from").textContent =
      `Drew most from ${best.candidate.candidate_id} (${best.candidate.endpoint_id}): ${share}% of the answer's words are in it. ` +
      "Right: the answer against that candidate, its words struck through, the answer's own highlighted.";
    document.getElementById("diff").replaceChildren(...FKDiff.render(best.compared.ops));
  }

  function renderTools(events, fk) {
    const items = [];
    for (const event of events) {
      const p = event.payload;
      if (event.type === "tool.plan") {
        for (const call of p.calls || []) {
          items.push(el("li", {}, `${p.candidate_id} (${p.endpoint_id}) asked for `, el("code", {}, `${call.name}(${call.arguments ?? ""})`), ` · ${call.side_effects}`, call.deduplicated ? ` · shared with ${call.shared_with}` : "", ` · ${call.tool_call_id}`));
        }
      } else if (event.type === "tool.result") {
        items.push(el("li", {}, `result for ${p.tool_call_id} (${p.name}, ${p.candidate_id}): ${p.output_chars} characters`));
      } else if (event.type === "run.state" && p.state === "requires_action") {
        items.push(el("li", {}, badge("requires_action"), ` paused for ${(p.pending || []).length || "its"} tool result(s)`));
      } else if (event.type === "run.state" && p.reason === "tool results received") {
        items.push(el("li", {}, badge("generating"), " resumed with the tool results"));
      }
    }
    for (const call of (fk.final_message || {}).tool_calls || []) {
      items.push(el("li", {}, "the answer calls ", el("code", {}, `${call.function.name}(${call.function.arguments})`)));
    }
    document.getElementById("tools-section").hidden = !items.length;
    document.getElementById("tools").replaceChildren(...items);
  }

  function renderProblems(inspection, fk, timeline) {
    const items = [];
    const error = inspection.terminal_error;
    if (error && error.error_code !== "cancelled") items.push(el("li", { class: "reason" }, `The run ${inspection.state}: ${error.error_code}${error.message ? ` — ${error.message}` : ""}`));
    if (inspection.state === "cancelled") items.push(el("li", {}, `The run was cancelled (${inspection.terminal_error ? inspection.terminal_error.terminal_reason : "cancelled"})`));
    for (const member of fk.candidates || []) {
      if (member.status === "dropped") items.push(el("li", {}, `Dropped ${member.candidate_id} (${member.endpoint_id}): `, el("span", { class: "reason" }, member.reason)));
    }
    for (const call of timeline.calls) {
      if (call.outcome === "failed") items.push(el("li", {}, `Call ${call.call}, ${call.role} on ${call.endpoint_id}, failed with ${call.status} after ${ms(call.latency_ms)}: `, el("span", { class: "reason" }, call.reason || "")));
    }
    const judge = fk.judge;
    if (judge && judge.parse_error) items.push(el("li", {}, "The judge: ", el("span", { class: "reason" }, judge.parse_error)));
    for (const event of run.events.map(ours)) {
      if (event.type === "synthesis.empty") items.push(el("li", {}, `The synthesis gave nothing (${event.payload.reason || "empty"}): fell back to ${event.payload.fallback_candidate_id}`));
      if (event.type === "budget.exceeded") items.push(el("li", {}, `Budget ${event.payload.budget} exceeded (${event.payload.cost} > ${event.payload.limit})`));
    }
    document.getElementById("problems-section").hidden = !items.length;
    document.getElementById("problems").replaceChildren(...items);
  }

  FK.installKeyBar(refresh);
  if (!/^run_[A-Za-z0-9]+$/.test(runId)) {
    showError("No run given: open a run from the list.");
    return;
  }
  window.addEventListener("resize", () => run.inspection && render());
  refresh();
})();
