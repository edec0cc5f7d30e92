// cartd's client matrix: ioredis (tests/tests/client_matrix.rs runs it; RESP2, as ioredis speaks).
//
//     node ioredis.js HOST PORT PASSWORD cart|plain
//
// Prints one JSON object: what each step observed, or {"error": ...} for a step that threw.
// The test decides what passes.
"use strict";

const Redis = require("ioredis");
const m = require("./matrix");

function connect(options = {}) {
  return new Redis({ host: m.host, port: m.port, lazyConnect: true, ...options });
}

async function handshake(redis) {
  return {
    status: redis.status,
    hello: m.helloFields(await redis.call("HELLO")),
    ...m.clientInfo(await redis.call("CLIENT", "INFO")),
  };
}

async function cartStep(redis) {
  const key = "cart:matrix:cart";
  const out = {
    add: await redis.call("CART.ADD", key, "sku-1", "-", "2", "PRICE", "1299", "CURRENCY", "USD"),
    get: await redis.call("CART.GET", key, "NOVALIDATE"),
    json: await redis.call("CART.GET", key, "FORMAT", "JSON"),
    missing: await redis.call("CART.GET", "cart:matrix:nobody"),
    refused: null,
  };
  try {
    await redis.call("CART.SET", key, "nope", "-", "1");
  } catch (error) {
    out.refused = m.describe(error);
  }
  return out;
}

async function pipeline(redis) {
  const pipe = redis.pipeline();
  for (const command of m.pipelineCommands()) pipe.call(...command);
  const results = await pipe.exec();
  const replies = results.map(([error, reply]) => error || reply);
  const states = [];
  for (const key of m.pipelineKeys()) states.push(await redis.call(...m.stateCommand(key)));
  return m.summarizePipeline(replies, states);
}

async function watch(redis) {
  const key = "cart:matrix:watched";
  const other = connect();
  await other.connect();
  await redis.watch(key);
  const clean = await redis.multi().call(...m.add(key, "first")).exec();
  await redis.watch(key);
  await other.call(...m.add(key, "other"));
  const second = await redis.multi().call(...m.add(key, "second")).exec();
  other.disconnect();
  const [lines] = m.linesAndVersion(await redis.call(...m.stateCommand(key)));
  return {
    clean: clean && clean.map(([error, reply]) => (error ? m.describe(error) : reply)),
    aborted: second === null,
    reported_as: second === null ? "null" : JSON.stringify(second),
    lines,
  };
}

async function refused(call) {
  try {
    await call();
    return null;
  } catch (error) {
    return m.describe(error);
  }
}

async function acl() {
  const user = connect({ username: m.USER, password: m.password });
  await user.connect();
  // ioredis reports a refused AUTH as an "error" event; connect() then only says it closed.
  const wrong = connect({ username: m.USER, password: "wrong", maxRetriesPerRequest: 0, retryStrategy: () => null });
  const wrongError = m.waitFor((deliver) => wrong.once("error", deliver));
  const out = {
    whoami: await user.call("ACL", "WHOAMI"),
    added: await user.call(...m.add("cart:matrix:acl", "sku-1")),
    refused_command: await refused(() => user.call("SAVE")),
    refused_key: await refused(() => user.call(...m.add("other:matrix:acl", "sku-1"))),
    wrong_password: await refused(() => wrong.connect()),
  };
  out.wrong_password = m.describe((await wrongError) || new Error(out.wrong_password));
  user.disconnect();
  wrong.disconnect();
  return out;
}

async function pubsub(redis) {
  const sub = redis.duplicate();
  try {
    await sub.connect();
    const message = m.waitFor((deliver) => sub.on("message", (channel, data) => deliver({ channel, data })));
    const subscribed = await sub.subscribe("matrix.news");
    const published = await redis.call("PUBLISH", "matrix.news", "hello");
    const pmessage = m.waitFor((deliver) =>
      sub.on("pmessage", (pattern, channel, data) => deliver({ channel, data, pattern })),
    );
    const out = { subscribed: subscribed >= 1, published, message: await message };
    const psubscribed = await sub.psubscribe("matrix.p.*");
    const ppublished = await redis.call("PUBLISH", "matrix.p.sale", "half-price");
    return { ...out, psubscribed: psubscribed >= 1, ppublished, pmessage: await pmessage };
  } finally {
    sub.disconnect();
  }
}

(async () => {
  const redis = connect();
  await redis.connect(); // resolves once ioredis's ready check (INFO) passed
  const out = { client: "ioredis", version: require("ioredis/package.json").version, protocol: 2 };
  const steps = [
    ["handshake", () => handshake(redis)],
    ["pipeline", () => pipeline(redis)],
    ["watch", () => watch(redis)],
    ["pubsub", () => pubsub(redis)],
    ["acl", acl],
  ];
  if (m.cart) steps.splice(1, 0, ["cart", () => cartStep(redis)]);
  await m.runSteps(out, steps);
  redis.disconnect();
  m.emit(out);
  process.exit(0); // a wait that never got its message still holds a timer
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
