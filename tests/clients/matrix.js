// What ioredis.js and node_redis.js share: the arguments, the commands of each step in either
// mode, and the one JSON object they print. tests/clients/matrix.py explains the two modes: `cart`
// drives cartd with CART.ADD (its reply: the cart's version), `plain` drives a real
// redis-server with RPUSH on lists (its reply: the list's length, rising as a version does).
"use strict";

const [host, portText, password, mode] = process.argv.slice(2, 6);
if (mode !== "cart" && mode !== "plain") throw new Error(`mode is cart or plain, not ${mode}`);
const cart = mode === "cart";
const port = Number(portText);

const USER = "matrix";
const PIPELINE_COMMANDS = 1000;
const PIPELINE_CARTS = 10;
const WAIT_MS = 5000;

/** The command that adds one line (one unit) to a cart, or one element to a list. */
function add(key, line) {
  if (cart) return ["CART.ADD", key, line, "-", "1", "PRICE", "100", "CURRENCY", "USD", "REPLY", "VERSION"];
  return ["RPUSH", key, line];
}

/** 1,000 adds: 100 distinct lines in each of 10 carts. */
function pipelineCommands() {
  const commands = [];
  for (let i = 0; i < PIPELINE_COMMANDS; i++) {
    commands.push(add(`cart:matrix:pipe:${i % PIPELINE_CARTS}`, `sku-${Math.floor(i / PIPELINE_CARTS)}`));
  }
  return commands;
}

function pipelineKeys() {
  return Array.from({ length: PIPELINE_CARTS }, (_, cartIndex) => `cart:matrix:pipe:${cartIndex}`);
}

/** What reads a cart's lines and version back (parsed by `linesAndVersion`). */
function stateCommand(key) {
  return cart ? ["CART.GET", key, "NOVALIDATE", "FORMAT", "JSON"] : ["LLEN", key];
}

function linesAndVersion(reply) {
  if (cart) {
    const view = JSON.parse(reply);
    return [view.items.length, view.version];
  }
  return [Number(reply), Number(reply)];
}

/** `replies`: each reply, or an Error for a command the server refused. */
function summarizePipeline(replies, states) {
  const integers = replies.filter((reply) => typeof reply === "number");
  const parsed = states.map(linesAndVersion);
  return {
    replies: replies.length,
    integers: integers.length,
    sum: integers.reduce((total, n) => total + n, 0),
    errors: replies.filter((reply) => reply instanceof Error).slice(0, 3).map(describe),
    lines: parsed.reduce((total, [lines]) => total + lines, 0),
    versions: parsed.map(([, version]) => version),
  };
}

/** The fields of CLIENT INFO the handshake sets. */
function clientInfo(text) {
  const fields = {};
  for (const field of String(text).trim().split(" ")) {
    const at = field.indexOf("=");
    if (at > 0) fields[field.slice(0, at)] = field.slice(at + 1);
  }
  return { resp: Number(fields.resp || 0), lib_name: fields["lib-name"] || "", lib_ver: fields["lib-ver"] || "" };
}

/** server, version and proto of a HELLO reply (a map in RESP3, a flat array in RESP2). */
function helloFields(reply) {
  let fields = reply;
  if (Array.isArray(reply)) {
    fields = {};
    for (let i = 0; i + 1 < reply.length; i += 2) fields[String(reply[i])] = reply[i + 1];
  } else if (reply instanceof Map) {
    fields = Object.fromEntries(reply);
  }
  return { server: String(fields.server), version: String(fields.version), proto: Number(fields.proto) };
}

function describe(error) {
  // Some clients' error classes (node-redis's WatchError) keep Error's name.
  const kind = error.name && error.name !== "Error" ? error.name : error.constructor.name;
  return `${kind}: ${error.message}`;
}

/** Resolves with what `arm` delivers (it gets a `deliver` callback), or null after WAIT_MS. */
function waitFor(arm) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), WAIT_MS);
    arm((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/** Runs each step in order; a step that throws is reported as {"error": ...}, not swallowed. */
async function runSteps(out, steps) {
  for (const [name, step] of steps) {
    try {
      out[name] = await step();
    } catch (error) {
      out[name] = { error: describe(error) };
    }
  }
}

function emit(out) {
  console.log(JSON.stringify(out));
}

module.exports = {
  host, port, password, cart, USER, WAIT_MS,
  add, pipelineCommands, pipelineKeys, stateCommand, linesAndVersion, summarizePipeline,
  clientInfo, helloFields, describe, waitFor, runSteps, emit,
};
