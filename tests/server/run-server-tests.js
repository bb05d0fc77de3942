// run-server-tests.js: the `server` suite. Starts `reverie-cli serve` on a free
// loopback port with a small model, waits for /health, runs images.test.js
// (the OpenAI Node SDK against it), then checks the graceful shutdown: on
// SIGTERM a running job finishes (or, past the grace time, is cancelled) and
// the server exits with status 0.
//
// usage: node run-server-tests.js PATH/TO/reverie-cli
// Exits 77 (skipped) when the OpenAI SDK is not installed or no model exists.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const SKIP = 77;
const CLI = process.argv[2];
const KEY = 'sk-reverie-test-key';
const QUEUE = 3;
const children = new Set();

function skip(why) {
  console.log(`1..0 # SKIP ${why}`);
  process.exit(SKIP);
}

function log(msg) {
  console.log(`# ${msg}`);
}

// The embedded model when it is there, else the golden tiny models (random
// weights: noise images, but every code path runs). The folders are passed
// as they are: no links into the source tree are made.
function modelArgs() {
  const src = process.env.REVERIE_SOURCE_DIR;
  if (src && fs.existsSync(path.join(src, 'data', 'models', 'reverie-tiny', 'decoder')))
    return { args: [], name: 'the embedded model reverie-tiny' };
  const ref = process.env.REVERIE_REFERENCE_DIR;
  const golden = ref && path.join(ref, 'models');
  const parts = ['prior', 'decoder', 'decoder-inpaint'].map((p) =>
    golden && path.join(golden, `kandinsky-2-2-${p}-tiny`));
  if (parts.every((p) => p && fs.existsSync(p)))
    return { args: ['--prior', parts[0], '--decoder', parts[1], '--inpaint-decoder', parts[2]],
             name: 'the golden tiny models' };
  return null;
}

// A second model set "installed" in a fresh XDG_DATA_HOME without the
// network: the golden tiny models (hard-linked, else copied) laid out as
// `reverie-cli models pull` leaves a set, with a manifest. → its name, or
// null when the golden models are not there.
const EXTRA_SET = 'ref-tiny';
const EXTRA_INSTALLED = '2024-05-01T12:00:00Z';

function linkTree(from, to) {
  fs.mkdirSync(to, { recursive: true });
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    const a = path.join(from, e.name), b = path.join(to, e.name);
    if (e.isDirectory())
      linkTree(a, b);
    else {
      try {
        fs.linkSync(a, b);
      } catch {
        fs.copyFileSync(a, b);
      }
    }
  }
}

function installExtraSet(dataHome) {
  const ref = process.env.REVERIE_REFERENCE_DIR;
  const parts = ['prior', 'decoder', 'decoder-inpaint'];
  const golden = parts.map((p) => ref && path.join(ref, 'models', `kandinsky-2-2-${p}-tiny`));
  if (!golden.every((p) => p && fs.existsSync(p)))
    return null;
  const dir = path.join(dataHome, 'reverie', 'models', EXTRA_SET);
  parts.forEach((p, i) => linkTree(golden[i], path.join(dir, p)));
  fs.writeFileSync(path.join(dir, '.reverie-manifest.json'), JSON.stringify({
    format: 1, name: EXTRA_SET, variant: 'full', endpoint: 'https://huggingface.co',
    installed: EXTRA_INSTALLED, files: [],
  }));
  return EXTRA_SET;
}

// Starts a server; resolves with { child, url, stderr(), exited } once /health answers.
async function startServer(extra) {
  const child = spawn(CLI, ['serve', '--host', '127.0.0.1', '--port', '0', ...extra],
                      { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => {
    children.delete(child);
    resolve({ code, signal });
  }));
  const url = await new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = /^Listening on (http:\/\/\S+)$/.exec(line);
      if (m) resolve(m[1]);
    });
    exited.then(({ code }) => reject(new Error(`the server exited (${code}) before listening:\n${err}`)));
  });
  const end = Date.now() + 120e3;
  for (;;) {
    try {
      const res = await fetch(`${url}/health`);
      if (res.status === 200)
        break;
    } catch {
      // not accepting yet
    }
    if (Date.now() > end)
      throw new Error(`/health did not answer within 120 s:\n${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, url, exited, stderr: () => err };
}

async function waitRunning(url) {
  const end = Date.now() + 120e3;
  while (Date.now() < end) {
    const h = await (await fetch(`${url}/health`)).json();
    if (h.queue.running === 1)
      return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the job never started');
}

function generate(url, body) {
  return fetch(`${url}/v1/images/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'shutdown test', size: '64x64', response_format: 'b64_json', ...body }),
  });
}

function check(ok, what) {
  if (!ok)
    throw new Error(what);
  console.log(`ok - ${what}`);
}

