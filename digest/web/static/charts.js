// Draws a chart above every <table class="chart-data"> with uPlot (vendor/uplot.iife.min.js).
// The table stays: it is the chart's figures for screen readers, for copying, and for a browser
// without JavaScript. Series differ by dash pattern and point shape as well as colour, and the
// legend names each one, so the chart reads without colour.
(function () {
  "use strict";
  var STROKES = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0f766e", "#4b5563"];
  var DASHES = [[], [8, 4], [2, 3], [12, 3, 2, 3], [4, 4], [1, 5], [10, 6]];
  var POINTS = [5, 7, 6, 8, 5, 7, 6];

  function number(cell) {
    var value = cell.getAttribute("data-value");
    return value === null || value === "" ? null : Number(value);
  }

  function readTable(table) {
    var heads = table.querySelectorAll("thead th");
    var names = [];
    for (var i = 1; i < heads.length; i++) names.push(heads[i].textContent.trim());
    var xs = [], labels = [], columns = names.map(function () { return []; });
    table.querySelectorAll("tbody tr").forEach(function (row, index) {
      var head = row.querySelector("th");
      var x = head && head.getAttribute("data-x");
      xs.push(x === null || x === undefined ? index : Number(x));
      labels.push(head ? head.textContent.trim() : String(index));
      row.querySelectorAll("td").forEach(function (cell, column) {
        if (column < columns.length) columns[column].push(number(cell));
      });
    });
    return { names: names, xs: xs, labels: labels, columns: columns };
  }

  function options(table, data, width) {
    var time = table.getAttribute("data-x-kind") === "time";
    var series = [{ label: table.getAttribute("data-x-label") || "" }];
    data.names.forEach(function (name, i) {
      series.push({
        label: name,
        stroke: STROKES[i % STROKES.length],
        dash: DASHES[i % DASHES.length],
        width: 2,
        points: { show: true, size: POINTS[i % POINTS.length] },
      });
    });
    var xAxis = { stroke: "#374151" };
    if (!time) {
      xAxis.values = function (u, splits) {
        return splits.map(function (s) { return data.labels[s] === undefined ? "" : data.labels[s]; });
      };
      xAxis.incrs = [1, 2, 4, 8, 13, 26, 52];
    }
    return {
      width: width,
      height: Math.max(180, Math.round(width / 3)),
      scales: { x: { time: time } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      axes: [xAxis, { stroke: "#374151" }],
      series: series,
    };
  }

  function draw(table) {
    var holder = document.createElement("div");
    holder.className = "chart-canvas";
    holder.setAttribute("aria-hidden", "true");
    table.parentNode.insertBefore(holder, table);
    var data = readTable(table);
    var width = Math.max(280, holder.clientWidth || 600);
    var plot = new uPlot(options(table, data, width), [data.xs].concat(data.columns), holder);
    window.addEventListener("resize", function () {
      var w = Math.max(280, holder.clientWidth || 600);
      plot.setSize({ width: w, height: Math.max(180, Math.round(w / 3)) });
    });
    table.setAttribute("data-chart-drawn", "true");
  }

  function drawAll(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("table.chart-data:not([data-chart-drawn])").forEach(draw);
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSwap", function (event) { drawAll(event.target); });
})();
