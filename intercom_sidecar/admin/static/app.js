// The live event view: polls this sidecar's JSON API every second and renders it. No framework, no build step.
// Every value from the API is written with textContent (never innerHTML): event data is never markup.
"use strict";

const POLL_MS = 1000;
const REPLAY_HEADERS = { "Content-Type": "application/json", "X-Intercom-Sidecar": "replay" };

const state = {
  revision: 0,
  capacity: 0,
  events: new Map(), // record id -> event, as last received
  expanded: new Set(), // record ids whose Intercom requests are shown
  deadLetters: [],
  filter: "",
  timer: null,
};

// DOM helpers ---------------------------------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function byId(id) {
  return document.getElementById(id);
}

function clock(seconds) {
  if (seconds === null || seconds === undefined) return "";
  return new Date(seconds * 1000).toISOString().slice(11, 23);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function badge(value, title, text) {
  return el("span", { className: `badge status-${value || "none"}`, text: text ?? (value || "-"), title: title || null });
}

// Fetching ------------------------------------------------------------------------------------------------------

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

async function poll() {
  clearTimeout(state.timer);
  try {
    const [events, status, letters] = await Promise.all([
      getJSON(`/api/events?since=${state.revision}`),
      getJSON("/api/status"),
      getJSON("/api/dead-letters"),
    ]);
    mergeEvents(events);
    renderStatus(status);
    state.deadLetters = letters.dead_letters;
    renderDeadLetters(letters);
    setConnection(true);
  } catch (error) {
    setConnection(false, String(error));
  } finally {
    state.timer = setTimeout(poll, POLL_MS);
  }
}

function setConnection(live, problem) {
  const pill = byId("connection");
  pill.textContent = live ? "live" : "disconnected";
  pill.className = `pill ${live ? "pill-on" : "pill-off"}`;
  pill.title = live ? "Polls this sidecar every second" : problem || "";
}

// Events --------------------------------------------------------------------------------------------------------

function mergeEvents(data) {
  const changed = data.events.length > 0 || data.capacity !== state.capacity;
  for (const event of data.events) state.events.set(event.id, event);
  for (const id of state.events.keys()) {
    if (id < data.oldest_id) {
      state.events.delete(id);
      state.expanded.delete(id);
    }
  }
  state.revision = data.revision;
  state.capacity = data.capacity;
  if (changed) renderEvents();
}

function matches(event, filter) {
  if (!filter) return true;
  const fields = [
    event.message_id, event.user_id, event.event_name, event.call_type, event.ack_status, event.outcome,
    event.trace_id, event.source,
  ];
  return fields.some((field) => (field || "").toLowerCase().includes(filter));
}

function renderEvents() {
  const body = document.querySelector("#events tbody");
  const rows = [];
  const events = [...state.events.values()].sort((a, b) => b.id - a.id).filter((e) => matches(e, state.filter));
  for (const event of events) {
    rows.push(eventRow(event));
    if (state.expanded.has(event.id)) rows.push(detailRow(event));
  }
  body.replaceChildren(...rows);
  byId("events-empty").hidden = state.events.size > 0;
  byId("events-note").textContent = state.capacity
    ? `(last ${state.capacity} kept; ${state.events.size} shown${state.filter ? ", filtered" : ""})`
    : "(recording is off: INTERCOM_SIDECAR_ADMIN_RECENT_EVENTS=0)";
}

function eventRow(event) {
  const expanded = state.expanded.has(event.id);
  const outcome = event.outcome || (event.ack_status === "accepted" ? "pending" : "");
  const outcomeTitle = [event.outcome_status ? `HTTP ${event.outcome_status}` : "", event.outcome_reason]
    .filter(Boolean)
    .join(": ");
  const row = el(
    "tr",
    {
      className: `event${expanded ? " expanded" : ""}`,
      "data-record-id": event.id,
      "data-message-id": event.message_id,
      tabindex: 0,
      "aria-expanded": expanded,
      title: "Show the Intercom requests of this event",
      onclick: () => toggle(event.id),
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          toggle(event.id);
        }
      },
    },
    el("td", { className: "time", text: clock(event.received_at) }),
    el("td", { className: "mono", text: event.message_id }, event.source !== "intake" ? el("span", { className: "source", text: event.source }) : null),
    el("td", { text: event.call_type || "?" }),
    el("td", { text: event.event_name }),
    el("td", { className: "mono", text: event.user_id }),
    el("td", { className: "ack" }, badge(event.ack_status, event.ack_reason)),
    el("td", { className: "outcome" }, badge(outcome, outcomeTitle), attemptsNote(event), reasonNote(event)),
    el("td", { className: "num", text: event.requests.length + event.requests_dropped }),
    el("td", { className: "mono trace", text: event.trace_id }),
  );
  return row;
}

function reasonNote(event) {
  // Why it did not go through: the delivery's reason, or the ack's when the event never reached the queue.
  const reason = event.outcome ? event.outcome_reason : event.ack_status !== "accepted" ? event.ack_reason : "";
  return reason ? el("div", { className: "reason-note", text: reason, title: reason }) : null;
}

function attemptsNote(event) {
  return event.attempts > 1 ? el("span", { className: "note", text: ` after ${event.attempts} attempts` }) : null;
}

