// images.test.js: the Images API of `reverie-cli serve` through the official
// OpenAI Node SDK (and raw HTTP where the SDK cannot send what is tested).
// Started by run-server-tests.js, which passes the server in the environment.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const { OpenAI, toFile } = require('openai');
const png = require('./png.js');

const BASE = process.env.REVERIE_TEST_URL;
const KEY = process.env.REVERIE_TEST_KEY;
const QUEUE = Number(process.env.REVERIE_TEST_QUEUE);
const CLI = process.env.REVERIE_CLI;
const MODEL_ARGS = JSON.parse(process.env.REVERIE_TEST_MODEL_ARGS || '[]');
// a second set installed in the server's XDG_DATA_HOME ('' when there is none)
const EXTRA_SET = process.env.REVERIE_TEST_EXTRA_SET || '';
const EXTRA_INSTALLED = process.env.REVERIE_TEST_EXTRA_INSTALLED;
const SIZE = 64;

// No retries: a 429 or 5xx must reach the test as it is.
const client = new OpenAI({ apiKey: KEY, baseURL: `${BASE}/v1`, maxRetries: 0, timeout: 600e3 });

// ---- helpers ----

function pngOf(b64) {
  const buf = Buffer.from(b64, 'base64');
  return png.decode(buf);
}

function assertImage(img, width = SIZE, height = SIZE) {
  assert.equal(img.width, width);
  assert.equal(img.height, height);
  assert.ok(img.channels === 3 || img.channels === 4);
}

// A test picture: a gradient with a few shapes, opaque.
function picture(width = SIZE, height = SIZE, channels = 4) {
  const pixels = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * channels;
      const inSquare = x > width / 4 && x < width / 2 && y > height / 4 && y < height / 2;
      pixels[p] = inSquare ? 230 : (x * 255) / width;
      pixels[p + 1] = inSquare ? 40 : (y * 255) / height;
      pixels[p + 2] = 128;
      if (channels === 4) pixels[p + 3] = 255;
    }
  return { width, height, channels, pixels };
}

// Alpha 0 inside [x0, x1) × [y0, y1), 255 elsewhere.
function withHole(img, x0, y0, x1, y1) {
  const out = { ...img, pixels: Uint8Array.from(img.pixels) };
  for (let y = y0; y < y1; y++)
    for (let x = x0; x < x1; x++) out.pixels[(y * img.width + x) * 4 + 3] = 0;
  return out;
}

const file = (buf, name = 'image.png') => toFile(buf, name, { type: 'image/png' });

// Awaits a rejected SDK call and checks the HTTP status and OpenAI's error shape.
async function rejects(promise, status, { code, param, type } = {}) {
  let err;
  try {
    await promise;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected HTTP ${status}, the call succeeded`);
  assert.equal(err.status, status, `status: ${err.message}`);
  assertErrorShape(err.error, { code, param, type: type ?? (status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error') });
  return err;
}

function assertErrorShape(e, { code, param, type }) {
  assert.equal(typeof e, 'object');
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  if (type !== undefined) assert.equal(e.type, type);
  if (code !== undefined) assert.equal(e.code, code);
  if (param !== undefined) assert.equal(e.param, param);
}

// Raw HTTP for what the SDK does not send; → { status, body, headers }.
async function raw(path, { method = 'POST', headers = {}, body, key = KEY } = {}) {
  const h = { ...headers };
  if (key) h.Authorization = `Bearer ${key}`;
  const res = await fetch(`${BASE}${path}`, { method, headers: h, body });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, body: json, text, headers: res.headers };
}

async function health() {
  const res = await fetch(`${BASE}/health`);
  assert.equal(res.status, 200);
  return res.json();
}

// Polls /health until pred holds (the server's queue changes as jobs move).
async function until(pred, what, seconds = 120) {
  const end = Date.now() + seconds * 1000;
  for (;;) {
    const h = await health();
    if (pred(h)) return h;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function multipart(boundary, parts) {
  const chunks = [];
  for (const p of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"` +
                            (p.filename ? `; filename="${p.filename}"\r\nContent-Type: image/png` : '') +
                            '\r\n\r\n'));
    chunks.push(Buffer.isBuffer(p.value) ? p.value : Buffer.from(String(p.value)));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

// ---- the model list and health ----

