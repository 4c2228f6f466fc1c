// Word-level comparison of two texts: how much the final answer shares with a candidate, and the diff.
"use strict";

const FKDiff = (() => {
  const MAX_CELLS = 4_000_000; // past this the table would be too big: compare lines instead of words

  function tokenize(text, byLine) {
    return byLine ? text.split(/(\n)/) : text.split(/(\s+)/).filter((t) => t !== "");
  }

  /** The longest common subsequence table of two token lists (lengths, back to front). */
  function lcsTable(a, b) {
    const width = b.length + 1;
    const table = new Uint32Array((a.length + 1) * width);
    for (let i = a.length - 1; i >= 0; i--) {
      for (let j = b.length - 1; j >= 0; j--) {
        table[i * width + j] =
          a[i] === b[j] ? table[(i + 1) * width + j + 1] + 1 : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
      }
    }
    return table;
  }

  function compare(from, to) {
    const byLine = (tokenize(from).length + 1) * (tokenize(to).length + 1) > MAX_CELLS;
    const a = tokenize(from, byLine);
    const b = tokenize(to, byLine);
    const table = lcsTable(a, b);
    const width = b.length + 1;
    const ops = [];
    let i = 0;
    let j = 0;
    while (i < a.length && j < b.length) {
      if (a[i] === b[j]) {
        ops.push(["same", a[i]]);
        i++;
        j++;
      } else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) {
        ops.push(["del", a[i++]]);
      } else {
        ops.push(["ins", b[j++]]);
      }
    }
    while (i < a.length) ops.push(["del", a[i++]]);
    while (j < b.length) ops.push(["ins", b[j++]]);
    const words = (list) => list.filter((t) => t.trim()).length;
    const shared = words(ops.filter(([op]) => op === "same").map(([, t]) => t));
    const total = words(a) + words(b);
    return { ops, similarity: total ? (2 * shared) / total : 1, sharedOfFinal: words(b) ? shared / words(b) : 1 };
  }

  /** The ops as DOM: deleted text struck through, inserted text highlighted. */
  function render(ops) {
    return ops.map(([op, text]) => {
      if (op === "same") return document.createTextNode(text);
      const node = document.createElement(op);
      node.textContent = text;
      return node;
    });
  }

  return { compare, render };
})();
