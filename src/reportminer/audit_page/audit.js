/* The audit page: one report at a time (5,000 stay responsive), gold values edited by keyboard,
   progress kept in localStorage under the data's digest, gold exported as `reportminer evaluate`
   reads it. Report text is untrusted: every element is built with textContent, never parsed as HTML. */
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("audit-data").textContent);
  const COLS = DATA.columns;
  const GOLD = DATA.gold;
  const STORE_KEY = "chestxray-audit:" + DATA.digest;
  const PAGE_SIZE = 50;
  const VALUE_TEXT = { "1": "1 positive", "0": "0 negative", "-1": "-1 uncertain", "": "blank" };
  const CSV_VALUES = { "1": "1", "0": "0", "-1": "-1", "": "", "1.0": "1", "0.0": "0", "-1.0": "-1" };
  const BADGE = { positive: "+", negative: "\u2212", uncertain: "?" };
  const STRENGTH = { positive: 3, uncertain: 2, negative: 1 };
  const NF = DATA.noFindingRule;  // how No_Finding follows the findings (the labeler's rule), or null
  const STOPS = COLS.map((_, f) => f).filter((f) => !NF || f !== NF.column);  // the findings a reviewer sets
  const byId = new Map(DATA.reports.map((r, i) => [r.id, i]));
  const state = { gold: new Map(), reviewed: new Set(), at: 0, finding: 0, mode: "all", page: 0,
                  entry: { r: 0, f: -1 }, filters: { finding: "", type: "", rule: "" } };

  const $ = (id) => document.getElementById(id);
  const str = (i) => (i === null || i === undefined ? null : DATA.strings[i]);

  /** An element with text children only (strings become text nodes, never HTML). */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    Object.entries(props || {}).forEach(([k, v]) => {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    });
    children.forEach((c) => node.append(c instanceof Node ? c : document.createTextNode(String(c))));
    return node;
  }

  /* Invisible characters (direction controls, zero-width and control characters) are drawn as
     visible marks and not obeyed: a U+202E would otherwise reverse what the reviewer reads, and two
     ids that differ only by one would look alike. Ids are also isolated (<bdi>) from the text around. */
  const CONTROL = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u00AD\u061C\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]/g;
  const CONTROL_NAMES = { "\u00AD": "SHY", "\u061C": "ALM", "\u200B": "ZWSP", "\u200C": "ZWNJ", "\u200D": "ZWJ",
    "\u200E": "LRM", "\u200F": "RLM", "\u202A": "LRE", "\u202B": "RLE", "\u202C": "PDF", "\u202D": "LRO",
    "\u202E": "RLO", "\u2060": "WJ", "\u2066": "LRI", "\u2067": "RLI", "\u2068": "FSI", "\u2069": "PDI", "\uFEFF": "BOM" };
  const codePoint = (c) => "U+" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
  const controlName = (c) => CONTROL_NAMES[c] || codePoint(c);

  /** Text for an attribute or a message: each invisible character written as [NAME]. */
  const plain = (text) => String(text).replace(CONTROL, (c) => "[" + controlName(c) + "]");

  /** Text for the page: each invisible character as a visible mark naming it. */
  function shown(text) {
    const frag = document.createDocumentFragment();
    let at = 0;
    for (const m of String(text).matchAll(CONTROL)) {
      if (m.index > at) frag.append(text.slice(at, m.index));
      frag.append(el("span", { class: "ctl", title: codePoint(m[0]) + ": an invisible character, shown here as the labeler read it" },
                     controlName(m[0])));
      at = m.index + 1;
    }
    if (at < text.length) frag.append(text.slice(at));
    return frag;
  }

  const idNode = (id) => el("bdi", {}, shown(id));
  const asText = (v) => (v === null || v === undefined ? "" : String(v));
  const say = (text) => { $("message").textContent = text; };

  function goldOf(i) {
    const report = DATA.reports[i];
    return state.gold.get(report.id) || report.labels.map(asText);
  }

  function mention(report, k) {
    const m = report.mentions[k];
    return { finding: DATA.findings[m[0]], start: m[1], end: m[2], assertion: DATA.assertions[m[3]],
             rule: str(m[4]), sentence: str(m[5]), attrs: m.slice(6, 9).map(str).filter((a) => a),
             words: m[1] >= 0 ? report.text.slice(m[1], m[2]) : null };
  }

  /* ---- saved progress ---------------------------------------------------------------------- */

  function save() {
    const record = { v: 1, gold: Object.fromEntries(state.gold), reviewed: [...state.reviewed],
                     at: DATA.reports.length ? DATA.reports[state.at].id : null, finding: state.finding,
                     mode: state.mode };
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(record));
    } catch (e) {
      say("Progress could not be saved in this browser (" + e.name + "); export the gold CSV to keep it.");
    }
  }

  function validValues(values) {
    return Array.isArray(values) && values.length === COLS.length &&
      values.every((v) => Object.prototype.hasOwnProperty.call(VALUE_TEXT, v));
  }

  function restore() {
    let record = null;
    try {
      record = JSON.parse(localStorage.getItem(STORE_KEY) || "null");
    } catch (e) {
      record = null;
    }
    if (!record || record.v !== 1) return;
    Object.entries(record.gold || {}).forEach(([id, values]) => {
      if (byId.has(id) && validValues(values)) putGold(byId.get(id), values.slice());
    });
    (record.reviewed || []).forEach((id) => { if (byId.has(id)) state.reviewed.add(id); });
    if (byId.has(record.at)) state.at = byId.get(record.at);
    if (Number.isInteger(record.finding) && record.finding >= 0 && record.finding < COLS.length) {
      state.finding = record.finding;
    }
    if (["all", "unreviewed", "reviewed", "errors"].includes(record.mode) && (record.mode !== "errors" || GOLD)) {
      state.mode = record.mode;
    }
  }

  /* ---- editing ----------------------------------------------------------------------------- */

  /** Values with No_Finding set from the findings as the labeler sets it, so an export never says
      "no finding" beside a positive one. */
  function withNoFinding(values) {
    if (!NF) return values;
    const counted = NF.counted.map((f) => values[f]);
    values[NF.column] = counted.includes("1") ? NF.abnormal : counted.includes("-1") ? NF.uncertain : "1";
    return values;
  }

  /** A report's gold values; only those that differ from the labeler's are kept (and saved). */
  function putGold(i, values) {
    const report = DATA.reports[i];
    withNoFinding(values);
    if (values.every((v, k) => v === asText(report.labels[k]))) state.gold.delete(report.id);
    else state.gold.set(report.id, values);
  }

  function setGold(i, f, value) {
    if (NF && f === NF.column) {
      say(COLS[f] + " follows the findings (as the labeler sets it); set the findings instead.");
      return;
    }
    const values = goldOf(i).slice();
    values[f] = value;
    putGold(i, values);
    save();
  }

  function setReviewed(i, on) {
    const id = DATA.reports[i].id;
    if (on) state.reviewed.add(id);
    else state.reviewed.delete(id);
    save();
  }

  /* ---- the report: text with mentions ------------------------------------------------------ */

  function mentionTitle(m) {
    return m.finding + ": " + m.assertion + " by " + m.rule + (m.attrs.length ? " (" + m.attrs.join(", ") + ")" : "") +
      "\n\u201c" + plain(m.sentence) + "\u201d";
  }

  /** A mention's kind: a no-finding mention ("No acute disease") is a normal statement, not a
      positive finding, and is drawn apart from them. */
  const kind = (m) => "m-" + m.assertion + (m.finding === DATA.noFinding ? " m-nofinding" : "");

  function renderText(report) {
    const placed = report.mentions.map((_, k) => mention(report, k)).map((m, k) => ({ ...m, k }))
      .filter((m) => m.start >= 0);
    const cuts = [...new Set([0, report.text.length, ...placed.flatMap((m) => [m.start, m.end])])]
      .sort((a, b) => a - b);
    const box = $("report-text");
    const frag = document.createDocumentFragment();
    for (let c = 0; c + 1 < cuts.length; c++) {
      const [a, b] = [cuts[c], cuts[c + 1]];
      const here = placed.filter((m) => m.start <= a && m.end >= b);
      const piece = report.text.slice(a, b);
      if (!here.length) {
        frag.append(shown(piece));
      } else {
        const top = here.reduce((x, y) => (STRENGTH[y.assertion] > STRENGTH[x.assertion] ||
          (y.finding !== DATA.noFinding && x.finding === DATA.noFinding && y.assertion === x.assertion) ? y : x));
        frag.append(el("span", { class: "m " + kind(top), title: here.map(mentionTitle).join("\n"),
                                 "data-mentions": here.map((m) => m.k).join(" "),
                                 onclick: () => showMentions(here) }, shown(piece)));
      }
      placed.filter((m) => m.end === b).forEach((m) => {  // the badge names the mention's finding
        frag.append(el("span", { class: "badge b-" + m.assertion + (m.finding === DATA.noFinding ? " b-nofinding" : ""),
                                 title: m.finding + " " + m.assertion },
                       BADGE[m.assertion] + " " + m.finding));
      });
    }
    box.replaceChildren(frag);
  }

  function showMentions(list) {
    const f = COLS.indexOf(list[0].finding);
    if (f >= 0) setFinding(f, false);
    $("detail").replaceChildren(...list.map(detailLine));
  }

  function detailLine(m) {
    return el("p", {}, el("strong", {}, m.finding), ": " + m.assertion + " by rule ", el("code", {}, m.rule),
              m.attrs.length ? " (" + m.attrs.join(", ") + ")" : "", " \u2014 words \u201c", el("mark", {}, shown(m.words || "?")),
              "\u201d in \u201c", shown(m.sentence || ""), "\u201d");
  }

  /* ---- the report: findings, evidence, errors ---------------------------------------------- */

  function buildFindings() {
    const head = ["Finding", "Labeler", "Your gold"].concat(GOLD ? ["Gold file", "Error"] : []);
    $("findings-head").replaceChildren(...head.map((h) => el("th", { scope: "col" }, h)));
    const rows = COLS.map((name, f) => {
      const select = el("select", { id: "gold-" + f, "data-finding": String(f),
                                    onchange: (ev) => { setGold(state.at, f, ev.target.value); showValues(); },
                                    onfocus: () => setFinding(f, false) },
                        ...Object.entries(VALUE_TEXT).map(([v, t]) => el("option", { value: v }, t)));
      const derived = NF && f === NF.column;
      if (derived) select.disabled = true;
      const cells = [el("th", { scope: "row", id: "name-" + f }, name), el("td", { id: "labeler-" + f, "data-label": "Labeler" }),
                     el("td", { "data-label": "Your gold" }, el("label", { for: "gold-" + f, class: "sr-only" }, "Gold value for " + name), select,
                        ...(derived ? [el("span", { class: "follows" }, "follows the findings")] : []))];
      if (GOLD) cells.push(el("td", { id: "goldfile-" + f, "data-label": "Gold file" }), el("td", { id: "error-" + f, class: "error" }));
      return el("tr", { id: "row-" + f }, ...cells);
    });
    $("findings-body").replaceChildren(...rows);
  }

  function errorsOf(i) {
    return ERRORS.filter((e) => e.r === i);
  }

  function showValues() {
    const report = DATA.reports[state.at];
    const values = goldOf(state.at);
    const fileValues = GOLD ? GOLD.values[report.id] : null;
    const wrong = new Map(errorsOf(state.at).map((e) => [e.f, DATA.errorTypes[e.t]]));
    COLS.forEach((_, f) => {
      const labeler = asText(report.labels[f]);
      $("labeler-" + f).textContent = VALUE_TEXT[labeler];
      const select = $("gold-" + f);
      select.value = values[f];
      select.parentElement.classList.toggle("changed", values[f] !== labeler);
      if (GOLD) {
        $("goldfile-" + f).textContent = !GOLD.scored.includes(COLS[f]) ? "no column" :
          fileValues ? VALUE_TEXT[asText(fileValues[f])] : "no row";
        $("error-" + f).textContent = wrong.get(f) || "";
      }
    });
    $("reviewed").checked = state.reviewed.has(report.id);
    showProgress();
  }

  function showEvidence(report) {
    const rows = report.mentions.map((_, k) => {
      const m = mention(report, k);
      return el("tr", { "data-finding": m.finding }, el("td", {}, m.finding),
                el("td", {}, m.words === null ? "(not at its offsets in this text)" : shown(m.words)),
                el("td", {}, BADGE[m.assertion] + " " + m.assertion), el("td", {}, el("code", {}, m.rule || "")),
                el("td", {}, shown(m.sentence || "")), el("td", {}, m.attrs.join(", ")));
    });
    $("evidence-body").replaceChildren(...(rows.length ? rows :
      [el("tr", {}, el("td", { colspan: "6" }, DATA.evidence ? "No mention in this report." :
        "No mentions.parquet was given to the audit."))]));
  }

  function showReportErrors(i) {
    const report = DATA.reports[i];
    const items = errorsOf(i).map((e) => el("li", {}, el("button", { type: "button", onclick: () => setFinding(e.f, true) },
      COLS[e.f]), " " + DATA.errorTypes[e.t] + ": labeler " + VALUE_TEXT[asText(report.labels[e.f])] +
      ", gold file " + VALUE_TEXT[asText((GOLD.values[report.id] || [])[e.f])] + "; rules " + e.rules.join(", ")));
    $("report-errors").replaceChildren(...items);
  }

  function setFinding(f, focus) {
    state.finding = f;
    document.querySelectorAll("#findings-body tr").forEach((tr, k) => {
      tr.classList.toggle("current", k === f);
      if (k === f) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    });
    const stop = STOPS.indexOf(f);
    $("cursor").textContent = "Cursor on " + COLS[f] + (stop >= 0 ? " (finding " + (stop + 1) + " of " + STOPS.length + ")" : "");
    const report = DATA.reports[state.at];
    const name = COLS[f];
    const wrongNames = new Set(errorsOf(state.at).map((e) => COLS[e.f]));
    document.querySelectorAll("#report-text .m").forEach((span) => {
      const names = span.dataset.mentions.split(" ").map((k) => DATA.findings[report.mentions[k][0]]);
      span.classList.toggle("current", names.includes(name));
      span.classList.toggle("wrong", names.some((n) => wrongNames.has(n)));
    });
    document.querySelectorAll("#evidence-body tr").forEach((tr) => tr.classList.toggle("current", tr.dataset.finding === name));
    const mine = report.mentions.map((_, k) => mention(report, k)).filter((m) => m.finding === name);
    $("detail").replaceChildren(...(mine.length ? mine.map(detailLine) : [el("p", {}, name + ": not mentioned in this report.")]));
    if (focus) $("gold-" + f).focus({ preventScroll: focus === "quietly" });
    save();
  }

  /** Bring the report's heading into view at the next frame (a report is read from its top): not at
      once, which would lay the page out on every key press instead of once per frame. */
  let topPending = false;
  function showTop() {
    if (topPending) return;
    topPending = true;
    requestAnimationFrame(() => { topPending = false; $("report-heading").scrollIntoView({ block: "nearest" }); });
  }

  /** Open report i. From a list of errors, `f` is the error's finding and the cursor starts there;
      otherwise the cursor starts on the first finding (a reviewer's j, 1 from habit must land where she
      means), or on `cursor` when the page comes back after a reload. */
  function open(i, f, cursor) {
    if (!(i >= 0 && i < DATA.reports.length)) return;
    const entry = f === undefined || f < 0 ? -1 : f;
    state.at = i;
    state.entry = { r: i, f: entry };
    const report = DATA.reports[i];
    const sample = DATA.sample && DATA.sample[report.id];
    $("report-heading").replaceChildren("Report ", idNode(report.id));
    $("report-meta").textContent = (i + 1) + " of " + DATA.reports.length + " in the labels" +
      (sample ? " \u00b7 stratum " + plain(sample[0]) + " \u00b7 weight " + sample[1].toFixed(2) : "");
    $("position").replaceChildren("Report ", idNode(report.id), " (" + (i + 1) + " of " + DATA.reports.length + ")");
    renderText(report);
    showEvidence(report);
    if (GOLD) showReportErrors(i);
    showValues();
    setFinding(cursor !== undefined ? cursor : entry >= 0 ? entry : STOPS[0], document.activeElement !== $("goto") && "quietly");
    showTop();
    const here = currentEntry(entries());
    if (here >= 0) state.page = Math.floor(here / PAGE_SIZE);
    showList();
  }

  /* ---- the list: reports or errors, paged ---------------------------------------------------- */

  const ERRORS = (GOLD ? GOLD.errors : []).map(([id, f, t]) => {
    const r = byId.has(id) ? byId.get(id) : -1;
    const report = DATA.reports[r];
    const rules = r < 0 ? [] : [...new Set(report.mentions.filter((m) => m[0] === DATA.findings.indexOf(COLS[f]))
      .map((m) => str(m[4])))];
    return { id, r, f, t, rules: rules.length ? rules : ["(not mentioned)"] };
  }).sort((a, b) => (a.r < 0) - (b.r < 0) || a.r - b.r || a.f - b.f);

  function entries() {
    if (state.mode === "errors") {
      const { finding, type, rule } = state.filters;
      return ERRORS.filter((e) => (finding === "" || e.f === Number(finding)) && (type === "" || e.t === Number(type)) &&
        (rule === "" || e.rules.includes(rule)));
    }
    const keep = { all: () => true, unreviewed: (id) => !state.reviewed.has(id), reviewed: (id) => state.reviewed.has(id) };
    return DATA.reports.map((r, i) => ({ id: r.id, r: i, f: -1 })).filter((e) => keep[state.mode](e.id));
  }

  /** The list entry last opened: the report on screen and, for an error, its finding (moving the
      cursor within the report does not move it, so n still reaches the report's next error). */
  function currentEntry(list) {
    const f = state.entry.r === state.at ? state.entry.f : -1;
    return list.findIndex((e) => e.r === state.at && e.f === f);
  }

  function step(direction) {
    const list = entries();
    const f = state.entry.r === state.at ? state.entry.f : -1;
    const after = (e) => e.r < 0 || e.r > state.at || (e.r === state.at && e.f > f);
    const before = (e) => e.r >= 0 && (e.r < state.at || (e.r === state.at && e.f < f));
    const k = direction > 0 ? list.findIndex(after) : list.map(before).lastIndexOf(true);
    if (k < 0 || k >= list.length || list[k].r < 0) {
      say(list.length ? "No " + (direction > 0 ? "next" : "previous") + " report in this list." : "This list is empty.");
      return;
    }
    say("");
    open(list[k].r, list[k].f);
  }

  function listRow(e, current) {
    const button = e.r < 0 ? "" : el("button", { type: "button", "aria-label": "Open report " + plain(e.id),
                                                 onclick: () => open(e.r, e.f) }, idNode(e.id));
    const first = el("td", {}, button || idNode(e.id));
    if (state.mode === "errors") {
      const report = DATA.reports[e.r];
      return el("tr", { class: current ? "current" : "" }, first, el("td", {}, COLS[e.f]), el("td", {}, DATA.errorTypes[e.t]),
                el("td", {}, report ? VALUE_TEXT[asText(report.labels[e.f])] : "no labels, no text"),
                el("td", {}, VALUE_TEXT[asText((GOLD.values[e.id] || [])[e.f])]), el("td", {}, e.rules.join(", ")));
    }
    const sample = DATA.sample && DATA.sample[e.id];
    return el("tr", { class: current ? "current" : "" }, first, el("td", {}, state.reviewed.has(e.id) ? "reviewed" : "not yet"),
              el("td", {}, state.gold.has(e.id) ? "changed" : ""), el("td", {}, sample ? shown(sample[0]) : ""));
  }

  function showList() {
    const list = entries();
    const pages = Math.max(1, Math.ceil(list.length / PAGE_SIZE));
    const here = currentEntry(list);
    state.page = Math.min(Math.max(state.page, 0), pages - 1);
    const head = state.mode === "errors" ? ["Report", "Finding", "Error", "Labeler", "Gold file", "Rules"]
      : ["Report", "Reviewed", "Changed", "Stratum"];
    $("list-head").replaceChildren(...head.map((h) => el("th", { scope: "col" }, h)));
    const part = list.slice(state.page * PAGE_SIZE, (state.page + 1) * PAGE_SIZE);
    $("list-body").replaceChildren(...part.map((e, k) => listRow(e, state.page * PAGE_SIZE + k === here)));
    $("list-caption").textContent = list.length + " " + (state.mode === "errors" ? "errors" : "reports") + " in this list";
    $("page-info").textContent = "Page " + (state.page + 1) + " of " + pages;
    $("page-prev").disabled = state.page === 0;
    $("page-next").disabled = state.page >= pages - 1;
    $("error-filters").hidden = state.mode !== "errors";
  }

  function turnPage(d) {
    state.page += d;
    showList();
  }

  function buildFilters() {
    const modes = [["all", "All reports"], ["unreviewed", "Not reviewed"], ["reviewed", "Reviewed"]]
      .concat(GOLD ? [["errors", "Errors against the gold file"]] : []);
    $("list-mode").replaceChildren(...modes.map(([v, t]) => el("option", { value: v }, t)));
    $("list-mode").value = state.mode;
    const findings = [...new Set(ERRORS.map((e) => e.f))].sort((a, b) => a - b);
    const rules = [...new Set(ERRORS.flatMap((e) => e.rules))].sort();
    const options = (pairs) => [el("option", { value: "" }, "all")].concat(pairs.map(([v, t]) => el("option", { value: v }, t)));
    $("filter-finding").replaceChildren(...options(findings.map((f) => [String(f), COLS[f]])));
    $("filter-type").replaceChildren(...options(DATA.errorTypes.map((t, k) => [String(k), t])));
    $("filter-rule").replaceChildren(...options(rules.map((r) => [r, r])));
    const refilter = () => {
      state.mode = $("list-mode").value;
      state.filters = { finding: $("filter-finding").value, type: $("filter-type").value, rule: $("filter-rule").value };
      state.page = 0;
      save();
      showList();
    };
    ["list-mode", "filter-finding", "filter-type", "filter-rule"].forEach((id) => $(id).addEventListener("change", refilter));
  }

  /* ---- evaluation table --------------------------------------------------------------------- */

  function showEvaluation() {
    if (!GOLD) return;
    const ev = GOLD.evaluation;
    const num = (x) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(3));
    const ci = (s) => (s.ci && s.ci.f1[0] !== null ? num(s.ci.f1[0]) + "\u2013" + num(s.ci.f1[1]) : "");
    const count = (v) => (v === "" || Number.isInteger(v) ? v : Number(v).toFixed(1));  // weighted counts are not whole
    const row = (name, s, counts) => el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, num(s.precision)),
      el("td", {}, num(s.recall)), el("td", {}, num(s.f1)), el("td", {}, ci(s)),
      ...(counts ? [s.support, s.tp, s.fp, s.fn] : ["", "", "", ""]).map((v) => el("td", {}, count(v))));
    const block = (figures) => {
      const rows = Object.entries(figures.per_finding).map(([f, s]) => row(f, s, true));
      Object.entries(figures.totals).forEach(([name, t]) => {
        rows.push(row("micro " + name, { ...t.micro, support: "" }, true), row("macro " + name, t.macro, false));
      });
      return rows;
    };
    const rows = block(ev);
    if (ev.weighted) {  // a sample's figures weighted back to the archive it was drawn from
      rows.push(el("tr", { class: "weighted" }, el("th", { scope: "colgroup", colspan: "9", id: "weighted-heading" },
        "Weighted by " + ev.weighted.weights + ": figures for the archive the sample was drawn from (support and counts " +
        "in reports of the archive" + (ev.weighted.stratified ? "; bootstrap within strata)" : ")"))), ...block(ev.weighted));
    }
    $("evaluation-body").replaceChildren(...rows);
    $("evaluation-caption").textContent = "Labels against " + GOLD.path + ": " + ev.reports + " gold reports (" +
      ev.missing_reports + " without labels), uncertain scored as " + ev.uncertain +
      (ev.bootstrap ? "; 95% percentile bootstrap over reports, " + ev.bootstrap.resamples + " resamples" : "");
    $("evaluation-notes").replaceChildren(...ev.notes.map((n) => el("li", {}, n)));
    $("evaluation").hidden = false;
  }

  /* ---- CSV export and import ---------------------------------------------------------------- */

  const csvCell = (v) => (/[",\r\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v);

  /* A report id a spreadsheet would run as a formula (=, +, -, @, tab, return) is written with a
     leading ' (as is one that starts with '), which `reportminer evaluate` and the import take off. */
  const FORMULA = /^['=+\-@\t\r]/;
  const safeId = (id) => (FORMULA.test(id) ? "'" + id : id);
  const unsafeId = (cell) => (cell.length > 1 && cell[0] === "'" && FORMULA.test(cell.slice(1)) ? cell.slice(1) : cell);

  function exportCsv() {
    const lines = [["report_id", ...COLS].map(csvCell).join(",")];
    DATA.reports.forEach((r, i) => {
      if (state.reviewed.has(r.id)) lines.push([safeId(r.id), ...goldOf(i)].map(csvCell).join(","));
    });
    return lines.join("\n") + "\n";
  }

  /** A name per export, its local time to the millisecond (gold-20250131-142501-123.csv): repeated
      exports sort in the order made instead of piling up as "gold (1).csv"; each holds every
      reviewed report, so the newest is the one to keep. */
  function exportName() {
    const d = new Date();
    const p = (n, w) => String(n).padStart(w || 2, "0");
    return "gold-" + d.getFullYear() + p(d.getMonth() + 1) + p(d.getDate()) + "-" + p(d.getHours()) + p(d.getMinutes()) +
      p(d.getSeconds()) + "-" + p(d.getMilliseconds(), 3) + ".csv";
  }

  function download() {
    const text = exportCsv();
    const name = exportName();
    $("export-text").value = text;
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    const left = DATA.reports.length - state.reviewed.size;
    say("Exported " + state.reviewed.size + " reviewed reports as " + name + (left ? " (" + left + " not reviewed are left out)." : "."));
  }

  /** RFC 4180 rows, each with the line it starts on. */
  function parseCsv(text) {
    const rows = [];
    let row = [], cell = "", quoted = false, line = 1, start = 1;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
        else if (c === '"') quoted = false;
        else { cell += c; if (c === "\n") line++; }
      } else if (c === '"') quoted = true;
      else if (c === ",") { row.push(cell); cell = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(cell); rows.push({ line: start, cells: row }); row = []; cell = ""; line++; start = line;
      } else cell += c;
    }
    if (cell !== "" || row.length) { row.push(cell); rows.push({ line: start, cells: row }); }
    return rows;
  }

  function readGoldRows(text, name) {
    const rows = parseCsv(text.replace(/^\ufeff/, "")).filter((r) => r.cells.some((c) => c.trim() !== ""));
    if (!rows.length) throw new Error(name + ": empty file");
    const header = rows[0].cells.map((c) => c.trim());
    const idAt = header.indexOf("report_id");
    if (idAt < 0) throw new Error(name + ": missing column 'report_id' (columns are: " + header.join(", ") + ")");
    const known = COLS.map((c) => header.indexOf(c));
    const seen = new Set();
    const parsed = rows.slice(1).map(({ line, cells }) => {
      const id = unsafeId((cells[idAt] || "").trim());
      if (!id) throw new Error(name + ":" + line + ": empty report_id");
      if (seen.has(id)) throw new Error(name + ":" + line + ": report_id " + id + " listed twice");
      seen.add(id);
      const values = known.map((at, f) => {
        if (at < 0) return null;
        const raw = (cells[at] || "").trim();
        if (!Object.prototype.hasOwnProperty.call(CSV_VALUES, raw)) {
          throw new Error(name + ":" + line + ": column " + COLS[f] + " must be 1, 0, -1 or blank, got '" + raw + "'");
        }
        return CSV_VALUES[raw];
      });
      return { id, values };
    });
    return { parsed, header, known };
  }

  function importCsv(text, name) {
    const { parsed, header, known } = readGoldRows(text, name || "the CSV");
    if (known.every((at) => at < 0)) throw new Error((name || "the CSV") + ": no column of this audit's findings");
    const absent = parsed.filter((p) => !byId.has(p.id)).map((p) => p.id);
    let recomputed = 0;
    parsed.filter((p) => byId.has(p.id)).forEach(({ id, values }) => {
      const i = byId.get(id);
      const current = goldOf(i).slice();
      values.forEach((v, f) => { if (v !== null) current[f] = v; });
      putGold(i, current);
      if (NF && values[NF.column] !== null && values[NF.column] !== goldOf(i)[NF.column]) recomputed++;
      state.reviewed.add(id);
    });
    save();
    open(state.at, state.entry.f, state.finding);
    const extra = header.filter((h) => h !== "report_id" && !COLS.includes(h));
    const kept = COLS.filter((_, f) => known[f] < 0 && !(NF && f === NF.column));
    const parts = ["Imported " + (parsed.length - absent.length) + " reports from " + (name || "the CSV") + ", marked reviewed."];
    if (absent.length) parts.push(absent.length + " are not in this audit: " + absent.slice(0, 5).map(plain).join(", ") + (absent.length > 5 ? ", ..." : "") + ".");
    if (extra.length) parts.push("Ignored columns: " + extra.join(", ") + ".");
    if (kept.length) parts.push("Not in the file, so the labeler's values stay: " + kept.join(", ") + ".");
    if (recomputed) parts.push(COLS[NF.column] + " follows the findings: set anew for " + recomputed + " reports.");
    say(parts.join(" "));
    return { imported: parsed.length - absent.length, absent };
  }

  function onImportFile(ev) {
    const file = ev.target.files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      try { importCsv(String(reader.result), file.name); } catch (e) { say(e.message); }
      ev.target.value = "";
    };
    reader.onerror = () => say(file.name + ": cannot be read (" + reader.error + ")");
    reader.readAsText(file);
  }

  /* ---- keyboard ----------------------------------------------------------------------------- */

  function moveFinding(d) {
    const at = STOPS.indexOf(state.finding);
    const before = STOPS.filter((f) => f < state.finding).length;  // off the stops (on No_Finding): the stop beside it
    const k = at >= 0 ? at + d : d > 0 ? before : before - 1;
    setFinding(STOPS[Math.min(Math.max(k, 0), STOPS.length - 1)], true);
  }

  function setCurrent(value) {
    setGold(state.at, state.finding, value);
    showValues();
    $("gold-" + state.finding).focus();
  }

  function toggleReviewed(on) {
    setReviewed(state.at, on === undefined ? !state.reviewed.has(DATA.reports[state.at].id) : on);
    showValues();
    showList();
  }

  const KEYS = {
    n: () => step(1), ArrowRight: () => step(1), p: () => step(-1), ArrowLeft: () => step(-1),
    ArrowDown: () => moveFinding(1), j: () => moveFinding(1), ArrowUp: () => moveFinding(-1), k: () => moveFinding(-1),
    1: () => setCurrent("1"), 0: () => setCurrent("0"), "-": () => setCurrent("-1"), u: () => setCurrent("-1"),
    b: () => setCurrent(""), Delete: () => setCurrent(""), Backspace: () => setCurrent(""),
    r: () => toggleReviewed(), Enter: () => { toggleReviewed(true); step(1); }, e: () => download(),
    "?": () => $("keys").focus(),
  };

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || !DATA.reports.length) return;
    const t = ev.target instanceof Element ? ev.target : document.body;
    const inFindings = Boolean(t.closest("#findings"));
    if (t.matches("input[type=text], input[type=file], textarea") || (t.tagName === "SELECT" && !inFindings)) {
      if (ev.key === "Escape") $("gold-" + state.finding).focus();
      return;
    }
    const enterOnBox = ev.key === "Enter" && t.id === "reviewed";  // its label promises Enter: reviewed, next
    if ((ev.key === "Enter" || ev.key === " ") && t.matches("button, a, input[type=checkbox], label") && !enterOnBox) return;
    if (!Object.prototype.hasOwnProperty.call(KEYS, ev.key)) return;
    ev.preventDefault();
    KEYS[ev.key]();
  }

  /* ---- start -------------------------------------------------------------------------------- */

  function showProgress() {
    $("progress").textContent = state.reviewed.size + " of " + DATA.reports.length + " reviewed \u00b7 " +
      state.gold.size + " changed from the labeler \u00b7 saved in this browser";
  }

  function wire() {
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    $("page-prev").addEventListener("click", () => turnPage(-1));
    $("page-next").addEventListener("click", () => turnPage(1));
    $("reviewed").addEventListener("change", (ev) => toggleReviewed(ev.target.checked));
    $("export").addEventListener("click", download);
    $("import").addEventListener("change", onImportFile);
    $("goto").addEventListener("keydown", (ev) => {
      if (ev.key !== "Enter") return;
      ev.preventDefault();  // else its keypress reaches the focused select and opens its dropdown (Linux Chromium)
      const id = ev.target.value.trim();
      if (byId.has(id)) { say(""); open(byId.get(id)); $("gold-" + state.finding).focus(); }
      else say("No report " + plain(id) + " in this audit.");
    });
    document.addEventListener("keydown", onKey, true);
  }

  function start() {
    $("source").replaceChildren(shown(DATA.labels));
    $("report-ids").replaceChildren(...DATA.reports.map((r) => el("option", plain(r.id) === r.id ? { value: r.id } :
      { value: r.id, label: plain(r.id) })));
    restore();
    buildFindings();
    buildFilters();
    showEvaluation();
    wire();
    if (DATA.reports.length) open(state.at, -1, state.finding);
    else say("No report of the labels has its text in the inputs; nothing to audit.");
    showProgress();
    window.audit = { exportCsv, importCsv, open: (id) => { open(byId.get(id)); return byId.has(id); }, current: () => DATA.reports[state.at].id,
                     reviewed: () => [...state.reviewed], storageKey: STORE_KEY, reports: DATA.reports.length,
                     errors: () => ERRORS.map((e) => [e.id, COLS[e.f], DATA.errorTypes[e.t]]) };
  }

  start();
}());