test('GET /v1/models lists the model sets in OpenAI\'s list shape', async () => {
  const r = await raw('/v1/models', { method: 'GET' });
  assert.equal(r.status, 200);
  assert.deepEqual(Object.keys(r.body).sort(), ['data', 'object']);
  assert.equal(r.body.object, 'list');
  for (const m of r.body.data) {
    assert.deepEqual(Object.keys(m).sort(), ['created', 'id', 'object', 'owned_by']);
    assert.equal(m.object, 'model');
    assert.equal(m.owned_by, 'reverie');
    assert.ok(Number.isInteger(m.created) && m.created >= 0, `created: ${m.created}`);
  }

  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.ok(ids.includes('dall-e-2'), ids.join());
  assert.ok(ids.includes('reverie-tiny'), ids.join());
  assert.equal(new Set(ids).size, ids.length, `an id listed twice: ${ids.join()}`);
  if (EXTRA_SET) {
    assert.ok(ids.includes(EXTRA_SET), ids.join());
    const m = r.body.data.find((x) => x.id === EXTRA_SET);
    assert.equal(m.created, Date.parse(EXTRA_INSTALLED) / 1000, 'created: the install time');
  }
});

test('GET /v1/models/{id}: one set, or 404 model_not_found', async () => {
  const tiny = await client.models.retrieve('reverie-tiny');
  assert.equal(tiny.id, 'reverie-tiny');
  assert.equal(tiny.object, 'model');
  assert.equal(tiny.owned_by, 'reverie');
  assert.equal((await client.models.retrieve('dall-e-2')).id, 'dall-e-2');
  if (EXTRA_SET)
    assert.equal((await client.models.retrieve(EXTRA_SET)).id, EXTRA_SET);
  const err = await rejects(client.models.retrieve('nope'), 404,
                            { code: 'model_not_found', param: null, type: 'invalid_request_error' });
  assert.ok(err instanceof OpenAI.NotFoundError, err.constructor.name);
  assert.equal(err.error.message, "The model 'nope' does not exist");
  await rejects(client.models.retrieve('no-such-model'), 404, { code: 'model_not_found' });
  // not a way out of the models folder
  const r = await raw('/v1/models/..%2F..%2Fetc', { method: 'GET' });
  assert.ok(r.status === 400 || r.status === 404, `${r.status}`);
});

test('GET /health needs no key', async () => {
  const h = await health();
  assert.equal(h.status, 'ok');
  assert.equal(h.queue.depth, QUEUE);
});

// ---- generations ----

test('generate, b64_json: n images of the requested size with their seeds', async () => {
  // Reverie's extensions pass through the SDK as extra body fields
  const res = await client.images.generate({
    model: 'dall-e-2', prompt: 'a red circle on a blue background', n: 2,
    size: `${SIZE}x${SIZE}`, response_format: 'b64_json', seed: 1234, steps: 3, prior_steps: 3,
    guidance: 3.5, prior_guidance: 2, negative_prompt: 'blurry', scheduler: 'ddim',
  });
  assert.ok(Number.isInteger(res.created));
  assert.equal(res.data.length, 2);
  res.data.forEach((d, i) => {
    assert.equal(d.url, undefined);
    const img = pngOf(d.b64_json);
    assertImage(img);
    assert.equal(d.seed, 1234 + i);
    // the recipe travels in the PNG
    assert.equal(img.text['reverie:seed'], String(1234 + i));
    assert.equal(img.text['reverie:kind'], 'generate');
    assert.equal(img.text['reverie:negative_prompt'], 'blurry');
    assert.equal(img.text['reverie:scheduler'], 'ddim');
    assert.equal(Number(img.text['reverie:decoder_steps']), 3);
    assert.equal(Number(img.text['reverie:prior_steps']), 3);
    assert.equal(Number(img.text['reverie:decoder_guidance']), 3.5);
    assert.equal(Number(img.text['reverie:prior_guidance']), 2);
  });
});

