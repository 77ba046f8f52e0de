#!/usr/bin/env node
// A minimal intercom-sidecar client: open EventService.Stream, send an identify and a track, print one ack per
// event, and exit non-zero unless every ack is STATUS_ACCEPTED (or DELIVERED with --ack-mode delivered).
//
//   node send.js [--target 127.0.0.1:50051] [--user-id user-42] [--traceparent 00-<trace>-<span>-01]
//                [--ack-mode accepted|delivered]
//
// The .proto files are loaded at run time from ../../proto (no code generation step).
"use strict";

const path = require("node:path");
const { randomUUID } = require("node:crypto");
const { parseArgs } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_ROOT = path.resolve(__dirname, "..", "..", "proto");
const OK = { accepted: ["STATUS_ACCEPTED"], delivered: ["STATUS_DELIVERED"] };

function loadService() {
  const definition = protoLoader.loadSync("intercom_sidecar/v1/service.proto", {
    includeDirs: [PROTO_ROOT],
    keepCase: true, // field names as in the .proto: message_id, user_id, ...
    enums: String, // Ack.status as "STATUS_ACCEPTED"
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).intercom_sidecar.v1.EventService;
}

// A JavaScript value as a google.protobuf.Value; an object as a google.protobuf.Struct. The well-known types come
// from protobufjs's built-in definitions, whose field names are camelCase even with keepCase.
function toValue(value) {
  if (value === null || value === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof value === "boolean") return { boolValue: value };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([key, value]) => [key, toValue(value)])) };
}

function timestampNow() {
  const millis = Date.now();
  return { seconds: Math.floor(millis / 1000), nanos: (millis % 1000) * 1e6 };
}

function events(userId) {
  const run = randomUUID();
  return [
    {
      message_id: `node-identify-${run}`,
      user_id: userId,
      timestamp: timestampNow(),
      identify: { traits: toStruct({ email: `${userId}@example.com`, plan: "pro" }) },
    },
    {
      message_id: `node-track-${run}`,
      user_id: userId,
      timestamp: timestampNow(),
      track: { event: "Order Completed", properties: toStruct({ revenue: 19.99, currency: "USD" }) },
    },
  ];
}

function main() {
  const { values } = parseArgs({
    options: {
      target: { type: "string", default: process.env.INTERCOM_SIDECAR_LISTEN || "127.0.0.1:50051" },
      "user-id": { type: "string", default: "user-42" },
      traceparent: { type: "string" },
      "ack-mode": { type: "string", default: "accepted" },
    },
  });
  if (!(values["ack-mode"] in OK)) {
    console.error(`send.js: --ack-mode must be accepted or delivered, got ${values["ack-mode"]}`);
    process.exit(2);
  }
  const EventService = loadService();
  const client = new EventService(values.target, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set("x-ack-mode", values["ack-mode"]);
  if (values.traceparent) metadata.set("traceparent", values.traceparent); // W3C trace context: continue your trace

  const sent = events(values["user-id"]);
  const acks = [];
  const call = client.Stream(metadata, { deadline: Date.now() + 30_000 });
  call.on("data", (ack) => {
    acks.push(ack);
    console.log([ack.message_id, ack.status.replace(/^STATUS_/, ""), ack.trace_id, ack.reason].join("\t"));
  });
  call.on("error", (error) => {
    console.error(`send.js: ${values.target}: ${grpc.status[error.code]}: ${error.details}`);
    process.exitCode = 2;
  });
  call.on("end", () => {
    client.close();
    const good = acks.filter((ack) => OK[values["ack-mode"]].includes(ack.status)).length;
    if (acks.length !== sent.length || good !== sent.length) process.exitCode = process.exitCode || 1;
  });
  for (const event of sent) call.write(event);
  call.end(); // half-close: the sidecar answers every event, then ends the stream
}

main();
