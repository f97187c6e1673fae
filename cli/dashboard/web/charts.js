// meshctl dashboard: a time series chart (uPlot, vendored, a classic script).

import { append, el } from './dom.js';

export class Chart {
  constructor(container, title, series, yFmt) {
    this.container = container;
    this.series = series;
    this.yFmt = yFmt;
    this.plot = null;
    this.title = el('div', { class: 'title', text: title });
    this.nodata = el('div', { class: 'nodata', text: 'no data yet' });
    this.body = el('div');
    append(container, [this.title, this.nodata, this.body]);
  }

  set(data) {
    const has = data[0].length > 0;
    this.nodata.hidden = has;
    if (typeof window.uPlot !== 'function') {
      this.nodata.hidden = false;
      this.nodata.textContent = 'the chart library (vendor/uPlot.iife.min.js) did not load';
      return;
    }
    if (!this.plot) {
      if (!has) return;
      const fmt = this.yFmt;
      this.plot = new window.uPlot({
        width: this.width(),
        height: 170,
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        series: [{}, ...this.series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.6,
          spanGaps: false,
          points: { show: false },
          value: (u, v) => (v === null || v === undefined ? '–' : fmt(v)),
        }))],
        axes: [
          { space: 70, values: (u, vals) => vals.map((v) => new Date(v * 1000).toLocaleTimeString([], { hour12: false })) },
          { size: 56, values: (u, vals) => vals.map((v) => fmt(v)) },
        ],
      }, data, this.body);
    } else {
      this.plot.setData(data);
    }
  }

  width() { return Math.max(260, this.container.clientWidth - 14); }

  resize() { if (this.plot) this.plot.setSize({ width: this.width(), height: 170 }); }

  destroy() { if (this.plot) this.plot.destroy(); this.plot = null; }
}