test('generate, url: the image is served by the same server', async () => {
  const res = await client.images.generate({
    prompt: 'a green triangle', size: `${SIZE}x${SIZE}`, response_format: 'url',
  });
  assert.equal(res.data.length, 1);
  const { url, seed } = res.data[0];
  assert.ok(url.startsWith(`${BASE}/files/`), url);
  assert.match(url, /\/files\/[0-9a-f]{32}\.png$/);
  assert.ok(Number.isInteger(seed));
  const got = await fetch(url);
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('content-type'), 'image/png');
  assertImage(png.decode(Buffer.from(await got.arrayBuffer())));
  // names are unguessable and nothing else is served from the store
  for (const bad of ['00000000000000000000000000000000.png', 'x.png', `${url.slice(-36, -4)}.PNG`]) {
    const r = await raw(`/files/${bad}`, { method: 'GET', key: null });
    assert.equal(r.status, 404, bad);
    assertErrorShape(r.body.error, { code: 'not_found' });
  }
  // (libsoup itself refuses paths that climb out with 400)
  const r = await raw('/files/..%2F..%2Fetc%2Fpasswd', { method: 'GET', key: null });
  assert.ok(r.status === 400 || r.status === 404, `${r.status}`);
});

test('generate with no size gives the default size; the same seed gives the same image', async () => {
  const model = (await client.models.list()).data.find((m) => m.id !== 'dall-e-2').id;
  const a = await client.images.generate({ model, prompt: 'two squares', response_format: 'b64_json', seed: 99, steps: 2 });
  const b = await client.images.generate({ prompt: 'two squares', response_format: 'b64_json', seed: 99, steps: 2 });
  assertImage(pngOf(a.data[0].b64_json));
  assert.deepEqual(pngOf(a.data[0].b64_json).pixels, pngOf(b.data[0].b64_json).pixels);
});

// ---- model sets ----

test('model: absent, dall-e-2 and reverie-tiny generate; an unknown id is 404 before any work', async () => {
  for (const model of [undefined, 'dall-e-2', 'reverie-tiny']) {
    const r = await client.images.generate({ model, prompt: 'a blue square', size: '64x64',
                                             response_format: 'b64_json', seed: 3 });
    assert.equal(r.data.length, 1, `model ${model}`);
    assertImage(pngOf(r.data[0].b64_json));
  }
  const before = (await health()).jobs;
  const err = await rejects(client.images.generate({ model: 'nope', prompt: 'x' }), 404,
                            { code: 'model_not_found', param: null, type: 'invalid_request_error' });
  assert.ok(err instanceof OpenAI.NotFoundError, err.constructor.name);
  assert.equal(err.error.message, "The model 'nope' does not exist");
  await rejects(client.images.generate({ model: 'dall-e-3', prompt: 'x' }), 404, { code: 'model_not_found' });
  await rejects(client.images.createVariation({ model: 'nope', image: await file(png.encode(picture())) }),
                404, { code: 'model_not_found' });
  await rejects(client.images.edit({ model: 'nope', prompt: 'x',
                                     image: await file(png.encode(withHole(picture(), 0, 0, 8, 8))) }),
                404, { code: 'model_not_found' });
  const after = (await health()).jobs;
  assert.equal(after.completed + after.failed, before.completed + before.failed, 'no job ran');
});

test('model: an installed set is selected by its id', { skip: !EXTRA_SET && 'no installed set' }, async () => {
  // random weights: noise, but a valid PNG of the size asked
  const r = await client.images.generate({ model: EXTRA_SET, prompt: 'a red circle', size: '128x64',
                                           response_format: 'b64_json', seed: 7 });
  assertImage(pngOf(r.data[0].b64_json), 128, 64);
  const again = await client.images.generate({ model: EXTRA_SET, prompt: 'a red circle', size: '128x64',
                                               response_format: 'b64_json', seed: 7 });
  assert.deepEqual(pngOf(again.data[0].b64_json).pixels, pngOf(r.data[0].b64_json).pixels,
                   'the same set and seed give the same image');
  // multipart requests name it too, and its inpainting decoder is used
  const edit = await client.images.edit({
    model: EXTRA_SET, prompt: 'a star', image: await file(png.encode(withHole(picture(), 16, 16, 48, 48))),
    size: `${SIZE}x${SIZE}`, response_format: 'b64_json' });
  assertImage(pngOf(edit.data[0].b64_json));
  // and back to the default set, whose weights may have been released
  const d = await client.images.generate({ prompt: 'a blue square', size: '64x64', response_format: 'b64_json' });
  assertImage(pngOf(d.data[0].b64_json));
});

// ---- edits and variations ----

