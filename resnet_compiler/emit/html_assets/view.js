/* resnet-compiler's network page. Reads the JSON in #page-data and draws stages -> blocks -> ops,
   folded; an unfolded group is built the first time it opens, so a page of 1,000 blocks starts
   with a dozen boxes. Coordinates inside a block come from the compiler (a layered layout
   computed in Python); this script places boxes, draws wires, and keeps the DOM contract:
   [data-kind=stage|block|op][data-path], data-count, data-folded + [data-role=toggle],
   [data-role=edge][data-shape], input[data-role=search], [data-role=details], data-diff. */
"use strict";
(function () {
  const PAGE = JSON.parse(document.getElementById("page-data").textContent);
  const details = document.querySelector('[data-role="details"]');
  const views = [];

  // ---- small helpers -------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "true" : String(v));
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
    return e;
  }
  const ESC = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"};
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);
  function num(n) {  // three significant digits: 589.8K -> 590K, 1.5107M -> 1.51M
    const a = Math.abs(n);
    for (const [unit, scale] of [["G", 1e9], ["M", 1e6], ["K", 1e3]]) {
      if (a >= scale) return Number((n / scale).toPrecision(3)) + unit;
    }
    return String(n);
  }
  const grouped = (n) => n.toLocaleString("en-US");
  function pct(part, total) {
    if (!total) return "-";
    const p = 100 * part / total;
    return p === 0 ? "0%" : p < 0.001 ? "<0.001%" : p.toFixed(p < 0.1 ? 3 : 1) + "%";
  }
  function bar(part, total) {
    const b = h("span", {class: "bar", title: pct(part, total) + " of the network's MACs"});
    b.append(h("i", {style: "width:" + Math.min(100, total ? 100 * part / total : 0).toFixed(1) + "%"}));
    return b;
  }
  function window_(n) {  // "3x3 s2 d2 g32" from an op's attributes
    const a = n[5], out = [];
    if (a.kernel !== undefined) out.push(Array.isArray(a.kernel) ? a.kernel.join("x") : a.kernel + "x" + a.kernel);
    if (a.stride !== undefined && a.stride !== 1) out.push("s" + a.stride);
    if (a.dilation !== undefined && a.dilation !== 1) out.push("d" + a.dilation);
    if (a.groups !== undefined && a.groups !== 1) out.push("g" + a.groups);
    if (a.mode !== undefined) out.push(a.mode);
    return out.join(" ");
  }

  // ---- one network ---------------------------------------------------------------------------
  class View {
    constructor(net, root, side) {
      this.net = net; this.root = root; this.side = side;
      this.index = new Map(net.nodes.map((n, i) => [n[0], i]));
      this.blocks = new Map();  // block id -> [section, block number]
      this.stages = new Map();
      net.sections.forEach((s) => {
        if (s.kind !== "stage") return;
        this.stages.set(s.name, s);
        s.blocks.forEach((b, k) => this.blocks.set(b.id, [s, k]));
      });
      this.cost = (first, n) => {
        let p = 0, m = 0;
        for (let i = first; i < first + n; i++) { p += net.nodes[i][3]; m += net.nodes[i][4]; }
        return [p, m];
      };
      this.render();
    }

    shape(i) { return i === undefined ? "-" : this.net.nodes[i][2]; }

    costLine(p, m, each) {
      const net = this.net;
      return "params " + num(p) + " (" + pct(p, net.params) + ") · MACs " + num(m) + " (" +
        pct(m, net.macs) + ")" + (each ? " · " + each : "");
    }

    mark(first, n) {  // a group's diff mark from its ops'
      const seen = new Set();
      for (let i = first; i < first + n; i++) seen.add(this.net.nodes[i][8] || "same");
      if (!this.side) return null;
      return seen.size === 1 ? [...seen][0] : "changed";
    }

    link(from, to, shape) {
      const l = h("div", {class: "link", "data-role": "edge", "data-from": from, "data-to": to,
                          "data-shape": shape});
      l.append(h("span", {text: shape}));
      return l;
    }

    render() {
      const col = h("div", {class: "column"});
      const net = this.net;
      net.sections.forEach((s, k) => {
        const src = s.kind === "stage" ? (s.blocks[0] || {ins: []}).ins[0] : s.ins[0];
        if (k > 0 && src !== undefined) col.append(this.link(net.nodes[src][0], s.kind === "stage" ? s.name : net.nodes[s.first][0], this.shape(src)));
        col.append(s.kind === "stage" ? this.stageGroup(s) : this.opsSection(s));
      });
      this.root.append(col);
    }

    opsSection(s) {
      const box = h("div", {class: "ops"}, h("div", {class: "head", text: s.title}));
      box.append(this.canvas(s, s.first, s.ins, ""));
      return box;
    }

    stageGroup(s) {
      const last = s.blocks[s.blocks.length - 1], first = s.blocks[0];
      const n = last.first + last.n - first.first;
      const [p, m] = this.cost(first.first, n);
      const classes = [...new Set(s.blocks.map((b) => b.cls))].join(", ");
      const g = h("section", {class: "group stage", "data-kind": "stage", "data-path": s.name,
                              "data-folded": "true", "data-diff": this.mark(first.first, n),
                              "data-feature": this.featureAt(last.first + last.n - 1)});
      const head = h("div", {class: "head"},
        h("button", {"data-role": "toggle", "aria-expanded": "false", title: "unfold", text: "+"}),
        h("span", {class: "title", text: s.name}),
        h("span", {class: "sub", text: s.blocks.length + " blocks (" + classes + ")"}),
        h("span", {class: "io", text: this.shape(first.ins[0]) + " → " + this.shape(last.first + last.n - 1)}),
        h("span", {class: "cost", text: this.costLine(p, m)}), bar(m, this.net.macs),
        this.featureTag(last.first + last.n - 1));
      g.append(head, h("div", {class: "body"}));
      g._build = () => this.fillStage(g, s);
      g._info = () => this.stageInfo(s, p, m);
      return g;
    }

    featureAt(i) { return this.net.nodes[i] ? this.net.nodes[i][7] : null; }

    featureTag(i) {  // a group whose output is a feature map (`outputs:`) says so
      const name = this.featureAt(i);
      return name ? h("span", {class: "feature", text: "feature: " + name}) : null;
    }

    fillStage(g, s) {
      const body = g.querySelector(":scope > .body");
      const col = h("div", {class: "column"});
      s.runs.forEach(([start, count], r) => {
        if (r > 0) {
          const b = s.blocks[start];
          col.append(this.link(this.net.nodes[b.ins[0]][0], b.id, this.shape(b.ins[0])));
        }
        const slot = h("div", {class: "slot"});
        slot.append(count > 1 ? this.runGroup(s, start, count, slot) : this.blockGroup(s, start));
        col.append(slot);
      });
      body.append(col);
    }

    blockGroup(s, k) {
      const b = s.blocks[k];
      const [p, m] = this.cost(b.first, b.n);
      const g = h("section", {class: "group block", "data-kind": "block", "data-path": b.id,
                              "data-folded": "true", "data-diff": this.mark(b.first, b.n),
                              "data-feature": this.featureAt(b.first + b.n - 1)});
      g.append(h("div", {class: "head"},
        h("button", {"data-role": "toggle", "aria-expanded": "false", title: "unfold", text: "+"}),
        h("span", {class: "title", text: b.id}), h("span", {class: "sub", text: b.cls}),
        h("span", {class: "io", text: this.shape(b.ins[0]) + " → " + this.shape(b.first + b.n - 1)}),
        h("span", {class: "cost", text: this.costLine(p, m)}), bar(m, this.net.macs),
        this.featureTag(b.first + b.n - 1)),
        h("div", {class: "body"}));
      g._build = () => g.querySelector(":scope > .body").append(this.canvas(b, b.first, b.ins, b.id + ".", b.shortcut));
      g._info = () => this.blockInfo(s, [k], p, m);
      return g;
    }

    runGroup(s, start, count, slot) {
      const b = s.blocks[start], end = s.blocks[start + count - 1];
      const [p, m] = this.cost(b.first, end.first + end.n - b.first);
      const g = h("section", {class: "group block run", "data-kind": "block", "data-path": b.id,
                              "data-count": count, "data-folded": "true",
                              "data-diff": this.mark(b.first, end.first + end.n - b.first)});
      g.append(h("div", {class: "head"},
        h("button", {"data-role": "toggle", "aria-expanded": "false", title: "unfold the " + count + " blocks", text: "+"}),
        h("span", {class: "title", text: b.id + " … " + end.id}), h("span", {class: "count", text: "×" + count}),
        h("span", {class: "sub", text: b.cls + ", identical"}),
        h("span", {class: "io", text: this.shape(b.ins[0]) + " → " + this.shape(end.first + end.n - 1)}),
        h("span", {class: "cost", text: this.costLine(p, m, num(p / count) + " params each")}), bar(m, this.net.macs)));
      g._open = () => this.openRun(s, start, count, slot, g);
      g._info = () => this.blockInfo(s, [...Array(count).keys()].map((i) => start + i), p, m);
      return g;
    }

    openRun(s, start, count, slot, runEl) {  // the run gives way to its blocks, each folded
      const b = s.blocks[start], end = s.blocks[start + count - 1];
      const box = h("div", {class: "runopen"});
      const refold = h("button", {text: "fold into ×" + count});
      box.append(h("div", {class: "runbar"}, h("span", {text: b.id + " … " + end.id + ": " + count + " identical " + b.cls + " blocks"}), refold));
      for (let k = start; k < start + count; k++) {
        if (k > start) {
          const m = s.blocks[k];
          box.append(this.link(this.net.nodes[m.ins[0]][0], m.id, this.shape(m.ins[0])));
        }
        box.append(this.blockGroup(s, k));
      }
      refold.addEventListener("click", (ev) => {
        ev.stopPropagation();
        slot.replaceChildren(runEl);
      });
      slot.replaceChildren(box);
      return box;
    }

    // A drawing: ops at the compiler's coordinates, inputs as tags, wires as SVG paths.
    canvas(group, first, ins, prefix, shortcut) {
      const [w, hgt, inPos, nodePos, edges, meta] = this.net.drawings[group.draw];
      const c = h("div", {class: "canvas", style: "width:" + w + "px;height:" + hgt + "px"});
      const shortcutOps = shortcut || [];
      const nodes = this.net.nodes;
      const merges = new Set(edges.filter((e, k) => meta[k][0] === "shortcut").map((e) => e[1]));
      let svg = '<svg width="' + w + '" height="' + hgt + '">';
      const outs = new Map(), seen = new Map();
      for (const [s] of edges) outs.set(s, (outs.get(s) || 0) + 1);
      edges.forEach(([s, t, pts], e) => {
        const [role, part] = meta[e];
        const src = s >= 0 ? first + s : ins[-s - 1];
        const dst = first + t;
        const n = nodes[src];
        let label = n[2];
        let extra = "";
        if (part !== null && part !== undefined) {
          const ps = n[10] && n[10][part];
          label = "[" + part + "] " + (ps || n[2]);
          extra = ' data-part="' + part + '"' + (ps ? ' data-part-shape="' + esc(ps) + '"' : "");
        }
        const cut = role === "shortcut";
        if (cut) label = "shortcut " + label;
        let d = "M" + pts[0] + " " + pts[1];
        for (let i = 2; i < pts.length; i += 2) {
          const x0 = pts[i - 2], y0 = pts[i - 1], x1 = pts[i], y1 = pts[i + 1], my = (y0 + y1) / 2;
          d += " C" + x0 + " " + my + " " + x1 + " " + my + " " + x1 + " " + y1;
        }
        // where the source fans out, a label sits where its first leg ends (the legs of a fork
        // part there), else midway along it (the inputs of a merge come from apart); a value
        // read twice by one op stacks its labels
        const fork = outs.get(s) > 1;
        const key = s + ">" + t, again = seen.get(key) || 0;
        seen.set(key, again + 1);
        const lx = fork ? pts[2] + 4 : (pts[0] + pts[2]) / 2 + 4;
        const ly = (fork ? pts[3] - 8 : (pts[1] + pts[3]) / 2 + 3) - 11 * again;
        svg += '<g data-role="edge" class="' + (cut ? "shortcut" : "") + '" data-from="' + esc(n[0]) +
          '" data-to="' + esc(nodes[dst][0]) + '" data-shape="' + esc(n[2]) + '" data-edge-role="' + esc(role) + '"' + extra +
          '><path d="' + d + '"></path><text x="' + lx.toFixed(0) + '" y="' + ly.toFixed(0) + '">' + esc(label) + "</text></g>";
      });
      c.innerHTML = svg + "</svg>";
      inPos.forEach(([x, y], k) => {
        const src = nodes[ins[k]];
        c.append(h("div", {class: "inp", style: "left:" + x + "px;top:" + y + "px", title: "input from " + src[0],
                           text: src[0] + " · " + src[2]}));
      });
      nodePos.forEach(([x, y], k) => {
        const i = first + k, n = nodes[i];
        const rel = n[0].slice(prefix.length);
        const top = rel.split(".")[0];
        const cls = ["op", "cat-" + n[9]];
        if (shortcutOps.some((o) => rel === o || rel.startsWith(o + "."))) cls.push("shortcut");
        if (merges.has(k)) cls.push("residual");
        const costs = (n[3] ? num(n[3]) + " p " + pct(n[3], this.net.params) : "") +
          (n[4] ? (n[3] ? " · " : "") + num(n[4]) + " MAC " + pct(n[4], this.net.macs) : "");
        const el = h("div", {class: cls.join(" "), "data-kind": "op", "data-path": n[0],
                             "data-diff": this.side ? (n[8] || "same") : null, "data-feature": n[7],
                             style: "left:" + x + "px;top:" + y + "px", title: n[0]},
          h("div", {class: "n", text: rel}),
          h("div", {class: "k", text: n[1] + (window_(n) ? " " + window_(n) : "") + " · " + n[2]}),
          h("div", {class: "c", text: costs || "no params, no MACs"}));
        el._info = () => this.opInfo(group, i, first, ins, top);
        c.append(el);
      });
      return c;
    }

    // ---- details ---------------------------------------------------------------------------
    codeOf(names, highlight) {
      const pre = h("pre");
      const code = h("code");
      const text = names.map((n) => this.net.code[n] || "").join("\n\n");
      if (highlight) {
        const re = new RegExp("^(\\s*self\\." + highlight.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "\\b.*)$", "m");
        const m = re.exec(text);
        if (m) {
          code.append(text.slice(0, m.index), h("mark", {text: m[1]}), text.slice(m.index + m[1].length));
          pre.append(code);
          pre._mark = true;
          return pre;
        }
      }
      code.textContent = text;
      pre.append(code);
      return pre;
    }

    table(rows) {
      const t = h("table");
      for (const [k, v] of rows) if (v !== null && v !== undefined && v !== "") t.append(h("tr", {}, h("td", {text: k}), h("td", {text: String(v)})));
      return t;
    }

    refs(list) {
      const box = h("div");
      for (const r of list || []) box.append(h("div", {class: "ref", text: r}));
      if (!box.childNodes.length) box.append(h("div", {class: "ref", text: "(not written in the spec: a default)"}));
      return box;
    }

    opInfo(group, i, first, ins, topName) {
      const net = this.net, n = net.nodes[i];
      const out = [h("h3", {text: n[0]})];
      const rows = [["op", n[1]], ["output", n[2]], ["params", grouped(n[3]) + " (" + pct(n[3], net.params) + " of the network)"],
                    ["MACs", grouped(n[4]) + " (" + pct(n[4], net.macs) + ")"]];
      if (n[7]) rows.push(["feature output", n[7]]);
      if (n[8]) rows.push(["diff", n[8]]);
      out.push(this.table(rows));
      const attrs = Object.entries(n[5]);
      if (attrs.length) {
        out.push(h("h4", {text: "attributes"}));
        out.push(this.table(attrs.map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v])));
      }
      const change = PAGE.diff && PAGE.diff.changes[n[0]];
      if (change) {
        out.push(h("h4", {text: "changed from A to B"}));
        out.push(this.table(Object.entries(change).map(([k, [a, b]]) => [k, JSON.stringify(a) + " → " + JSON.stringify(b)])));
      }
      const tensors = Object.entries(n[6]);
      if (tensors.length) {
        out.push(h("h4", {text: "state_dict"}));
        out.push(this.table(tensors.map(([k, v]) => [n[0] + "." + k, v])));
      }
      const [, , , , edges, meta] = net.drawings[group.draw];
      const inputs = [];
      edges.forEach(([s, t], e) => {
        if (first + t !== i) return;
        const src = s >= 0 ? first + s : ins[-s - 1];
        const [role, part] = meta[e];
        inputs.push([role + (part !== null && part !== undefined ? " [part " + part + "]" : ""), net.nodes[src][0] + " · " + net.nodes[src][2]]);
      });
      if (inputs.length) { out.push(h("h4", {text: "inputs"})); out.push(this.table(inputs)); }
      const block = this.blocks.get(group.id);
      out.push(h("h4", {text: "spec"}));
      if (block) {
        const [s] = block;
        out.push(this.refs([...s.refs, ...(group.defined ? [group.defined + "  (the block's definition)"] : [])]));
        out.push(h("h4", {text: "PyTorch code of block " + group.id + " (" + group.cls + ")"}));
        out.push(this.codeOf(this.closure(group.cls), topName));
      } else {
        out.push(this.refs(group.refs[i - first]));
        out.push(h("h4", {text: "PyTorch code (" + (group.code[0] || "model") + ")"}));
        out.push(this.codeOf(group.code, topName));
      }
      return out;
    }

    closure(cls) {
      const seen = new Set(), todo = [cls];
      while (todo.length) {
        const c = todo.pop();
        if (seen.has(c) || !(c in this.net.code)) continue;
        seen.add(c);
        todo.push(...(this.net.deps[c] || []));
      }
      return Object.keys(this.net.code).filter((c) => seen.has(c));
    }

    blockInfo(s, ks, p, m) {
      const b = s.blocks[ks[0]], end = s.blocks[ks[ks.length - 1]];
      const out = [h("h3", {text: ks.length > 1 ? b.id + " … " + end.id + " (×" + ks.length + ")" : b.id})];
      out.push(this.table([["class", b.cls], ["block", b.kind], ["input", this.shape(b.ins[0])],
                           ["output", this.shape(end.first + end.n - 1)], ["ops", b.n],
                           ["params", grouped(p) + " (" + pct(p, this.net.params) + ")"],
                           ["MACs", grouped(m) + " (" + pct(m, this.net.macs) + ")"]]));
      out.push(h("h4", {text: "constructor"}));
      out.push(this.table(Object.entries(b.args).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : v])));
      out.push(h("h4", {text: "spec"}));
      out.push(this.refs([...s.refs, ...(b.defined ? [b.defined + "  (the block's definition)"] : [])]));
      out.push(h("h4", {text: "PyTorch code (" + b.cls + ")"}));
      out.push(this.codeOf(this.closure(b.cls)));
      return out;
    }

    stageInfo(s, p, m) {
      const first = s.blocks[0], last = s.blocks[s.blocks.length - 1];
      const out = [h("h3", {text: s.name})];
      out.push(this.table([["blocks", s.blocks.length], ["runs", s.runs.map(([a, c]) => s.blocks[a].id + (c > 1 ? " ×" + c : "")).join(", ")],
                           ["input", this.shape(first.ins[0])], ["output", this.shape(last.first + last.n - 1)],
                           ["params", grouped(p) + " (" + pct(p, this.net.params) + ")"],
                           ["MACs", grouped(m) + " (" + pct(m, this.net.macs) + ")"]]));
      out.push(h("h4", {text: "spec"}));
      out.push(this.refs(s.refs));
      const classes = [...new Set(s.blocks.map((b) => b.cls))];
      out.push(h("h4", {text: "PyTorch code (" + classes.join(", ") + ")"}));
      out.push(this.codeOf([...new Set(classes.flatMap((c) => this.closure(c)))]));
      return out;
    }

    // ---- finding a path ----------------------------------------------------------------------
    find(path) {  // the element for a module path, unfolding what hides it; null if none
      const stageName = [...this.stages.keys()].find((n) => path === n || path.startsWith(n + "."));
      const blockId = [...this.blocks.keys()].filter((b) => path === b || path.startsWith(b + "."))
        .sort((a, b) => b.length - a.length)[0];
      if (!this.index.has(path) && !blockId && !stageName) return null;
      if (stageName) {
        const g = this.byPath("stage", stageName);
        if (g) unfold(g);
      }
      if (blockId) {
        let g = this.byPath("block", blockId);
        if (!g) {  // inside a folded run: open the run
          const [s, k] = this.blocks.get(blockId);
          for (const run of this.root.querySelectorAll('[data-kind="block"][data-count]')) {
            const start = s.blocks.findIndex((b) => b.id === run.getAttribute("data-path"));
            const count = +run.getAttribute("data-count");
            if (start >= 0 && k >= start && k < start + count) { unfold(run); break; }
          }
          g = this.byPath("block", blockId);
        }
        if (g && path !== blockId) unfold(g);
        if (path === blockId) return g;
      }
      if (stageName && path === stageName) return this.byPath("stage", stageName);
      return this.byPath("op", path);
    }

    byPath(kind, path) {
      for (const e of this.root.querySelectorAll('[data-kind="' + kind + '"]')) if (e.getAttribute("data-path") === path) return e;
      return null;
    }

    suggest(q, limit) {
      const out = [];
      for (const name of [...this.stages.keys(), ...this.blocks.keys(), ...this.index.keys()]) {
        if (name.includes(q) && !out.includes(name)) out.push(name);
        if (out.length >= limit) break;
      }
      return out;
    }
  }

  // ---- folding, selection, search: the page's behaviour -------------------------------------
  function unfold(g) {
    if (g.getAttribute("data-folded") !== "true") return g;
    if (g._open) return g._open();
    if (g._build) { g._build(); g._build = null; }
    g.setAttribute("data-folded", "false");
    const t = toggleOf(g);
    if (t) { t.textContent = "−"; t.setAttribute("aria-expanded", "true"); t.title = "fold"; }
    return g;
  }
  function fold(g) {
    g.setAttribute("data-folded", "true");
    const t = toggleOf(g);
    if (t) { t.textContent = "+"; t.setAttribute("aria-expanded", "false"); t.title = "unfold"; }
  }
  function toggleOf(g) {
    for (const t of g.querySelectorAll('[data-role="toggle"]')) if (t.closest("[data-kind]") === g) return t;
    return null;
  }
  function viewOf(e) { return views.find((v) => v.root.contains(e)); }

  let selected = [];
  function select(e, also) {  // mark e (and its twins in the other network of a diff), show e
    for (const s of selected) s.removeAttribute("data-selected");
    selected = [e, ...(also || [])];
    for (const s of selected) s.setAttribute("data-selected", "true");
    details.replaceChildren(...(e._info ? e._info() : [h("h3", {text: e.getAttribute("data-path")})]));
    const v = viewOf(e);
    if (v && v.side) details.prepend(h("div", {class: "ref", text: "network " + v.side + ": " + v.net.name}));
    details.scrollTop = 0;
    const mark = details.querySelector("mark");
    if (mark) {  // the op's line in view inside its code box, the box where it is
      const pre = mark.closest("pre");
      pre.scrollTop += mark.getBoundingClientRect().top - pre.getBoundingClientRect().top - 60;
    }
  }

  document.addEventListener("click", (ev) => {
    const t = ev.target.closest('[data-role="toggle"]');
    if (t) {
      const g = t.closest("[data-kind]");
      if (g.getAttribute("data-folded") === "true") unfold(g); else fold(g);
      ev.stopPropagation();
      return;
    }
    const hint = ev.target.closest(".hint div");
    if (hint) { search.value = hint.textContent; go(hint.textContent); return; }
    const op = ev.target.closest('[data-kind="op"]');
    if (op) { select(op); return; }
    const head = ev.target.closest(".group > .head");
    if (head && !ev.target.closest("button")) select(head.parentElement);
  });

  const search = document.querySelector('input[data-role="search"]');
  const status = document.querySelector(".searchbox .status");
  const hints = document.querySelector(".searchbox .hint");
  function go(q) {
    q = q.trim();
    hints.replaceChildren();
    hints.hidden = true;
    if (!q) return;
    const found = views.map((v) => v.find(q)).filter((e) => e);
    if (!found.length) {
      // what the longest known part of the path holds (layer3.5.conv9 -> layer3.5.conv1, ...)
      // the closest first: the longest start in common with what was asked
      const common = (n) => { let i = 0; while (i < n.length && n[i] === q[i]) i++; return i; };
      let close = views.flatMap((v) => v.suggest(q, 3));
      for (let head = q; !close.length && head.includes(".");) {
        head = head.slice(0, head.lastIndexOf("."));
        close = views.flatMap((v) => v.suggest(head + ".", 200).filter((n) => n.startsWith(head + ".")));
      }
      close = [...new Set(close)].sort((a, b) => common(b) - common(a)).slice(0, 3);
      status.textContent = "no module path " + q + (close.length ? "; did you mean " + close.join(", ") + "?" : "");
      return;
    }
    status.textContent = "";
    select(found[0], found.slice(1));
    found[0].scrollIntoView({block: "center", inline: "center"});
  }
  search.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); go(search.value); } });
  search.addEventListener("input", () => {
    const q = search.value.trim();
    hints.replaceChildren();
    hints.hidden = q.length < 2;
    if (hints.hidden) return;
    const seen = new Set();
    for (const v of views) for (const s of v.suggest(q, 12)) seen.add(s);
    for (const s of [...seen].slice(0, 12)) hints.append(h("div", {text: s}));
    hints.hidden = !seen.size;
  });
  document.getElementById("fold-all").addEventListener("click", () => {
    for (const g of document.querySelectorAll('[data-kind="stage"][data-folded="false"]')) fold(g);
  });

  // ---- build ---------------------------------------------------------------------------------
  const main = document.querySelector("main");
  PAGE.views.forEach((net, k) => {
    const side = PAGE.views.length > 1 ? "AB"[k] : null;
    const root = h("div", {class: "view"});
    if (side) root.append(h("h2", {text: side + ": " + net.name}));
    main.append(root);
    views.push(new View(net, root, side));
  });
  if (location.hash.length > 1) {  // model.html#layer3.5.conv2 opens the way to that module
    search.value = decodeURIComponent(location.hash.slice(1));
    go(search.value);
  }
})();
