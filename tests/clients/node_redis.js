// cartd's client matrix: node-redis (the npm package `redis`), major version 4 or 5, installed
// side by side as `redis4` and `redis5` (tests/tests/client_matrix.rs runs it).
//
//     node node_redis.js HOST PORT PASSWORD cart|plain 4|5 2|3
//
// RESP3 (`RESP: 3`, a HELLO 3 handshake) is node-redis 5's; node-redis 4 speaks RESP2. Prints
// one JSON object: what each step observed, or {"error": ...} for a step that threw. The test
// decides what passes.
"use strict";

const m = require("./matrix");

const major = Number(process.argv[6]);
const protocol = Number(process.argv[7]);
if (major !== 4 && major !== 5) throw new Error(`node-redis major version is 4 or 5, not ${major}`);
if (protocol === 3 && major !== 5) throw new Error("node-redis 4 speaks RESP2 only");
const redis = require(`redis${major}`);

function connect(options = {}) {
  const client = redis.createClient({
    socket: { host: m.host, port: m.port, reconnectStrategy: false },
    ...(protocol === 3 ? { RESP: 3 } : {}),
    ...options,
  });
  // node-redis emits connection errors as events as well; the calls below report them.
  client.on("error", () => {});
  return client;
}

async function handshake(client) {
  return {
    ready: client.isReady,
    hello: m.helloFields(await client.sendCommand(["HELLO"])),
    ...m.clientInfo(await client.sendCommand(["CLIENT", "INFO"])),
  };
}

async function cartStep(client) {
  const key = "cart:matrix:cart";
  const out = {
    add: await client.sendCommand(["CART.ADD", key, "sku-1", "-", "2", "PRICE", "1299", "CURRENCY", "USD"]),
    get: await client.sendCommand(["CART.GET", key, "NOVALIDATE"]),
    json: await client.sendCommand(["CART.GET", key, "FORMAT", "JSON"]),
    missing: await client.sendCommand(["CART.GET", "cart:matrix:nobody"]),
    refused: null,
  };
  try {
    await client.sendCommand(["CART.SET", key, "nope", "-", "1"]);
  } catch (error) {
    out.refused = m.describe(error);
  }
  return out;
}

async function pipeline(client) {
  const multi = client.multi();
  for (const command of m.pipelineCommands()) multi.addCommand(command);
  const replies = await multi.execAsPipeline();
  const states = [];
  for (const key of m.pipelineKeys()) states.push(await client.sendCommand(m.stateCommand(key)));
  return m.summarizePipeline(replies, states);
}

async function watch(client) {
  const key = "cart:matrix:watched";
  const other = connect();
  await other.connect();
  await client.watch(key);
  const clean = await client.multi().addCommand(m.add(key, "first")).exec();
  await client.watch(key);
  await other.sendCommand(m.add(key, "other"));
  let aborted = false;
  let reportedAs = "executed";
  try {
    await client.multi().addCommand(m.add(key, "second")).exec();
  } catch (error) {
    aborted = error instanceof redis.WatchError;
    reportedAs = m.describe(error);
  }
  await other.quit();
  const [lines] = m.linesAndVersion(await client.sendCommand(m.stateCommand(key)));
  return { clean, aborted, reported_as: reportedAs, lines };
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
  const out = {
    whoami: await user.sendCommand(["ACL", "WHOAMI"]),
    added: await user.sendCommand(m.add("cart:matrix:acl", "sku-1")),
    refused_command: await refused(() => user.sendCommand(["SAVE"])),
    refused_key: await refused(() => user.sendCommand(m.add("other:matrix:acl", "sku-1"))),
    wrong_password: await refused(() => connect({ username: m.USER, password: "wrong" }).connect()),
  };
  await user.quit();
  return out;
}

async function pubsub(client) {
  const sub = client.duplicate();
  sub.on("error", () => {});
  await sub.connect();
  try {
    let deliverMessage;
    const message = m.waitFor((deliver) => (deliverMessage = deliver));
    await sub.subscribe("matrix.news", (data, channel) => deliverMessage({ channel, data }));
    const published = await client.sendCommand(["PUBLISH", "matrix.news", "hello"]);
    const out = { subscribed: true, published, message: await message };
    // node-redis hands a pattern's messages to that pattern's listener, without the pattern.
    let deliverPmessage;
    const pmessage = m.waitFor((deliver) => (deliverPmessage = deliver));
    await sub.pSubscribe("matrix.p.*", (data, channel) =>
      deliverPmessage({ channel, data, pattern: "matrix.p.*" }),
    );
    const ppublished = await client.sendCommand(["PUBLISH", "matrix.p.sale", "half-price"]);
    return { ...out, psubscribed: true, ppublished, pmessage: await pmessage };
  } finally {
    await sub.disconnect();
  }
}

(async () => {
  const client = connect();
  await client.connect();
  const out = {
    client: `node-redis ${major}`,
    version: require(`redis${major}/package.json`).version,
    protocol: protocol === 3 ? 3 : 2,
  };
  const steps = [
    ["handshake", () => handshake(client)],
    ["pipeline", () => pipeline(client)],
    ["watch", () => watch(client)],
    ["pubsub", () => pubsub(client)],
    ["acl", acl],
  ];
  if (m.cart) steps.splice(1, 0, ["cart", () => cartStep(client)]);
  await m.runSteps(out, steps);
  await client.disconnect();
  m.emit(out);
  process.exit(0); // a wait that never got its message still holds a timer
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