// SIGTERM while a job runs: the job finishes and is answered, then the server
// exits 0; with a grace time shorter than the job, it is cancelled with 503.
async function shutdownChecks(server, common) {
  let pending = generate(server.url, { steps: 12 });
  await waitRunning(server.url);
  server.child.kill('SIGTERM');
  let res = await pending;
  const body = await res.json();
  check(res.status === 200 && body.data.length === 1 && body.data[0].b64_json.length > 100,
        `SIGTERM: the running job finishes and is answered (${res.status})`);
  let exit = await server.exited;
  check(exit.code === 0, `SIGTERM: the server exits cleanly (code ${exit.code}, signal ${exit.signal})`);
  check(/shutting down/.test(server.stderr()) && /"POST \/v1\/images\/generations HTTP\/1.1" 200/.test(server.stderr()),
        'the shutdown and the request are in the log');
  check(/"POST \/v1\/images\/generations HTTP\/1.1" 404 \d+ [\d.]+s model_not_found model="nope"/.test(server.stderr()),
        'a request for an unknown model is in the log, with the id');

  const short = await startServer([...common, '--shutdown-grace', '1', '--url-ttl', '2']);
  res = await generate(short.url, { response_format: 'url' });
  const { url } = (await res.json()).data[0];
  const made = Date.now();
  check((await fetch(url)).status === 200, 'a url result is served');
  await new Promise((r) => setTimeout(r, Math.max(0, made + 3000 - Date.now())));
  check((await fetch(url)).status === 404, 'a url result is gone after its expiry');

  pending = generate(short.url, { steps: 500 });
  await waitRunning(short.url);
  short.child.kill('SIGTERM');
  res = await pending;
  const err = await res.json();
  check(res.status === 503 && err.error.code === 'shutting_down' && err.error.type === 'server_error',
        `SIGTERM past the grace time: the job is cancelled with 503 (${res.status})`);
  exit = await short.exited;
  check(exit.code === 0, `SIGTERM past the grace time: the server exits cleanly (code ${exit.code})`);
}

async function main() {
  if (!CLI)
    throw new Error('usage: node run-server-tests.js PATH/TO/reverie-cli');
  try {
    require.resolve('openai');
  } catch {
    skip('the OpenAI Node SDK is not installed: run npm ci in the build directory\'s ' +
         'tests/server folder (tools/run-tests.sh does)');
  }
  const model = modelArgs();
  if (!model)
    skip('no model: neither data/models/reverie-tiny nor the golden tiny models are there');
  log(`model: ${model.name}`);

  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'reverie-server-test-'));
  // the servers (and the CLI the tests start) find installed sets here
  const dataHome = fs.mkdtempSync(path.join(os.tmpdir(), 'reverie-server-data-'));
  process.env.XDG_DATA_HOME = dataHome;
  const extra = installExtraSet(dataHome);
  log(extra ? `installed set: ${extra} (the golden tiny models)` : 'no second set: the golden tiny models are not there');
  const common = [...model.args, '--api-key', KEY, '--steps', '2', '--prior-steps', '2',
                  '--default-size', '64x64', '--store', store];
  let server;
  let status = 1;
  try {
    server = await startServer([...common, '--queue', String(QUEUE), '--max-body-mb', '1']);
    log(`server at ${server.url}`);
    const runner = spawn(process.execPath, ['--test', path.join(__dirname, 'images.test.js')], {
      stdio: 'inherit',
      env: {
        ...process.env,
        REVERIE_TEST_URL: server.url,
        REVERIE_TEST_KEY: KEY,
        REVERIE_TEST_QUEUE: String(QUEUE),
        REVERIE_CLI: CLI,
        REVERIE_TEST_MODEL_ARGS: JSON.stringify(model.args),
        REVERIE_TEST_EXTRA_SET: extra ?? '',
        REVERIE_TEST_EXTRA_INSTALLED: EXTRA_INSTALLED,
      },
    });
    children.add(runner);
    const code = await new Promise((resolve) => runner.on('exit', (c) => resolve(c)));
    children.delete(runner);
    if (code !== 0)
      throw new Error(`images.test.js failed (exit ${code})`);
    await shutdownChecks(server, common);
    status = 0;
  } catch (e) {
    console.log(`not ok - ${e.message}`);
  } finally {
    for (const c of children)
      c.kill('SIGKILL');
    if (server) {
      log('server log (stderr):');
      for (const line of server.stderr().trimEnd().split('\n').slice(-60))
        log(`  ${line}`);
    }
    fs.rmSync(store, { recursive: true, force: true });
    fs.rmSync(dataHome, { recursive: true, force: true });
  }
  process.exit(status);
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const c of children)
      c.kill('SIGKILL');
    process.exit(1);
  });
}

main();
