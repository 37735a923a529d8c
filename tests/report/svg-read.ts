// Reads the drawn geometry back out of a chart SVG for the report tests: series paths as point lists and the
// axis ticks as (label value, pixel position), so a test can check a value against the axis a reader sees.
// Deliberately independent of the renderer's code: it only parses the SVG text.

export interface DrawnSeries { name: string; style: string; subpaths: [number, number][][] }
export interface Tick { value: number; pos: number }

export function drawnSeries(svg: string): DrawnSeries[] {
  const out: DrawnSeries[] = [];
  for (const m of svg.matchAll(/<path class="series (\w+)" data-series="([^"]*)" d="([^"]*)"/g)) {
    const subpaths: [number, number][][] = [];
    for (const cmd of m[3].matchAll(/([ML])(-?[\d.]+) (-?[\d.]+)/g)) {
      if (cmd[1] === "M") subpaths.push([]);
      subpaths[subpaths.length - 1].push([Number(cmd[2]), Number(cmd[3])]);
    }
    out.push({ name: m[2].replace(/&amp;/g, "&"), style: m[1], subpaths });
  }
  return out;
}

export function pointsOf(svg: string, name: string): [number, number][] {
  const s = drawnSeries(svg).find((d) => d.name === name);
  if (!s) throw new Error(`no series ${name} in the SVG`);
  return s.subpaths.flat();
}

/** A tick label as a reader reads it: "0.25", "2.5e-6", "5k", "1.5M". */
export function labelValue(label: string): number {
  const m = /^(-?[\d.]+(?:e-?\d+)?)([kMG]?)$/.exec(label);
  if (!m) return NaN;
  return Number(m[1]) * ({ "": 1, k: 1e3, M: 1e6, G: 1e9 } as Record<string, number>)[m[2]];
}

/** Tick label values and their pixel positions on one axis (y: translate(0,Y); x: translate(X,0)). */
export function ticks(svg: string, axis: "x" | "y"): Tick[] {
  const group = new RegExp(`<g class="${axis}-axis">([\\s\\S]*?)</g>\\s*(<g class="x-axis">|<path class="frame")`).exec(svg);
  if (!group) throw new Error(`no ${axis}-axis group`);
  const out: Tick[] = [];
  for (const m of group[1].matchAll(/<g class="tick" transform="translate\((-?[\d.]+),(-?[\d.]+)\)">[\s\S]*?<text[^>]*>([^<]*)<\/text><\/g>/g)) {
    out.push({ value: labelValue(m[3]), pos: Number(axis === "x" ? m[1] : m[2]) });
  }
  return out;
}

/** The pixel position of `v` on an axis, interpolated from its first and last tick labels. */
export function pixelOf(t: readonly Tick[], v: number): number {
  const a = t[0], b = t[t.length - 1];
  return a.pos + ((v - a.value) * (b.pos - a.pos)) / (b.value - a.value);
}
