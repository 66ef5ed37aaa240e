// A small map: grid cells and officers as SVG over optional raster tiles (Web Mercator).
// Without tiles (or when they fail) it is a plain vector map, for isolated networks.

import { stateColour } from "./labels.js";

const SVG = "http://www.w3.org/2000/svg";
const TILE = 256;
const BASE_ZOOM = 18; // cell paths are kept in pixels of this zoom, relative to an origin
const MIN_ZOOM = 2;
const MAX_ZOOM = 20;
const MAX_TILE_ZOOM = 19;

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

/** (lon, lat) in degrees to Web Mercator in [0, 1) x [0, 1). */
export function project(lon, lat) {
  const s = Math.sin((Math.max(-85.05, Math.min(85.05, lat)) * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

export class MapView {
  constructor(container, { tilesUrl = null, note = null } = {}) {
    this.container = container;
    this.tilesUrl = tilesUrl;
    this.note = note;
    this.svg = el("svg", { class: "map-svg", role: "img", "aria-label": "地图 map" });
    container.prepend(this.svg);
    this.tileLayer = el("g", { class: "tiles" }, this.svg);
    this.cellLayer = el("g", { class: "cells" }, this.svg);
    this.officerLayer = el("g", { class: "officers" }, this.svg);
    // Names above every marker, so that a neighbour's dot never hides one.
    this.labelLayer = el("g", { class: "labels" }, this.svg);
    this.tiles = new Map();
    this.tileLoads = 0;
    this.tileFails = 0;
    this.cells = new Map(); // code -> path
    this.cellBox = []; // two corners around every cell, for fitting
    this.officers = new Map(); // officer -> {data, node}
    this.origin = null;
    this.center = project(105, 35);
    this.zoom = 4;
    this.touched = false; // once people pan or zoom, new data no longer refits
    this.w = 300;
    this.h = 300;
    this.pending = false;
    new ResizeObserver(() => this.resize()).observe(container);
    this.resize();
    this.listen();
  }

  resize() {
    this.w = Math.max(1, this.container.clientWidth);
    this.h = Math.max(1, this.container.clientHeight);
    this.svg.setAttribute("viewBox", `0 0 ${this.w} ${this.h}`);
    if (!this.touched) this.fit(false);
    this.render();
  }

  scale() {
    return TILE * 2 ** this.zoom;
  }

  toScreen([mx, my]) {
    const s = this.scale();
    return [(mx - this.center[0]) * s + this.w / 2, (my - this.center[1]) * s + this.h / 2];
  }

  toWorld([sx, sy]) {
    const s = this.scale();
    return [this.center[0] + (sx - this.w / 2) / s, this.center[1] + (sy - this.h / 2) / s];
  }

  base(m) {
    if (!this.origin) this.origin = m;
    const k = TILE * 2 ** BASE_ZOOM;
    return [((m[0] - this.origin[0]) * k).toFixed(1), ((m[1] - this.origin[1]) * k).toFixed(1)];
  }

  /** Grid cells: a GeoJSON FeatureCollection of Polygons with property code. */
  setCells(fc) {
    this.cellLayer.replaceChildren();
    this.cells.clear();
    this.cellBox = [];
    const seen = (m) => {
      const b = this.cellBox;
      if (!b.length) b.push(m, m);
      else b.splice(0, 2, [Math.min(b[0][0], m[0]), Math.min(b[0][1], m[1])], [Math.max(b[1][0], m[0]), Math.max(b[1][1], m[1])]);
      return this.base(m).join(",");
    };
    for (const f of (fc && fc.features) || []) {
      const code = String((f.properties && f.properties.code) || "");
      const d = rings(f.geometry)
        .map((ring) => "M" + ring.map(([lon, lat]) => seen(project(lon, lat))).join("L") + "Z")
        .join("");
      if (!d) continue;
      const path = el("path", { d, class: "cell", "data-code": code }, this.cellLayer);
      el("title", {}, path).textContent = `网格 grid ${code}`;
      this.cells.set(code, path);
    }
    if (!this.touched) this.fit(false);
    this.render();
  }

  /** Cells with open alerts, coloured by the worst severity. */
  markCells(severityByCode) {
    for (const [code, path] of this.cells) {
      const sev = severityByCode.get(code);
      path.classList.toggle("hot-red", sev === "red");
      path.classList.toggle("hot-yellow", sev === "yellow");
    }
  }

  /** Officers: [{officer, state, position: {lon, lat} | null}]. */
  setOfficers(list) {
    const seen = new Set();
    for (const o of list) {
      seen.add(o.officer);
      this.upsert(o);
    }
    for (const [id, entry] of this.officers) {
      if (!seen.has(id)) {
        entry.node.remove();
        entry.label.remove();
        this.officers.delete(id);
      }
    }
    if (!this.touched) this.fit(false);
    this.render();
  }

  upsert(o) {
    let entry = this.officers.get(o.officer);
    if (!entry) {
      const node = el("g", { class: "officer", "data-officer": o.officer }, this.officerLayer);
      el("circle", { r: 8 }, node);
      el("title", {}, node);
      const label = el("text", { class: "officer-label", dx: 11, dy: 4 }, this.labelLayer);
      label.textContent = o.officer;
      entry = { data: o, node, label };
      this.officers.set(o.officer, entry);
    }
    entry.data = { ...entry.data, ...o };
    const state = entry.data.state || "unknown";
    entry.node.setAttribute("class", `officer st-${state}`);
    entry.node.setAttribute("data-state", state);
    const colour = stateColour(state);
    if (colour) entry.node.style.setProperty("--st", colour);
    else entry.node.style.removeProperty("--st");
    entry.node.querySelector("title").textContent = `${o.officer} · ${state}`;
    return entry;
  }

  /** A live position: move the officer's marker without a reload. */
  move(officer, lon, lat) {
    const entry = this.officers.get(officer);
    if (!entry) return false;
    entry.data.position = { ...(entry.data.position || {}), lon, lat };
    this.render();
    return true;
  }

  bounds() {
    let box = null;
    const add = ([x, y]) => {
      box = box ? [Math.min(box[0], x), Math.min(box[1], y), Math.max(box[2], x), Math.max(box[3], y)] : [x, y, x, y];
    };
    for (const m of this.cellBox) add(m);
    for (const { data } of this.officers.values()) {
      if (data.position) add(project(data.position.lon, data.position.lat));
    }
    return box;
  }

  /** Show all cells and officers. */
  fit(byPerson = true) {
    if (byPerson) this.touched = false;
    const box = this.bounds();
    if (!box) return;
    this.center = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2];
    const span = Math.max((box[2] - box[0]) / (this.w * 0.85), (box[3] - box[1]) / (this.h * 0.85), 1e-12);
    this.zoom = Math.max(MIN_ZOOM, Math.min(17, Math.log2(1 / (span * TILE))));
    this.render();
  }

  zoomAbout(point, zoom) {
    const before = this.toWorld(point);
    this.zoom = Math.max(MIN_ZOOM, Math.min(MAX_ZOOM, zoom));
    const s = this.scale();
    this.center = [before[0] - (point[0] - this.w / 2) / s, before[1] - (point[1] - this.h / 2) / s];
    this.touched = true;
    this.render();
  }

  zoomBy(delta) {
    this.zoomAbout([this.w / 2, this.h / 2], this.zoom + delta);
  }

  render() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    if (this.origin) {
      const k = 2 ** (this.zoom - BASE_ZOOM);
      const [tx, ty] = this.toScreen(this.origin);
      this.cellLayer.setAttribute("transform", `matrix(${k} 0 0 ${k} ${tx} ${ty})`);
    }
    const shown = [...this.officers.values()].map((e) => {
      const p = e.data.position;
      e.node.toggleAttribute("hidden", !p);
      e.label.toggleAttribute("hidden", !p);
      return p ? { ...e, at: this.toScreen(project(p.lon, p.lat)) } : null;
    });
    const placed = shown.filter(Boolean).map(({ at: [x, y] }) => [x - 9, y - 9, x + 9, y + 9]);
    for (const entry of shown) {
      if (!entry) continue;
      const { data, node, label } = entry;
      const [x, y] = entry.at;
      node.setAttribute("transform", `translate(${x.toFixed(1)} ${y.toFixed(1)})`);
      const [lx, ly] = this.freeSpot(placed, x, y, data.officer.length * 7.5);
      label.setAttribute("x", lx.toFixed(1));
      label.setAttribute("y", ly.toFixed(1));
    }
    this.drawTiles();
  }

  /** Where a name of about `width` pixels fits beside (x, y) without covering another. */
  freeSpot(placed, x, y, width) {
    const tries = [[0, 0], [0, 15], [0, -15], [-width - 22, 0], [0, 30], [0, -30]];
    for (const [dx, dy] of tries) {
      const box = [x + 11 + dx, y - 10 + dy, x + 11 + dx + width, y + 5 + dy];
      if (!placed.some((o) => box[0] < o[2] && o[0] < box[2] && box[1] < o[3] && o[1] < box[3])) {
        placed.push(box);
        return [x + dx, y + dy];
      }
    }
    return [x, y];
  }

  drawTiles() {
    if (!this.tilesUrl) return;
    const z = Math.max(0, Math.min(MAX_TILE_ZOOM, Math.round(this.zoom)));
    const n = 2 ** z;
    const size = TILE * 2 ** (this.zoom - z);
    const [x0, y0] = this.toWorld([0, 0]).map((v) => Math.floor(v * n));
    const [x1, y1] = this.toWorld([this.w, this.h]).map((v) => Math.floor(v * n));
    const wanted = new Set();
    for (let x = Math.max(0, x0); x <= Math.min(n - 1, x1); x++) {
      for (let y = Math.max(0, y0); y <= Math.min(n - 1, y1); y++) {
        const key = `${z}/${x}/${y}`;
        wanted.add(key);
        let img = this.tiles.get(key);
        if (img === null) continue; // failed before
        if (!img) img = this.addTile(key, z, x, y);
        const [sx, sy] = this.toScreen([x / n, y / n]);
        img.setAttribute("x", sx.toFixed(1));
        img.setAttribute("y", sy.toFixed(1));
        img.setAttribute("width", (size + 0.5).toFixed(1));
        img.setAttribute("height", (size + 0.5).toFixed(1));
      }
    }
    for (const [key, img] of this.tiles) {
      if (!wanted.has(key) && img) {
        img.remove();
        this.tiles.delete(key);
      }
    }
  }

  addTile(key, z, x, y) {
    const href = this.tilesUrl.replace("{z}", z).replace("{x}", x).replace("{y}", y);
    const img = el("image", { href, class: "tile", preserveAspectRatio: "none" }, this.tileLayer);
    img.addEventListener("load", () => {
      this.tileLoads += 1;
      img.classList.add("loaded");
    });
    img.addEventListener("error", () => {
      img.remove();
      this.tiles.set(key, null);
      this.tileFails += 1;
      if (this.note && this.tileLoads === 0) {
        this.note.textContent = "底图加载失败，显示矢量地图 (tiles unavailable: vector map)";
        this.note.hidden = false;
      }
    });
    this.tiles.set(key, img);
    return img;
  }

  listen() {
    const pointers = new Map();
    let pinch = null;
    const local = (e) => {
      const r = this.svg.getBoundingClientRect();
      return [e.clientX - r.left, e.clientY - r.top];
    };
    this.svg.addEventListener("pointerdown", (e) => {
      this.svg.setPointerCapture(e.pointerId);
      pointers.set(e.pointerId, local(e));
      pinch = null;
    });
    this.svg.addEventListener("pointermove", (e) => {
      const last = pointers.get(e.pointerId);
      if (!last) return;
      const now = local(e);
      pointers.set(e.pointerId, now);
      if (pointers.size === 1) {
        const s = this.scale();
        this.center = [this.center[0] - (now[0] - last[0]) / s, this.center[1] - (now[1] - last[1]) / s];
        this.touched = true;
        this.render();
      } else if (pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        const dist = Math.hypot(a[0] - b[0], a[1] - b[1]);
        const mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
        if (pinch) this.zoomAbout(mid, pinch.zoom + Math.log2(dist / pinch.dist));
        else pinch = { dist: Math.max(dist, 1), zoom: this.zoom };
      }
    });
    const up = (e) => {
      pointers.delete(e.pointerId);
      pinch = null;
    };
    this.svg.addEventListener("pointerup", up);
    this.svg.addEventListener("pointercancel", up);
    this.svg.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        this.zoomAbout(local(e), this.zoom - Math.sign(e.deltaY) * 0.5);
      },
      { passive: false },
    );
  }
}
