// The forecast explorer: reads /explorer/options and /explorer/view (same origin only) and
// draws them with Plotly (served by the API itself). No data is computed here: the chart and
// the tables show the numbers the API answers, as they come.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const FORECAST_COLUMNS = [
    "fecha", "price", "mean", "p_change", "lower_95", "lower_80", "upper_80", "upper_95",
    "n_series",
  ];
  const HISTORY_COLUMNS = ["fecha", "precio", "n_series", "suspect", "p_glitch", "settled"];
  const ACCURACY_COLUMNS = [
    "month", "scored", "mae_ratio", "rmse_ratio", "coverage_80", "coverage_95",
  ];
  let options = null;
  let request = 0;

  function detailText(body) {
    if (body && Array.isArray(body.detail)) {
      return body.detail.map((d) => `${d.loc[d.loc.length - 1]}: ${d.msg}`).join("; ");
    }
    return (body && body.detail) || "the API did not answer";
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(`${response.status}: ${detailText(body)}`);
    return body;
  }

  function fill(select, values, labels) {
    const previous = select.value;
    select.replaceChildren(...values.map((value, i) => {
      const option = document.createElement("option");
      option.value = value;
      option.textContent = labels ? labels[i] : value;
      return option;
    }));
    if (values.includes(previous)) select.value = previous;
  }

  function text(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "boolean") return value ? "yes" : "no";
    return String(value);
  }

  function table(id, columns, rows, marked) {
    const element = $(id);
    const head = document.createElement("tr");
    for (const column of columns) {
      const th = document.createElement("th");
      th.textContent = column;
      head.appendChild(th);
    }
    element.tHead.replaceChildren(head);
    element.tBodies[0].replaceChildren(...rows.map((row) => {
      const tr = document.createElement("tr");
      if (marked && marked(row)) tr.className = "suspect";
      for (const column of columns) {
        const td = document.createElement("td");
        td.textContent = text(row[column]);
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  function query() {
    const scope = $("scope").value;
    const params = new URLSearchParams({ scope, tipo: $("tipo").value, canal: $("canal").value });
    if (scope !== "nation") params.set("estado", $("estado").value);
    if (scope === "series") params.set("ciudad", $("ciudad").value);
    return params.toString();
  }

  function rounded(value, digits) {
    return typeof value === "number" ? value.toFixed(digits) : "?";
  }

  function showModel(model) {
    const facts = [
      ["version", `${model.name} v${model.version}`],
      ["trained", model.trained_at ? model.trained_at.replace("T", " ").slice(0, 19) + " UTC" : "?"],
      ["validation month", model.validation_month],
      ["trained on", Object.entries(model.trained_on).map(([k, v]) => `${k}: ${v}`).join("; ")],
      ["validation MAE / naive", rounded(model.validation.mae_ratio_to_naive, 3)],
      ["validation RMSE / naive", rounded(model.validation.rmse_ratio_to_naive, 3)],
      ["validation coverage 80 % / 95 %",
        `${rounded(model.validation.coverage_80, 3)} / ${rounded(model.validation.coverage_95, 3)}`],
      ["data cut-off", model.cutoff],
      ["intervals", model.interval_method],
      ["dependence (aggregates)", rounded(model.aggregate_dependence, 3)],
    ];
    $("model").replaceChildren(...facts.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }));
  }

  function cities() {
    const estado = $("estado").value;
    const names = options.series.filter((s) => s.estado === estado).map((s) => s.ciudad);
    fill($("ciudad"), [...new Set(names)].sort());
  }

  function traces(view) {
    const past = view.history;
    const ahead = view.forecast;
    const x = ahead.map((p) => p.fecha);
    const band = (level, color) => [
      { name: `lower ${level}%`, x, y: ahead.map((p) => p[`lower_${level}`]), mode: "lines",
        line: { width: 0 }, showlegend: false, hoverinfo: "skip", type: "scatter" },
      { name: `upper ${level}%`, x, y: ahead.map((p) => p[`upper_${level}`]), mode: "lines",
        line: { width: 0 }, fill: "tonexty", fillcolor: color, type: "scatter",
        legendgroup: `band${level}` },
    ];
    const suspect = past.filter((p) => p.suspect > 0);
    const out = [
      { name: "published", x: past.map((p) => p.fecha), y: past.map((p) => p.precio),
        mode: "lines+markers", marker: { size: 4 }, line: { color: "#222" }, type: "scatter" },
      { name: "suspect readings", x: suspect.map((p) => p.fecha), y: suspect.map((p) => p.precio),
        mode: "markers", type: "scatter",
        marker: { size: view.scope === "series" ? 11 : 6, color: "#e08000", symbol: "x" },
        text: suspect.map((p) => (p.n_series > 1 ? `${p.suspect} suspect of ${p.n_series}`
          : `suspect, p_glitch ${p.p_glitch}${p.settled ? `, settled: ${p.settled}` : ""}`)) },
      ...band(95, "rgba(31,119,180,0.18)"),
      ...band(80, "rgba(31,119,180,0.38)"),
      { name: "median (price)", x, y: ahead.map((p) => p.price), mode: "lines+markers",
        marker: { size: 4 }, line: { color: "#1f77b4" }, type: "scatter" },
      { name: "mean", x, y: ahead.map((p) => p.mean), mode: "lines",
        line: { color: "#ff7f0e", dash: "dash" }, type: "scatter" },
    ];
    if (view.anchor) {
      out.push({ name: view.anchor.suspect ? "anchor (suspect)" : "anchor",
        x: [view.anchor.anchor_date], y: [view.anchor.anchor], mode: "markers",
        marker: { size: 12, symbol: "diamond-open", color: view.anchor.suspect ? "#e08000" : "#2ca02c" },
        type: "scatter" });
    }
    return out;
  }

  function describe(view) {
    const where = view.scope === "nation" ? "Nation"
      : view.scope === "state" ? view.estado : `${view.ciudad}, ${view.estado}`;
    $("title").textContent = `${where}: ${view.tipo} / ${view.canal}`;
    const parts = [
      `${view.n_series} series; data cut-off ${view.cutoff}; model v${view.model_version}.`,
      `Bands: ${view.interval}.`,
    ];
    if (view.anchor) {
      const a = view.anchor;
      parts.push(`Anchor ${a.anchor} on ${a.anchor_date}` +
        (a.suspect ? ` (suspect: p_glitch ${a.p_glitch}).` : " (trusted)."));
      const first = view.forecast[0];
      if (first) parts.push(`Probability the price changes by ${first.fecha}: ${first.p_change}.`);
    } else if (view.suspect_anchors) {
      parts.push(`${view.suspect_anchors} of the series start from a suspect anchor.`);
    }
    $("summary").textContent = parts.join(" ");
  }

  async function show() {
    const wanted = query();
    const mine = ++request;
    document.body.dataset.state = "loading";
    $("csv").href = `/explorer/view.csv?${wanted}`;
    try {
      const view = await getJSON(`/explorer/view?${wanted}`);
      if (mine !== request) return;
      $("error").hidden = true;
      describe(view);
      await Plotly.react("chart", traces(view), {
        margin: { t: 20, r: 20 }, yaxis: { title: { text: "MXN per litre" } },
        legend: { orientation: "h" }, hovermode: "x unified",
      }, { displaylogo: false, responsive: true });
      table("forecast-table", FORECAST_COLUMNS, view.forecast);
      table("history-table", HISTORY_COLUMNS, view.history, (row) => row.suspect > 0);
      document.body.dataset.view = wanted;
      document.body.dataset.state = "ready";
    } catch (error) {
      if (mine !== request) return;
      $("error").textContent = error.message;
      $("error").hidden = false;
      document.body.dataset.view = wanted;
      document.body.dataset.state = "error";
    }
  }

  function scopeChanged() {
    const scope = $("scope").value;
    $("estado-label").hidden = scope === "nation";
    $("ciudad-label").hidden = scope !== "series";
  }

  async function start() {
    try {
      options = await getJSON("/explorer/options");
    } catch (error) {
      $("error").textContent = error.message;
      $("error").hidden = false;
      document.body.dataset.state = "error";
      return;
    }
    showModel(options.model);
    $("accuracy-note").textContent = options.accuracy_note || "";
    table("accuracy-table", ACCURACY_COLUMNS, options.accuracy);
    const first = options.series[0];
    fill($("estado"), options.estados);
    fill($("tipo"), options.tipos);
    fill($("canal"), options.canales);
    if (first) {
      $("estado").value = first.estado;
      $("tipo").value = first.tipo;
      $("canal").value = first.canal;
    }
    cities();
    if (first) $("ciudad").value = first.ciudad;
    $("scope").addEventListener("change", () => { scopeChanged(); show(); });
    $("estado").addEventListener("change", () => { cities(); show(); });
    for (const id of ["ciudad", "tipo", "canal"]) $(id).addEventListener("change", show);
    scopeChanged();
    await show();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