function detailRow(event) {
  const reasons = el("dl", { className: "reasons" });
  const add = (label, value) => {
    if (value) reasons.append(el("dt", { text: label }), el("dd", { text: value }));
  };
  add("ack reason", event.ack_reason);
  add("outcome", [event.outcome, event.outcome_status ? `HTTP ${event.outcome_status}` : ""].filter(Boolean).join(" "));
  add("outcome reason", event.outcome_reason);
  add("acked at", clock(event.acked_at));
  add("finished at", clock(event.finished_at));
  add("trace id", event.trace_id);

  const requests = el(
    "table",
    { className: "requests" },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ...["at (UTC)", "attempt", "method", "route", "status", "duration", "request id", "error"].map((h) =>
          el("th", { text: h }),
        ),
      ),
    ),
    el(
      "tbody",
      {},
      ...event.requests.map((call) =>
        el(
          "tr",
          {},
          el("td", { className: "time", text: clock(call.at) }),
          el("td", { className: "num", text: call.attempt }),
          el("td", { text: call.method }),
          el("td", { className: "mono", text: call.route }),
          el("td", {}, badge(httpClass(call.status), null, call.status === null ? call.error || "no answer" : call.status)),
          el("td", { className: "num", text: `${call.duration_ms.toFixed(1)} ms` }),
          el("td", { className: "mono", text: call.request_id }),
          el("td", { text: call.error }),
        ),
      ),
    ),
  );
  const note = event.requests_dropped
    ? el("p", { className: "note", text: `${event.requests_dropped} earlier requests not kept.` })
    : null;
  const none = event.requests.length ? null : el("p", { className: "note", text: "No Intercom requests (yet)." });
  return el(
    "tr",
    { className: "detail", "data-detail-for": event.id },
    el("td", { colspan: 9 }, reasons, none, note, event.requests.length ? requests : null),
  );
}

function httpClass(status) {
  if (status === null || status === undefined) return "error";
  if (status < 300) return "ok";
  if (status === 429 || status >= 500) return "retry";
  return "error";
}

function toggle(id) {
  if (state.expanded.has(id)) state.expanded.delete(id);
  else state.expanded.add(id);
  renderEvents();
}

// Status --------------------------------------------------------------------------------------------------------

function renderStatus(status) {
  byId("queue-depth").textContent = String(status.queue_depth);
  byId("oldest-age").textContent = status.queue_depth ? age(status.oldest_age_seconds) : "-";
  byId("in-flight").textContent = `${status.in_flight} / ${status.concurrency_limit}`;
  const limit = status.rate_limit;
  let text = "no headers seen yet";
  if (limit.blocked_until) text = `429: blocked for ${age(limit.blocked_until - status.now)}`;
  else if (limit.remaining !== null) text = `${Math.floor(limit.remaining)} left, resets in ${age(limit.reset_in_seconds)}`;
  byId("rate-limit").textContent = text;
  byId("rate-limit").title = `time spent waiting on the rate limit: ${age(limit.waited_seconds)}`;
  for (const [name, value] of Object.entries(status.counts)) {
    const node = byId(`count-${name}`);
    if (node) node.textContent = String(value);
  }
  const banner = byId("paused");
  banner.hidden = !status.paused;
  banner.textContent = status.paused ? `Delivery is paused: ${status.paused}` : "";
}

// Dead letters --------------------------------------------------------------------------------------------------

function renderDeadLetters(data) {
  const letters = data.dead_letters;
  const rows = letters.map((letter) =>
    el(
      "tr",
      { "data-message-id": letter.message_id },
      el("td", { className: "time", text: clock(letter.dead_at) }),
      el("td", { className: "mono", text: letter.message_id }),
      el("td", { text: letter.call_type || "?" }),
      el("td", { className: "mono", text: letter.user_id }),
      el(
        "td",
        {},
        badge(httpClass(letter.status), null, letter.status ?? "no answer"),
        el("span", { className: "note", text: ` ${letter.code}` }),
      ),
      el("td", { className: "num", text: letter.attempts }),
      el("td", { className: "reason", text: letter.reason }),
      el("td", { className: "mono trace", text: letter.trace_id }),
      el(
        "td",
        {},
        el("button", {
          type: "button",
          className: "replay",
          "data-action": "replay",
          text: "Replay",
          title: "Send this event again",
          onclick: (e) => replay({ message_ids: [letter.message_id] }, e.currentTarget),
        }),
      ),
    ),
  );
  document.querySelector("#dead-letters tbody").replaceChildren(...rows);
  byId("dlq-empty").hidden = letters.length > 0;
  byId("dlq-count").textContent = letters.length ? `(${letters.length}${data.truncated ? "+" : ""})` : "";
  byId("replay-all").disabled = letters.length === 0;
}

async function replay(body, button) {
  const message = byId("replay-message");
  if (button) button.disabled = true;
  try {
    const response = await fetch("/api/dead-letters/replay", {
      method: "POST",
      headers: REPLAY_HEADERS,
      body: JSON.stringify(body),
    });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    message.textContent = `Replayed ${data.replayed} dead letter${data.replayed === 1 ? "" : "s"}.`;
    message.className = "message ok";
  } catch (error) {
    message.textContent = `Replay failed: ${error.message}`;
    message.className = "message error";
  } finally {
    if (button) button.disabled = false;
    poll();
  }
}

// Start ---------------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  byId("replay-all").addEventListener("click", (e) => replay({ all: true }, e.currentTarget));
  byId("filter").addEventListener("input", (e) => {
    state.filter = e.target.value.trim().toLowerCase();
    renderEvents();
  });
  poll();
});