test('edit with an alpha mask: only the fully transparent pixels change', async () => {
  const src = picture();
  const mask = withHole(picture(), 16, 16, 48, 48);
  const res = await client.images.edit({
    image: await file(png.encode(src)), mask: await file(png.encode(mask), 'mask.png'),
    prompt: 'a yellow star', n: 1, size: `${SIZE}x${SIZE}`, response_format: 'b64_json',
    seed: 5,
  });
  assert.equal(res.data.length, 1);
  assert.equal(res.data[0].seed, 5);
  const out = pngOf(res.data[0].b64_json);
  assertImage(out);
  assert.equal(out.text['reverie:kind'], 'inpaint');
  let changedInside = 0;
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const inside = x >= 16 && x < 48 && y >= 16 && y < 48;
      for (let c = 0; c < 3; c++) {
        const a = src.pixels[(y * SIZE + x) * 4 + c], b = out.pixels[(y * SIZE + x) * out.channels + c];
        if (!inside) assert.equal(b, a, `kept pixel (${x}, ${y}) changed`);
        else changedInside += a !== b;
      }
    }
  assert.ok(changedInside > 0, 'nothing was repainted inside the mask');
});

test('edit without a mask uses the image\'s own transparency; the result has the requested size', async () => {
  const src = withHole(picture(96, 96), 0, 48, 96, 96);
  const res = await client.images.edit({
    image: await file(png.encode(src)), prompt: 'grass', size: `${SIZE}x${SIZE}`,
    response_format: 'url',
  });
  const got = await fetch(res.data[0].url);
  assertImage(png.decode(Buffer.from(await got.arrayBuffer())));
});

test('outpainting: an edit whose transparent border is larger than a frame is filled frame by frame', async () => {
  // as DALL-E 2 clients outpaint: the picture on a larger transparent canvas, no mask
  const W = 256, C0 = 64, C1 = 192;
  const src = picture(W, W);
  for (let y = 0; y < W; y++)
    for (let x = 0; x < W; x++)
      if (x < C0 || x >= C1 || y < C0 || y >= C1) src.pixels[(y * W + x) * 4 + 3] = 0;
  const res = await client.images.edit({
    image: await file(png.encode(src)), prompt: 'a red circle on a blue background',
    size: `${W}x${W}`, response_format: 'b64_json', seed: 8,
  });
  assert.equal(res.data.length, 1);
  assert.equal(res.data[0].seed, 8);
  const out = pngOf(res.data[0].b64_json);
  assertImage(out, W, W);
  assert.equal(out.text['reverie:kind'], 'extend');
  assert.ok(JSON.parse(out.text['reverie:frames']).length > 1, 'filled in more than one frame');
  let changed = 0;
  for (let y = 0; y < W; y++)
    for (let x = 0; x < W; x++) {
      const p = (y * W + x) * out.channels, q = (y * W + x) * 4;
      const inside = x >= C0 && x < C1 && y >= C0 && y < C1;
      if (inside) {
        for (let c = 0; c < 4; c++)
          assert.equal(c < out.channels ? out.pixels[p + c] : 255, src.pixels[q + c], `opaque pixel (${x}, ${y}) changed`);
      } else {
        if (out.channels === 4) assert.equal(out.pixels[p + 3], 255, `border pixel (${x}, ${y}) is still transparent`);
        changed += out.pixels[p] + out.pixels[p + 1] + out.pixels[p + 2] > 0;
      }
    }
  assert.ok(changed > (W * W - (C1 - C0) ** 2) * 0.9, `the border was not painted (${changed} pixels)`);
});

test('variation of an image', async () => {
  const res = await client.images.createVariation({
    image: await file(png.encode(picture(96, 96, 3))), n: 1, size: `${SIZE}x${SIZE}`,
    response_format: 'b64_json',
  });
  assert.equal(res.data.length, 1);
  const out = pngOf(res.data[0].b64_json);
  assertImage(out);
  assert.equal(out.text['reverie:kind'], 'variation');
});

// ---- errors: status and shape ----

test('error: bad sizes', async () => {
  for (const size of ['100x100', '64x65', '0x0', '2048x2048', 'big', '64x64 ']) {
    await rejects(client.images.generate({ prompt: 'x', size }), 400,
                  { code: 'invalid_size', param: 'size' });
  }
  await rejects(client.images.createVariation({ image: await file(png.encode(picture())), size: '65x64' }),
                400, { code: 'invalid_size', param: 'size' });
});

