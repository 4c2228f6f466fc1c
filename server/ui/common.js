// What both viewer pages share: calls to the runs API (with the key the user gave), DOM helpers, formats.
// Plain script, no build step: it defines one global, `FK`.
"use strict";

const FK = (() => {
  const KEY = "fusionkit.key";
  const API = new URL("../v1/", document.baseURI); // the router that serves /ui also serves /v1
  const TERMINAL = new Set(["completed", "failed", "cancelled", "expired"]);

  /** Build an element: el("td", {class: "x", title: "y"}, "text", child, ...). Text is always text, never HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  class Unauthorized extends Error {}

  /** GET a path of /v1 as JSON, with the key as a Bearer token; a 401 asks for the key. */
  async function api(path) {
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = `Bearer ${key}`;
    const response = await fetch(new URL(path.replace(/^\//, ""), API), { headers, cache: "no-store" });
    if (response.status === 401) {
      askForKey(key ? "That key was refused; enter the router's API key." : "This router needs its API key.");
      throw new Unauthorized("unauthorized");
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try {
        message = (await response.json()).error.message || message;
      } catch (_) {}
      throw new Error(message);
    }
    return response.json();
  }

  /** The key bar in the header: shown when a key is needed, the key kept in this tab's sessionStorage. */
  function askForKey(why) {
    const bar = document.getElementById("keybar");
    if (!bar) return;
    bar.hidden = false;
    document.getElementById("keywhy").textContent = why;
    document.getElementById("key").focus();
  }

  /** The key bar and the error line, under the page's header (hidden until needed). */
  function installKeyBar(onKey) {
    const form = el(
      "form",
      { id: "keyform" },
      el("span", { id: "keywhy" }),
      " ",
      el("input", { id: "key", type: "password", autocomplete: "off", placeholder: "API key (kept in this tab only)" }),
      " ",
      el("button", { type: "submit" }, "Use key"),
      " ",
      el("button", { type: "button", id: "forget" }, "Forget"),
    );
    document.querySelector("header").after(el("div", { id: "keybar", hidden: true }, form), el("div", { id: "error", hidden: true }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const value = document.getElementById("key").value.trim();
      if (value) sessionStorage.setItem(KEY, value);
      else sessionStorage.removeItem(KEY);
      document.getElementById("keybar").hidden = true;
      onKey();
    });
    document.getElementById("forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      askForKey("Key forgotten for this tab.");
    });
  }

  function ms(value) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    if (value >= 10000) return `${(value / 1000).toFixed(1)} s`;
    if (value >= 1000) return `${(value / 1000).toFixed(2)} s`;
    return `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
  }

  function cost(amount, currency) {
    if (amount === null || amount === undefined) return "–";
    if (amount === 0) return `0 ${currency || ""}`.trim();
    return `${amount < 0.01 ? amount.toPrecision(2) : amount.toFixed(4)} ${currency || ""}`.trim();
  }

  function when(iso) {
    if (!iso) return "–";
    const date = new Date(iso);
    return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
  }

  function tokens(usage) {
    if (!usage) return "–";
    return `${usage.prompt_tokens ?? 0} in / ${usage.completion_tokens ?? 0} out`;
  }

  function badge(state) {
    return el("span", { class: `badge state-${state}`, dataset: { state } }, state);
  }

  function showError(message) {
    const box = document.getElementById("error");
    box.hidden = !message;
    box.textContent = message || "";
  }

  return { api, el, svg, ms, cost, when, tokens, badge, showError, installKeyBar, Unauthorized, TERMINAL };
})();
