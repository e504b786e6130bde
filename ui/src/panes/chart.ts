// The fine-tune chart: training loss (left axis) and held-out perplexity (right axis) by step,
// drawn with uPlot in the theme's colours.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  loss: Map<number, number>;
  ppl: Map<number, number>;
}

/** uPlot's aligned columns from the two sparse series: steps, loss, perplexity (null gaps). */
export function alignSeries(series: Series): [number[], (number | null)[], (number | null)[]] {
  const steps = [...new Set([...series.loss.keys(), ...series.ppl.keys()])].sort((a, b) => a - b);
  return [steps, steps.map((s) => series.loss.get(s) ?? null), steps.map((s) => series.ppl.get(s) ?? null)];
}

function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

export class TrainingChart {
  private plot: uPlot | null = null;
  private readonly series: Series = { loss: new Map(), ppl: new Map() };
  private frame = 0;
  private readonly resize: ResizeObserver | null;

  constructor(private readonly host: HTMLElement) {
    // the host gets its size when the pane or the chart box is shown: draw (or fit) then, so a
    // chart filled while hidden (re-attaching to a finished job) is not left empty
    this.resize = typeof ResizeObserver === "undefined" ? null : new ResizeObserver(() => this.refit());
    this.resize?.observe(host);
  }

  reset(history: { step: number; loss: number }[] = [], evals: { step: number; heldoutPpl: number }[] = []): void {
    this.series.loss = new Map(history.map((p) => [p.step, p.loss]));
    this.series.ppl = new Map(evals.map((p) => [p.step, p.heldoutPpl]));
    this.schedule();
  }

  addLoss(step: number, loss: number): void {
    this.series.loss.set(step, loss);
    this.schedule();
  }

  addPerplexity(step: number, ppl: number): void {
    this.series.ppl.set(step, ppl);
    this.schedule();
  }

  isEmpty(): boolean {
    return this.series.loss.size === 0 && this.series.ppl.size === 0;
  }

  /** Rebuilds the chart (e.g. after the theme changed). */
  rebuild(): void {
    this.plot?.destroy();
    this.plot = null;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private size(): { width: number; height: number } {
    return { width: Math.max(200, this.host.clientWidth), height: 180 };
  }

  private fit(): void {
    if (this.plot && this.host.clientWidth > 0) this.plot.setSize(this.size());
  }

  private draw(): void {
    const data = alignSeries(this.series);
    if (this.plot) {
      this.plot.setData(data);
      return;
    }
    if (this.host.clientWidth === 0) return; // hidden: drawn when shown
    const text = cssVar("--text-muted", "#777");
    const grid = cssVar("--border", "#ddd");
    const lossColor = cssVar("--accent", "#3b6fd8");
    const pplColor = cssVar("--chart-2", "#c2703d");
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: `11px ${cssVar("--ui-font", "sans-serif")}` };
    this.plot = new uPlot(
      {
        ...this.size(),
        cursor: { drag: { x: false, y: false } },
        legend: { show: true, live: true },
        scales: { x: { time: false }, loss: { auto: true }, ppl: { auto: true } },
        series: [
          { label: "Step" },
          { label: "Loss", scale: "loss", stroke: lossColor, width: 1.6, points: { show: false }, spanGaps: true },
          { label: "Held-out ppl", scale: "ppl", stroke: pplColor, width: 1.6, points: { show: true, size: 5, fill: pplColor }, spanGaps: true },
        ],
        axes: [
          { ...axis },
          { ...axis, scale: "loss", label: "loss", labelSize: 14 },
          { ...axis, scale: "ppl", side: 1, grid: { show: false }, label: "ppl", labelSize: 14 },
        ],
      },
      data,
      this.host,
    );
  }

  refit(): void {
    if (!this.plot) this.schedule();
    else this.fit();
  }
}