test('error: missing, empty and too long prompts', async () => {
  await rejects(client.images.generate({ size: '64x64' }), 400,
                { code: 'missing_required_parameter', param: 'prompt' });
  await rejects(client.images.generate({ prompt: ' ', size: '64x64' }), 400, { param: 'prompt' });
  await rejects(client.images.generate({ prompt: 'x'.repeat(1001), size: '64x64' }), 400,
                { code: 'string_above_max_length', param: 'prompt' });
  await rejects(client.images.edit({ image: await file(png.encode(withHole(picture(), 0, 0, 8, 8))) }),
                400, { code: 'missing_required_parameter', param: 'prompt' });
});

test('error: other invalid fields', async () => {
  await rejects(client.images.generate({ prompt: 'x', n: 11 }), 400, { param: 'n' });
  await rejects(client.images.generate({ prompt: 'x', n: 0 }), 400, { param: 'n' });
  await rejects(client.images.generate({ prompt: 'x', response_format: 'jpeg' }), 400,
                { param: 'response_format' });
  await rejects(client.images.generate({ prompt: 'x', colour: 'red' }), 400,
                { code: 'unknown_parameter', param: 'colour' });
  await rejects(client.images.generate({ prompt: 'x', steps: 'many' }), 400,
                { code: 'invalid_type', param: 'steps' });
  for (const body of ['{"prompt": "x",', `{"prompt": ${'['.repeat(100000)}`, '']) {
    const r = await raw('/v1/images/generations', { body, headers: { 'Content-Type': 'application/json' } });
    assert.equal(r.status, 400, body.slice(0, 20));
    assertErrorShape(r.body.error, { code: 'invalid_json', type: 'invalid_request_error' });
  }
});

test('error: oversized body is 413', async () => {
  // the test server takes 1 MiB bodies
  await rejects(client.images.generate({ prompt: 'x', negative_prompt: 'y'.repeat(2 << 20) }), 413,
                { code: 'request_too_large' });
  const big = Buffer.concat([png.encode(picture()), Buffer.alloc(2 << 20)]);
  await rejects(client.images.createVariation({ image: await file(big) }), 413,
                { code: 'request_too_large' });
});

test('error: wrong or missing API key is 401', async () => {
  const wrong = new OpenAI({ apiKey: `${KEY}x`, baseURL: `${BASE}/v1`, maxRetries: 0 });
  await rejects(wrong.images.generate({ prompt: 'x' }), 401, { code: 'invalid_api_key' });
  await rejects(wrong.models.list(), 401, { code: 'invalid_api_key' });
  const none = await raw('/v1/images/generations', { key: null, body: '{"prompt": "x"}' });
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer');
  assertErrorShape(none.body.error, { code: 'missing_api_key', type: 'invalid_request_error' });
});

test('error: malformed multipart bodies are 400', async () => {
  const b = 'reverie-test-boundary';
  const good = multipart(b, [{ name: 'image', filename: 'i.png', value: png.encode(picture()) },
                            { name: 'n', value: '1' }]);
  const bodies = [
    ['garbage', Buffer.from('this is not multipart'), b],
    ['no closing boundary', good.subarray(0, good.length - b.length - 6), b],
    ['truncated in a part', good.subarray(0, 100), b],
    ['headers run into the boundary', Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="n"\r\n\r\n--${b}--\r\n`), b],
    ['no part headers', Buffer.from(`--${b}\r\n--${b}--\r\n`), b],
    ['part without a name', Buffer.from(`--${b}\r\nContent-Disposition: form-data\r\n\r\n1\r\n--${b}--\r\n`), b],
    ['boundary at the very start', Buffer.from(`x--${b}--`), b],
    ['empty', Buffer.alloc(0), b],
    ['binary noise', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff)), b],
    ['wrong boundary', good, 'another-boundary'],
  ];
  for (const [what, body, boundary] of bodies) {
    for (const path of ['/v1/images/edits', '/v1/images/variations']) {
      const r = await raw(path, { body, headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` } });
      assert.equal(r.status, 400, `${what} → ${r.status} ${r.text}`);
      assertErrorShape(r.body.error, { type: 'invalid_request_error' });
    }
  }
  for (const type of ['multipart/form-data', 'application/json', 'text/plain']) {
    const r = await raw('/v1/images/variations', { body: good, headers: { 'Content-Type': type } });
    assert.equal(r.status, 400, type);
    assertErrorShape(r.body.error, { type: 'invalid_request_error' });
  }
  // a duplicated field and an unknown one
  const dup = multipart(b, [{ name: 'image', filename: 'i.png', value: png.encode(picture()) },
                           { name: 'n', value: '1' }, { name: 'n', value: '2' }]);
  let r = await raw('/v1/images/variations', { body: dup, headers: { 'Content-Type': `multipart/form-data; boundary=${b}` } });
  assert.equal(r.status, 400);
  assertErrorShape(r.body.error, { code: 'duplicate_parameter', param: 'n' });
  const unknown = multipart(b, [{ name: 'image', filename: 'i.png', value: png.encode(picture()) },
                               { name: 'prompt', value: 'variations take no prompt' }]);
  r = await raw('/v1/images/variations', { body: unknown, headers: { 'Content-Type': `multipart/form-data; boundary=${b}` } });
  assert.equal(r.status, 400);
  assertErrorShape(r.body.error, { code: 'unknown_parameter', param: 'prompt' });
});

