/* The study viewer: one film at a time on a canvas (the chosen finding's heatmap and boxes over it,
   each toggled by a key), every finding's probability against its operating point, a paged list of
   films. Ids and paths are file names, so untrusted: every text is set with textContent. */
(function () {
  "use strict";

  const DATA = JSON.parse(document.getElementById("viewer-data").textContent);
  const HEAD = DATA.header;
  const FILMS = DATA.films;
  const FINDINGS = HEAD.findings;
  const PAGE_SIZE = 50;
  const CANVAS_PX = 512;
  const byId = new Map(FILMS.map((f, i) => [f.id, i]));
  const state = { at: 0, finding: 0, heat: true, boxes: true, page: 0 };
  let drawn = null;  // what the canvas shows, once drawn: {id, finding, heat, boxes}
  let drawing = 0;   // the latest draw; an older one that finishes late draws nothing

  const $ = (id) => document.getElementById(id);

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

  const pct = (p) => (100 * p).toFixed(1) + "%";
  const present = (film) => FINDINGS.filter((_, j) => film.d[j] === 1);

  /* A jet colour map whose opacity grows with the map's value: low values leave the film visible. */
  const LUT = new Uint8ClampedArray(256 * 4);
  for (let v = 0; v < 256; v++) {
    const x = v / 255, c = (t) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * x - t)));
    LUT.set([255 * c(3), 255 * c(2), 255 * c(1), 255 * 0.7 * Math.pow(x, 1.5)], 4 * v);
  }

  function image(uri) {
    const img = new Image();
    img.src = uri;
    return img.decode().then(() => img);
  }

  /** The chosen finding's map from the film's strip, coloured, on a HEAT_PX canvas. */
  function heatCanvas(strip, j) {
    const px = HEAD.heat_px, off = document.createElement("canvas");
    off.width = px; off.height = px;
    const ctx = off.getContext("2d");
    ctx.drawImage(strip, 0, j * px, px, px, 0, 0, px, px);
    const pixels = ctx.getImageData(0, 0, px, px);
    for (let i = 0; i < pixels.data.length; i += 4) pixels.data.set(LUT.subarray(4 * pixels.data[i], 4 * pixels.data[i] + 4), i);
    ctx.putImageData(pixels, 0, 0);
    return off;
  }

  function boxesOf(film, j) {
    return (film.boxes || []).filter((b) => b[0] === j);
  }

  function draw() {
    const film = FILMS[state.at], j = state.finding, token = ++drawing;
    const canvas = $("film"), scale = CANVAS_PX / Math.max(film.w, film.h);
    const width = Math.max(1, Math.round(film.w * scale)), height = Math.max(1, Math.round(film.h * scale));
    const wanted = { id: film.id, finding: FINDINGS[j], heat: state.heat && !!film.heat,
                     boxes: state.boxes && film.boxes !== null };
    drawn = null;
    Promise.all([image(film.film), wanted.heat ? image(film.heat) : null]).then(([picture, strip]) => {
      if (token !== drawing) return;
      canvas.width = width; canvas.height = height;
      const ctx = canvas.getContext("2d");
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(picture, 0, 0, width, height);
      if (strip) ctx.drawImage(heatCanvas(strip, j), 0, 0, width, height);
      if (wanted.boxes) {
        ctx.lineWidth = 2; ctx.font = "13px system-ui, sans-serif";
        for (const [, x, y, w, h, s] of boxesOf(film, j)) {
          ctx.strokeStyle = "#00ff66";
          ctx.strokeRect(x * scale, y * scale, w * scale, h * scale);
          ctx.fillStyle = "#00ff66";
          ctx.fillText(s.toFixed(2), x * scale + 2, Math.max(12, y * scale - 3));
        }
      }
      drawn = wanted;
    }, (error) => { $("showing").textContent = "This film cannot be shown: " + error; });
    canvas.setAttribute("aria-label", `Film ${film.id}, ${film.w} by ${film.h} pixels; showing ` +
      `${FINDINGS[j]}: ${wanted.heat ? "heatmap" : "no heatmap"}, ${wanted.boxes ? boxesOf(film, j).length + " boxes" : "no boxes"}`);
  }

  function renderFilm() {
    const film = FILMS[state.at], j = state.finding;
    $("film-heading").textContent = film.id;
    $("film-meta").textContent = `${film.path} (${film.w} \u00d7 ${film.h} px); called present: ` +
      (present(film).join(", ") || "none");
    $("position").textContent = `Film ${state.at + 1} of ${FILMS.length}`;
    $("toggle-heat").disabled = !film.heat;
    $("toggle-boxes").disabled = film.boxes === null;
    $("toggle-heat").setAttribute("aria-pressed", String(state.heat));
    $("toggle-boxes").setAttribute("aria-pressed", String(state.boxes));
    $("showing").textContent = `Showing ${FINDINGS[j]}` + (film.heat ? `: ${HEAD.methods[j]}` : " (no heatmap for this film)");
    const list = $("box-list"), mine = boxesOf(film, j);
    list.replaceChildren();
    if (film.boxes === null) list.append(el("li", null, "No boxes were drawn for this film."));
    else if (!mine.length) list.append(el("li", null, `No box for ${FINDINGS[j]} (boxes are drawn for findings at least ${HEAD.min_score} probable).`));
    for (const [, x, y, w, h, s] of mine) {
      list.append(el("li", null, `${FINDINGS[j]}: x ${Math.round(x)}, y ${Math.round(y)}, ${Math.round(w)} \u00d7 ${Math.round(h)} px, score ${s.toFixed(2)}`));
    }
    draw();
  }

  function renderFindings() {
    const film = FILMS[state.at], body = $("findings-body");
    body.replaceChildren();
    FINDINGS.forEach((name, j) => {
      const fill = el("div", { class: "fill" + (film.d[j] ? " present" : "") });
      fill.style.width = pct(film.p[j]);
      const tick = el("div", { class: "tick", title: `operating point ${HEAD.thresholds[j].toFixed(3)}` });
      tick.style.left = pct(HEAD.thresholds[j]);
      const bar = el("div", { class: "bar", role: "img", "aria-label": `${name}: probability ${film.p[j].toFixed(3)}` }, fill, tick);
      const row = el("tr", { id: `finding-${j}`, "aria-selected": String(j === state.finding),
                             onclick: () => choose(j) },
        el("th", { scope: "row" }, name), el("td", null, bar), el("td", { class: "num" }, film.p[j].toFixed(3)),
        el("td", { class: "num" }, HEAD.thresholds[j].toFixed(3)),
        el("td", film.d[j] ? { class: "present-word" } : null, film.d[j] ? "present" : "absent"));
      if (j === state.finding) row.classList.add("current");
      body.append(row);
    });
  }

  function renderList() {
    const pages = Math.max(1, Math.ceil(FILMS.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    const body = $("list-body");
    body.replaceChildren();
    for (let i = state.page * PAGE_SIZE; i < Math.min(FILMS.length, (state.page + 1) * PAGE_SIZE); i++) {
      const film = FILMS[i], top = film.p.indexOf(Math.max(...film.p));
      const row = el("tr", null, el("td", null, el("button", { type: "button", onclick: () => open(i) }, film.id)),
        el("td", null, present(film).join(", ") || "none"),
        el("td", { class: "num" }, `${FINDINGS[top]} ${film.p[top].toFixed(3)}`));
      if (i === state.at) row.classList.add("current");
      body.append(row);
    }
    $("page-info").textContent = `Page ${state.page + 1} of ${pages}`;
    $("list-caption").textContent = `${FILMS.length} films, ${PAGE_SIZE} a page`;
  }

  function render() {
    renderFilm();
    renderFindings();
    renderList();
  }

  function open(i) {
    state.at = Math.max(0, Math.min(FILMS.length - 1, i));
    state.page = Math.floor(state.at / PAGE_SIZE);
    render();
  }

  function choose(j) {
    state.finding = (j + FINDINGS.length) % FINDINGS.length;
    renderFilm();
    renderFindings();
  }

  function toggle(which) {
    state[which] = !state[which];
    renderFilm();
  }

  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    const action = {
      n: () => open(state.at + 1), ArrowRight: () => open(state.at + 1),
      p: () => open(state.at - 1), ArrowLeft: () => open(state.at - 1),
      j: () => choose(state.finding + 1), ArrowDown: () => choose(state.finding + 1),
      k: () => choose(state.finding - 1), ArrowUp: () => choose(state.finding - 1),
      h: () => toggle("heat"), b: () => toggle("boxes"),
    }[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  $("prev").addEventListener("click", () => open(state.at - 1));
  $("next").addEventListener("click", () => open(state.at + 1));
  $("toggle-heat").addEventListener("click", () => toggle("heat"));
  $("toggle-boxes").addEventListener("click", () => toggle("boxes"));
  $("page-prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); renderList(); });
  $("page-next").addEventListener("click", () => { state.page += 1; renderList(); });
  $("goto").addEventListener("change", (event) => {
    if (byId.has(event.target.value)) open(byId.get(event.target.value));
  });
  $("film-ids").append(...FILMS.map((f) => el("option", { value: f.id })));
  $("source").textContent = HEAD.run;
  $("summary").textContent = `${FILMS.length} of ${HEAD.images} images shown; operating points: ${HEAD.source}` +
    (HEAD.heatmap ? `; heatmaps and boxes: ${HEAD.heatmap.source}` : "");

  window.viewer = {
    films: FILMS.length,
    current: () => FILMS[state.at].id,
    finding: () => FINDINGS[state.finding],
    open: (id) => open(byId.has(id) ? byId.get(id) : 0),
    choose: (name) => choose(FINDINGS.indexOf(name)),
    drawn: () => drawn,
  };
  if (FILMS.length) render();
  else $("summary").textContent = "No film in this page.";
})();