test('error: images must be PNG; mask and image the same size, with transparency', async () => {
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0]);
  let e = await rejects(client.images.edit({ image: await file(jpeg), prompt: 'x' }), 400,
                        { code: 'invalid_image_format', param: 'image' });
  assert.match(e.error.message, /PNG/);
  await rejects(client.images.createVariation({ image: await file(jpeg) }), 400,
                { code: 'invalid_image_format', param: 'image' });
  await rejects(client.images.edit({ image: await file(png.encode(picture())), mask: await file(jpeg, 'm.png'), prompt: 'x' }),
                400, { code: 'invalid_image_format', param: 'mask' });
  // a PNG signature over garbage
  const broken = Buffer.concat([png.encode(picture()).subarray(0, 40), Buffer.alloc(100, 7)]);
  await rejects(client.images.createVariation({ image: await file(broken) }), 400, { param: 'image' });
  e = await rejects(client.images.edit({
    image: await file(png.encode(picture())), mask: await file(png.encode(withHole(picture(32, 32), 0, 0, 8, 8)), 'm.png'),
    prompt: 'x',
  }), 400, { code: 'image_size_mismatch', param: 'mask' });
  assert.match(e.error.message, /32×32.*64×64/);
  await rejects(client.images.edit({ image: await file(png.encode(picture())), mask: await file(png.encode(picture(64, 64, 3)), 'm.png'), prompt: 'x' }),
                400, { code: 'invalid_mask', param: 'mask' });
  await rejects(client.images.edit({ image: await file(png.encode(picture())), mask: await file(png.encode(picture()), 'm.png'), prompt: 'x' }),
                400, { code: 'invalid_mask', param: 'mask' });
  await rejects(client.images.edit({ image: await file(png.encode(picture(64, 64, 3))), prompt: 'x' }),
                400, { code: 'invalid_mask', param: 'image' });
  await rejects(client.images.edit({ prompt: 'x' }), 400, { code: 'missing_required_parameter', param: 'image' });
});

test('error: unknown URLs are 404, wrong methods 405', async () => {
  let r = await raw('/v1/images/nothing', { body: '{}' });
  assert.equal(r.status, 404);
  assertErrorShape(r.body.error, { code: 'unknown_url' });
  r = await raw('/v1/images/generations', { method: 'GET' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'POST');
  assertErrorShape(r.body.error, { code: 'method_not_allowed' });
});

// ---- load, cancellation, streaming ----

test('20 concurrent requests: every one succeeds or gets the documented 429', async () => {
  const before = await until((h) => h.queue.running === 0 && h.queue.waiting === 0, 'an idle server');
  const calls = Array.from({ length: 20 }, (_, i) => client.images.generate({
    prompt: `concurrent request ${i}`, size: '64x64', response_format: 'b64_json', seed: i, steps: 2,
  }));
  const settled = await Promise.allSettled(calls);
  let ok = 0, busy = 0;
  settled.forEach((s, i) => {
    if (s.status === 'fulfilled') {
      assertImage(pngOf(s.value.data[0].b64_json));
      assert.equal(s.value.data[0].seed, i);
      ok++;
    } else {
      const e = s.reason;
      assert.equal(e.status, 429, `request ${i}: ${e.message}`);
      assertErrorShape(e.error, { code: 'queue_full', type: 'rate_limit_error' });
      assert.ok(Number(e.headers['retry-after']) >= 1, '429 says when to retry');
      busy++;
    }
  });
  assert.equal(ok + busy, 20);
  assert.ok(ok >= 1 + QUEUE, `only ${ok} succeeded with a queue of ${QUEUE}`);
  assert.ok(busy >= 1, 'the queue never filled');
  const after = await health();
  assert.equal(after.jobs.rejected - before.jobs.rejected, busy);
  assert.equal(after.jobs.completed - before.jobs.completed, ok);
});

test('a client that disconnects cancels its job, running or waiting', async () => {
  const before = await until((h) => h.queue.running === 0 && h.queue.waiting === 0, 'an idle server');
  const running = new AbortController(), waiting = new AbortController();
  const long = { prompt: 'a long job', size: '64x64', steps: 500, response_format: 'b64_json' };
  const a = client.images.generate(long, { signal: running.signal }).catch((e) => e);
  await until((h) => h.queue.running === 1, 'the first job to start');
  const b = client.images.generate(long, { signal: waiting.signal }).catch((e) => e);
  await until((h) => h.queue.waiting === 1, 'the second job to wait');
  waiting.abort();
  await until((h) => h.queue.waiting === 0, 'the waiting job to go', 30);
  running.abort();
  const after = await until((h) => h.queue.running === 0, 'the running job to stop', 60);
  assert.equal(after.jobs.cancelled - before.jobs.cancelled, 2);
  assert.equal(after.jobs.completed, before.jobs.completed);
  assert.ok((await a) instanceof Error);
  assert.ok((await b) instanceof Error);
});

test('stream: server-sent events with progress, previews and the result', async () => {
  const res = await fetch(`${BASE}/v1/images/generations`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'a streamed circle', size: '64x64', stream: true, steps: 9, seed: 3,
                           response_format: 'b64_json' }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const text = await res.text();
  const events = text.split('\n\n').filter((e) => e.startsWith('event: ')).map((e) => {
    const [head, data] = e.split('\n');
    return { name: head.slice(7), data: JSON.parse(data.slice(6)) };
  });
  const names = events.map((e) => e.name);
  assert.ok(names.includes('progress'));
  const partial = events.filter((e) => e.name === 'image_generation.partial_image');
  assert.ok(partial.length >= 1, names.join());
  assertImage(pngOf(partial[0].data.b64_json));
  const done = events.filter((e) => e.name === 'image_generation.completed');
  assert.equal(done.length, 1);
  assert.equal(names[names.length - 1], 'image_generation.completed');
  assert.equal(done[0].data.seed, 3);
  assertImage(pngOf(done[0].data.b64_json));
});

// ---- content policy (a server of its own, with the example policy) ----

// Starts `reverie-cli serve` with extra options; → { url, stderr(), stop() }.
async function ownServer(extra) {
  const child = spawn(CLI, ['serve', '--host', '127.0.0.1', '--port', '0', '--api-key', KEY,
                            '--steps', '2', '--prior-steps', '2', '--default-size', '64x64',
                            ...MODEL_ARGS, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /Listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    exited.then((code) => reject(new Error(`the server exited (${code}) before listening:\n${err}`)));
  });
  return {
    url,
    stderr: () => err,
    stop: async () => { child.kill('SIGTERM'); return exited; },
  };
}

test('content policy: refused prompts get 400 content_policy_violation naming the category only', async () => {
  const policy = `${process.env.REVERIE_SOURCE_DIR}/data/content-policy.txt`;
  const server = await ownServer(['--content-policy', policy]);
  try {
    const guarded = new OpenAI({ apiKey: KEY, baseURL: `${server.url}/v1`, maxRetries: 0, timeout: 600e3 });
    const phrase = 'massacre';
    let e = await rejects(guarded.images.generate({ prompt: `a M4ss4cre of red circles`, size: '64x64' }), 400,
                          { code: 'content_policy_violation', param: 'prompt', type: 'invalid_request_error' });
    assert.ok(e instanceof OpenAI.BadRequestError, `not a BadRequestError: ${e.constructor.name}`);
    assert.match(e.error.message, /violence/);
    assert.ok(!/m4ss4cre|massacre/i.test(e.error.message), 'the message echoes the phrase');
    e = await rejects(guarded.images.generate({ prompt: 'a blue square', negative_prompt: 'gore', size: '64x64' }),
                      400, { code: 'content_policy_violation', param: 'negative_prompt' });
    assert.ok(!/gore/i.test(e.error.message), 'the message echoes the negative prompt');
    await rejects(guarded.images.edit({ image: await file(png.encode(withHole(picture(), 16, 16, 48, 48))),
                                        prompt: `a ${phrase}`, size: '64x64' }),
                  400, { code: 'content_policy_violation', param: 'prompt' });
    const ok = await guarded.images.generate({ prompt: 'a red circle on a blue background', size: '64x64',
                                              response_format: 'b64_json', seed: 1 });
    assertImage(pngOf(ok.data[0].b64_json));
    const h = await (await fetch(`${server.url}/health`)).json();
    assert.equal(h.jobs.refused, 3);
    assert.equal(h.jobs.completed, 1);
    // the access log: status, route and category, never the prompt
    const end = Date.now() + 10e3;
    while (!/images\/generations HTTP\/1.1" 200/.test(server.stderr()) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 50));
    const lines = server.stderr().split('\n').filter((l) => /content_policy_violation/.test(l));
    assert.equal(lines.length, 3, server.stderr());
    assert.match(lines[0], /"POST \/v1\/images\/generations HTTP\/1.1" 400 .*category="violence"/);
    assert.match(lines[2], /"POST \/v1\/images\/edits HTTP\/1.1" 400 .*category="violence"/);
    assert.ok(!/m4ss4cre|massacre|gore|red circles/i.test(server.stderr()), 'the log holds prompt text');
  } finally {
    assert.equal(await server.stop(), 0);
  }
});

test('content policy: an unreadable, empty or malformed file stops serve at start, naming file and line', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'reverie-policy-'));
  try {
    const bad = path.join(dir, 'bad.txt'), empty = path.join(dir, 'empty.txt');
    fs.writeFileSync(bad, '[violence]\ngore\nbl$$d bath\n');
    fs.writeFileSync(empty, '# nothing but a comment\n');
    let r = await runCli(['serve', '--port', '0', '--content-policy', bad, ...MODEL_ARGS]);
    assert.notEqual(r.code, 0);
    assert.ok(r.err.includes(`${bad}:3:`), r.err);
    r = await runCli(['serve', '--port', '0', '--content-policy', empty, ...MODEL_ARGS]);
    assert.notEqual(r.code, 0);
    assert.ok(r.err.includes(empty), r.err);
    r = await runCli(['serve', '--port', '0', '--content-policy', path.join(dir, 'missing.txt'), ...MODEL_ARGS]);
    assert.notEqual(r.code, 0);
    assert.ok(r.err.includes('missing.txt'), r.err);
    assert.ok(!/Listening on/.test(r.out));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- startup ----

function runCli(args, seconds = 120) {
  return new Promise((resolve) => {
    const child = spawn(CLI, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), seconds * 1000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

test('serve --help documents every option', async () => {
  const r = await runCli(['serve', '--help']);
  assert.equal(r.code, 0);
  for (const opt of ['--host', '--port', '--api-key', '--queue', '--max-body-mb', '--max-image-side',
                     '--max-size', '--default-size', '--steps', '--prior-steps', '--store', '--url-ttl',
                     '--public-url', '--shutdown-grace', '--content-policy', '--model', '--prior', '--decoder',
                     '--inpaint-decoder', '--device', '--weights'])
    assert.ok(r.out.includes(opt), `--help lacks ${opt}`);
});

test('startup errors are clear: port in use, bad model folder', async () => {
  const port = new URL(BASE).port;
  let r = await runCli(['serve', '--port', port, ...MODEL_ARGS]);
  assert.equal(r.code, 1);
  assert.match(r.err, /already in use/);
  r = await runCli(['serve', '--port', '0', '--model', '/nonexistent/reverie-model']);
  assert.equal(r.code, 1);
  assert.match(r.err, /nonexistent\/reverie-model/);
  r = await runCli(['serve', '--port', '99999']);
  assert.equal(r.code, 1);
  assert.match(r.err, /--port/);
});
