// The engine in a worker thread: every fixture run token-exact, streaming, stop strings, KV-cache reuse across
// turns, abort, the FIFO of requests, load errors, a responsive event loop and close. Also the KV-cache reuse
// inside the model, checked against a fresh prefill.

import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Worker } from 'node:worker_threads';
import { runChat, type ChatResult } from '../src/chat/chat.js';
import type { DecodingSettings } from '../src/chat/decoding.js';
import type { EngineRequest } from '../src/chat/engine-types.js';
import { errorFromWire, errorToWire, WorkerEngine, type FromWorker } from '../src/chat/worker-engine.js';
import { CheckpointError, FileNotFoundError, ImageTooLargeError, InvalidRequestError, UnsupportedModelError } from '../src/errors.js';
import { decodeImage } from '../src/image/index.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { fixturePath, maxAbsDiff, openGolden, readFixtureJson, nonSamplingSettings } from './helpers/fixtures.js';

const FIXTURE = 'minicpmv2-tiny';
const MODEL = fixturePath(FIXTURE, 'model');
const LOGITS_TOLERANCE = 2e-3; // README §5

interface Run {
  chat_kwargs: { sampling: boolean; num_beams?: number; repetition_penalty?: number; max_new_tokens: number };
  new_token_ids: number[];
  text: string;
}
interface LlmCase {
  name: string;
  input: { file: string };
  msgs: { role: 'user' | 'assistant'; content: string }[];
  input_ids: number[];
  image_bound: [number, number][];
  runs: Record<string, Run>;
}

/** chat(sampling=False, **kwargs) with only the keys chat() accepts for that mode (as in chat.test.ts). */
function settingsFor(run: Run): DecodingSettings {
  const k = run.chat_kwargs;
  assert.equal(k.sampling, false);
  return nonSamplingSettings(k);
}

const llmCase = (name: string) => readFixtureJson<LlmCase>(FIXTURE, 'llm', `${name}.json`);
const imageOf = (c: LlmCase) => readFileSync(fixturePath(FIXTURE, c.input.file));
const twoTurn = llmCase('two_turn_wide');
const singleTurn = llmCase('single_turn_grad');
const greedy24: DecodingSettings = { decoding: 'greedy', maxNewTokens: 24 };
/** A text-only request the tiny model answers with ~2000 tokens before its EOS (seconds of generation). */
const longAnswer: EngineRequest = {
  messages: [{ role: 'user', content: 'Tell me a story.' }], image: null, decoding: 'greedy', maxNewTokens: 1500,
};
/** A request the worker refuses as soon as it starts it. */
const refusedAtOnce: EngineRequest = { ...longAnswer, messages: [{ role: 'assistant', content: 'hi' }] };

interface Collected {
  chunks: string[];
  result: ChatResult;
  /** performance.now() when the first chunk (or the result) arrived. */
  firstChunkAt: number;
}

async function collect(stream: AsyncGenerator<string, ChatResult, undefined>, onFirst?: () => void): Promise<Collected> {
  const chunks: string[] = [];
  let firstChunkAt: number | undefined;
  for (;;) {
    const next = await stream.next();
    if (firstChunkAt === undefined) {
      firstChunkAt = performance.now();
      onFirst?.();
    }
    if (next.done) return { chunks, result: next.value, firstChunkAt };
    chunks.push(next.value);
  }
}

/** What the worker thread has sent about one request: its chunks so far, and how it ended ("done" or an error's name). */
interface WorkerReport {
  chunks: number;
  ending?: string;
}

/**
 * Listens to the worker thread's messages (a private part of the engine) while `use` runs. `latest()` is the report
 * of the newest request the worker has sent anything about.
 */
async function listeningToWorker(engine: WorkerEngine, use: (latest: () => WorkerReport | undefined) => Promise<void>): Promise<void> {
  const worker = (engine as unknown as { worker: Worker }).worker;
  const reports = new Map<number, WorkerReport>();
  let latest: WorkerReport | undefined;
  const onMessage = (message: FromWorker) => {
    if (message.type !== 'chunk' && message.type !== 'done' && message.type !== 'error') return;
    let report = reports.get(message.id);
    if (!report) reports.set(message.id, (report = latest = { chunks: 0 }));
    if (message.type === 'chunk') report.chunks++;
    else report.ending = message.type === 'done' ? 'done' : message.error.name;
  };
  worker.on('message', onMessage);
  try {
    await use(() => latest);
  } finally {
    worker.off('message', onMessage);
  }
}

let engine: WorkerEngine;
const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-engine-'));
before(async () => {
  engine = await WorkerEngine.start(MODEL, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
});
after(async () => {
  await engine.close();
  rmSync(scratch, { recursive: true, force: true });
});

test('every fixture run is token-exact through the worker; a repeated prompt reuses all but its last position', async () => {
  const names = readdirSync(fixturePath(FIXTURE, 'llm')).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  assert.equal(names.length, 5);
  for (const name of names) {
    const c = llmCase(name);
    for (const [i, [runName, run]] of Object.entries(c.runs).entries()) {
      const { chunks, result } = await collect(engine.stream({ messages: c.msgs, image: imageOf(c), ...settingsFor(run) }));
      const label = `${name} / ${runName}`;
      assert.deepEqual(result.promptIds, c.input_ids, label);
      assert.deepEqual(result.outputIds, run.new_token_ids, label);
      assert.equal(result.text, run.text, label);
      assert.equal(chunks.join(''), result.text, label);
      assert.equal(result.finishReason, run.new_token_ids.at(-1) === 2 ? 'stop' : 'length', label);
      // The case before used another image; the runs of one case share the prompt.
      assert.equal(result.cachedTokens, i === 0 ? 0 : c.input_ids.length - 1, label);
    }
  }
});

test('sampled chunks add up to the answer, and a seed repeats it', async () => {
  const request: EngineRequest = {
    messages: singleTurn.msgs, image: imageOf(singleTurn), decoding: 'sample', seed: 7, maxNewTokens: 40,
  };
  const first = await collect(engine.stream(request));
  const again = await collect(engine.stream(request));
  assert.ok(first.chunks.length > 1);
  assert.equal(first.chunks.join(''), first.result.text);
  assert.deepEqual(again.result.outputIds, first.result.outputIds);
});

test('a second turn about the same image skips the vision encoder and the shared prefill, token-exact', async (t) => {
  await collect(engine.stream({ messages: singleTurn.msgs, image: imageOf(singleTurn), decoding: 'greedy', maxNewTokens: 1 }));
  const image = imageOf(twoTurn);
  const started1 = performance.now();
  const turn1 = await collect(engine.stream({ messages: twoTurn.msgs.slice(0, 1), image, ...greedy24 }));
  const started2 = performance.now();
  const turn2 = await collect(engine.stream({ messages: twoTurn.msgs, image, ...greedy24 }));
  assert.equal(turn1.result.cachedTokens, 0);
  assert.deepEqual(turn2.result.promptIds, twoTurn.input_ids);
  assert.deepEqual(turn2.result.outputIds, twoTurn.runs.greedy!.new_token_ids);
  assert.equal(turn2.result.text, twoTurn.runs.greedy!.text);

  // The cache holds turn 1's prompt and the tokens fed after it (all generated ones but the last).
  const cached = [...turn1.result.promptIds, ...turn1.result.outputIds.slice(0, -1)];
  let shared = 0;
  while (cached[shared] === twoTurn.input_ids[shared]) shared++;
  assert.ok(shared >= turn1.result.promptIds.length);
  assert.equal(turn2.result.cachedTokens, shared);
  assert.ok(shared >= twoTurn.image_bound.at(-1)![1], 'the reused part covers the image');
  // So the image is not encoded again: reused positions are never encoded (counted in the next test, on a model here).

  const beam = await collect(engine.stream({ messages: twoTurn.msgs, image, ...settingsFor(twoTurn.runs['beam3_rp1.2']!) }));
  assert.deepEqual(beam.result.outputIds, twoTurn.runs['beam3_rp1.2']!.new_token_ids);
  assert.equal(beam.result.cachedTokens, twoTurn.input_ids.length - 1);

  const ttft1 = turn1.firstChunkAt - started1;
  const ttft2 = turn2.firstChunkAt - started2;
  t.diagnostic(`time to first chunk: turn 1 ${ttft1.toFixed(1)} ms (${turn1.result.promptIds.length} tokens, 4 slices), ` +
    `turn 2 ${ttft2.toFixed(1)} ms (${shared} of ${twoTurn.input_ids.length} tokens reused)`);
});

test('reused positions give a fresh prefill\'s logits; a changed image with the same placeholders is encoded again', async (t) => {
  const config = loadModelConfig(MODEL);
  const model = await familyOf(config).load(MODEL, config, { threads: 1 });
  // Counts the vision encoder's runs (a private part of the model).
  const vision = (model as unknown as { vision: { encode: (...args: unknown[]) => Promise<unknown> } }).vision;
  const encode = vision.encode.bind(vision);
  let encodes = 0;
  vision.encode = (...args) => {
    encodes++;
    return encode(...args);
  };
  const golden = openGolden(FIXTURE, 'llm', 'two_turn_wide.safetensors');
  const logitsLast = golden.float32('logits_last');
  golden.close();
  try {
    const image = await decodeImage(imageOf(twoTurn));
    const fresh = await model.startPrompt(model.prepare(twoTurn.msgs, image));
    assert.equal(fresh.reusedLength, 0);
    const freshLogits = await fresh.prefill();
    assert.equal(encodes, 1);

    await runChat(model, { messages: twoTurn.msgs.slice(0, 1), image, decoding: 'greedy', maxNewTokens: 8 });
    const encodesBefore = encodes;
    const reused = await model.startPrompt(model.prepare(twoTurn.msgs, image));
    assert.ok(reused.reusedLength >= twoTurn.image_bound.at(-1)![1] && reused.reusedLength < twoTurn.input_ids.length);
    const reusedLogits = await reused.prefill();
    assert.equal(encodes, encodesBefore, 'the image is not encoded again');
    const diff = maxAbsDiff(reusedLogits, freshLogits);
    const fixtureDiff = maxAbsDiff(reusedLogits, logitsLast);
    t.diagnostic(`${reused.reusedLength} positions reused: logits within ${diff.toExponential(2)} of a fresh prefill, ` +
      `${fixtureDiff.toExponential(2)} of the fixture`);
    assert.ok(diff <= 1e-4, `logits after reuse differ from a fresh prefill by ${diff}`);
    assert.ok(fixtureDiff <= LOGITS_TOLERANCE);

    const changed = { ...image, data: image.data.slice() };
    changed.data[0] ^= 0xff;
    const other = model.prepare(twoTurn.msgs, changed);
    assert.deepEqual(other.ids, twoTurn.input_ids, 'same placeholders');
    const restarted = await model.startPrompt(other);
    assert.ok(restarted.reusedLength <= twoTurn.image_bound[0]![0], `reused ${restarted.reusedLength} positions of another image`);
    assert.equal(encodes, encodesBefore + 1);
  } finally {
    await model.release();
  }
});

test('startPrompt pauses before each vision run; a pause that throws stops the encoding, and the next prompt runs normally', async () => {
  const config = loadModelConfig(MODEL);
  const model = await familyOf(config).load(MODEL, config, { threads: 1 });
  const golden = openGolden(FIXTURE, 'llm', 'two_turn_wide.safetensors');
  const logitsLast = golden.float32('logits_last');
  golden.close();
  try {
    const prompt = model.prepare(twoTurn.msgs, await decodeImage(imageOf(twoTurn)));
    const slices = (prompt as { slices?: unknown[] }).slices?.length ?? 0;
    assert.ok(slices >= 2, `the two-turn image has ${slices} slices`);
    let pauses = 0;
    const stopped = new Error('stopped at the second pause');
    await assert.rejects(model.startPrompt(prompt, async () => {
      if (++pauses === 2) throw stopped;
    }), (err) => err === stopped);
    assert.equal(pauses, 2, 'no vision run after the pause that threw');

    pauses = 0;
    const sequence = await model.startPrompt(prompt, async () => void pauses++);
    assert.equal(pauses, slices, 'one pause before each slice (one slice per run on the CPU)');
    const diff = maxAbsDiff(await sequence.prefill(), logitsLast);
    assert.ok(diff <= LOGITS_TOLERANCE, `logits after the stopped start differ from the fixture by ${diff}`);
  } finally {
    await model.release();
  }
});

test('stop strings end the answer before them, and no part of them is streamed', async () => {
  const greedyText = twoTurn.runs.greedy!.text; // '说受uctENTALariant Additionalting Modifiedtr but阶 …'
  const ask = (stop: string[], settings: DecodingSettings = greedy24) =>
    collect(engine.stream({ messages: twoTurn.msgs, image: imageOf(twoTurn), ...settings, stop }));
  const expectations: [string[], string][] = [
    [['Modified'], '说受uctENTALariant Additionalting'],
    [['grants', 'ting Mod'], '说受uctENTALariant Additional'], // the earliest wins; 'ting Mod' spans two tokens
    [['changed!'], greedyText], // never completed: the held-back 'changed' is shown at the end
  ];
  for (const [stop, text] of expectations) {
    const { chunks, result } = await ask(stop);
    assert.equal(result.text, text, `stop ${stop}`);
    assert.equal(chunks.join(''), text, `stop ${stop}`);
    assert.equal(result.finishReason, text === greedyText ? 'length' : 'stop');
    assert.deepEqual(result.outputIds, twoTurn.runs.greedy!.new_token_ids.slice(0, result.outputIds.length));
    if (text !== greedyText) assert.ok(result.outputIds.length < 24, 'generation stopped early');
  }
  const beam = await ask(['Hub'], settingsFor(twoTurn.runs['beam3_rp1.2']!));
  assert.equal(beam.result.text, '说受 circumcestrMB#CUL');
  assert.equal(beam.chunks.join(''), beam.result.text);
  assert.equal(beam.result.finishReason, 'stop');
  await assert.rejects(collect(engine.stream({ ...longAnswer, stop: [''] })), InvalidRequestError);
});

test('an abort stops the running answer in the worker, and the next request runs normally', async (t) => {
  // The worker ends a stopped answer with an AbortError (run on, it would send "done" after 1500 tokens), having sent
  // at most half the chunks still to come when the abort was sent: this thread may read the worker's chunks late.
  const checkStopped = (report: WorkerReport, chunksBefore: number, what: string) => {
    const toCome = longAnswer.maxNewTokens! - chunksBefore;
    const chunksAfter = report.chunks - chunksBefore;
    t.diagnostic(`${what}: the worker sent ${chunksBefore} chunks before and ${chunksAfter} after`);
    assert.equal(report.ending, 'AbortError', `${what}: the worker stopped the answer`);
    assert.ok(chunksAfter < toCome / 2, `${what}: ${chunksAfter} chunks after, of ${toCome} still to come`);
  };
  await listeningToWorker(engine, async (latest) => {
    const controller = new AbortController();
    let read = 0;
    let aborted: WorkerReport | undefined;
    let chunksBefore = 0;
    let refused: Promise<void> | undefined;
    await assert.rejects(async () => {
      for await (const chunk of engine.stream(longAnswer, controller.signal)) {
        assert.ok(chunk);
        if (++read === 20) {
          aborted = latest()!;
          chunksBefore = aborted.chunks;
          controller.abort();
          // Queued behind the aborted answer: the worker takes it up once it has ended the aborted one.
          refused = assert.rejects(collect(engine.stream(refusedAtOnce)), /first message/);
        }
      }
    }, { name: 'AbortError' });
    await refused;
    checkStopped(aborted!, chunksBefore, 'aborted');
    const next = await collect(engine.stream({ messages: singleTurn.msgs, image: imageOf(singleTurn), ...greedy24 }));
    assert.deepEqual(next.result.outputIds, singleTurn.runs.greedy!.new_token_ids);

    // Leaving the loop early cancels the request too.
    for await (const chunk of engine.stream(longAnswer)) if (chunk) break;
    const left = latest()!;
    const chunksBeforeLeaving = left.chunks;
    await assert.rejects(collect(engine.stream(refusedAtOnce)), /first message/);
    checkStopped(left, chunksBeforeLeaving, 'left early');
  });
});

test('requests run one at a time in call order; one aborted while queued never starts', async () => {
  const order: string[] = [];
  const track = (name: string, request: EngineRequest) =>
    collect(engine.stream(request), () => order.push(`${name} starts`)).then((c) => {
      order.push(`${name} ends`);
      return c;
    });
  const image = imageOf(twoTurn);
  const first = track('first', { messages: twoTurn.msgs.slice(0, 1), image, ...greedy24 });
  const dropped = new AbortController();
  const queued = collect(engine.stream({ messages: singleTurn.msgs, image: imageOf(singleTurn), ...greedy24 }, dropped.signal));
  const second = track('second', { messages: twoTurn.msgs, image, ...greedy24 });
  const zh = llmCase('zh_plain_gray');
  const third = track('third', { messages: zh.msgs, image: imageOf(zh), ...settingsFor(zh.runs.greedy!) });
  dropped.abort();
  await assert.rejects(queued, { name: 'AbortError' });
  const [, two, three] = await Promise.all([first, second, third]);
  assert.deepEqual(order, ['first starts', 'first ends', 'second starts', 'second ends', 'third starts', 'third ends']);
  assert.deepEqual(two.result.outputIds, twoTurn.runs.greedy!.new_token_ids);
  assert.deepEqual(three.result.outputIds, zh.runs.greedy!.new_token_ids);
  // Had the dropped request (another image) run in between, the second would have reused nothing.
  assert.ok(two.result.cachedTokens >= twoTurn.image_bound.at(-1)![1]);
});

test('a request that cannot be sent to the worker is refused by name, and the requests after it are answered', async () => {
  const request: EngineRequest = { messages: singleTurn.msgs, image: imageOf(singleTurn), ...greedy24 };
  const cannotCross = (path: string, kind: string) => (err: unknown) =>
    err instanceof InvalidRequestError &&
    err.message === `${path} is ${kind}, which cannot be sent to the engine's worker thread: ` +
      'give only data (strings, numbers, booleans, arrays, plain objects, byte arrays)';
  // Refused when the engine is idle, and when its turn comes behind a running request.
  await assert.rejects(collect(engine.stream({ ...request, onChunk: () => {} } as EngineRequest)), cannotCross('request.onChunk', 'a function'));
  const running = collect(engine.stream(request));
  const queued = collect(engine.stream({ ...request, messages: [{ role: 'user', content: Promise.resolve('Hi') }] } as never));
  const after = collect(engine.stream(request));
  await assert.rejects(queued, cannotCross('request.messages[0].content', 'a Promise'));
  for (const answered of [await running, await after]) assert.deepEqual(answered.result.outputIds, singleTurn.runs.greedy!.new_token_ids);
  await assert.rejects(engine.tokenize(Symbol('Hi') as never), cannotCross('text', 'a symbol'));
  const [sample] = readFixtureJson<{ encode: { text: string; input_ids: number[] }[] }>(FIXTURE, 'tokenizer', 'cases.json').encode;
  assert.deepEqual(await engine.tokenize(sample!.text), sample!.input_ids);
});

/**
 * Runs `work` and measures this thread's event loop meanwhile: the share of the time it was busy (Node's event-loop
 * utilization, a ratio that does not depend on the machine's speed) and the longest wait of a 2 ms timer.
 */
async function eventLoopDuring(work: () => Promise<unknown>): Promise<{ utilization: number; longestGap: number; elapsed: number }> {
  let longestGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
  }, 2);
  const started = performance.now();
  const before = performance.eventLoopUtilization();
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  const { utilization } = performance.eventLoopUtilization(before);
  return { utilization, longestGap, elapsed: performance.now() - started };
}

test('the event loop stays free while the worker encodes, prefills and generates', async (t) => {
  const hk = llmCase('long_prompt_hk');
  const beamRun = hk.runs['beam3_rp1.2']!;
  const request: EngineRequest = { messages: hk.msgs, image: imageOf(hk), ...settingsFor(beamRun) };
  // 1. The same answer computed on this thread, for comparison: the loop is busy nearly all the time.
  const config = loadModelConfig(MODEL);
  const local = await familyOf(config).load(MODEL, config, { threads: 1 });
  let onThisThread;
  try {
    const image = await decodeImage(request.image!);
    const settings = settingsFor(beamRun);
    await runChat(local, { ...settings, messages: hk.msgs, image });
    onThisThread = await eventLoopDuring(() => runChat(local, { ...settings, messages: hk.msgs, image }));
  } finally {
    await local.release();
  }
  // 2. Through the worker this thread only passes messages on.
  const throughWorker = await eventLoopDuring(async () => {
    const beam = await collect(engine.stream(request));
    assert.deepEqual(beam.result.outputIds, beamRun.new_token_ids);
    await collect(engine.stream({ ...longAnswer, maxNewTokens: 300 }));
  });
  const describe = (m: typeof throughWorker) =>
    `busy ${(m.utilization * 100).toFixed(1)}% of ${m.elapsed.toFixed(0)} ms, longest wait of a 2 ms timer ${m.longestGap.toFixed(1)} ms`;
  t.diagnostic(`on this thread: ${describe(onThisThread)}; through the worker: ${describe(throughWorker)}`);
  assert.ok(onThisThread.utilization > 0.5, 'computing on this thread keeps its loop busy (the measure works)');
  assert.ok(throughWorker.utilization < onThisThread.utilization / 3, 'through the worker, the loop is mostly free');
});

test('tokenize gives the chat path\'s ids', async () => {
  const { encode } = readFixtureJson<{ encode: { text: string; input_ids: number[] }[] }>(FIXTURE, 'tokenizer', 'cases.json');
  for (const c of encode.filter((_, i) => i % 10 === 0)) assert.deepEqual(await engine.tokenize(c.text), c.input_ids);
});

/** A writable copy of the fixture checkpoint, to break in one way. */
function copyModel(name: string): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(MODEL)) copyFileSync(join(MODEL, f), join(dir, f));
  return dir;
}

test('loading errors arrive as the same error class with a one-line message', async () => {
  const other = copyModel('other-type');
  const config = JSON.parse(readFileSync(join(other, 'config.json'), 'utf8'));
  writeFileSync(join(other, 'config.json'), JSON.stringify({ ...config, model_type: 'llama' }));
  const missingShard = copyModel('missing-shard');
  rmSync(join(missingShard, 'model-00002-of-00002.safetensors'));
  const cases: [string, new (...args: never[]) => Error, RegExp][] = [
    [join(scratch, 'nope'), FileNotFoundError, /no such folder/],
    [other, UnsupportedModelError, /model_type "llama" is not supported/],
    [missingShard, CheckpointError, /missing/],
  ];
  for (const [dir, errorClass, message] of cases) {
    await assert.rejects(WorkerEngine.start(dir, { threads: 1 }), (err: Error) => {
      assert.equal(err.constructor, errorClass, `${err.name}: ${err.message}`);
      assert.match(err.message, message);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
  }
});

test('close stops the running answer, and the closed engine refuses new work', async () => {
  const running = assert.rejects(collect(engine.stream(longAnswer)), { name: 'AbortError' });
  const queued = assert.rejects(collect(engine.stream(longAnswer)), { name: 'AbortError' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  await engine.close();
  await running;
  await queued;
  // Every later call gets the error the engine reports as unavailable; closing again is a no-op.
  const closed = engine.unavailable;
  assert.ok(closed instanceof InvalidRequestError && closed.message === 'the engine is closed: start a new one');
  await assert.rejects(collect(engine.stream(longAnswer)), (err) => err === closed, 'a chat');
  await assert.rejects(engine.tokenize('hi'), (err) => err === closed, 'tokenize');
  await engine.close();
});

test('a thread count that is not a whole number of at least 1 is refused as such, in every family', async () => {
  for (const fixture of ['minicpmv2-tiny', 'minicpmv1-tiny', 'minicpmv46-tiny', 'omnilmm12b-tiny']) {
    const dir = fixturePath(fixture, 'model');
    const config = loadModelConfig(dir);
    for (const threads of [0, 1.5, Number.NaN]) {
      await assert.rejects(familyOf(config).load(dir, config, { threads }), (err: unknown) =>
        err instanceof InvalidRequestError && /threads must be a whole number of at least 1/.test(err.message), `${fixture}, threads ${threads}`);
    }
  }
});

test("errors cross the worker boundary with their class, and an ImageTooLargeError with its summary and advice", () => {
  const crossed = (err: Error) => errorFromWire(structuredClone(errorToWire(err)));
  const tooLarge = crossed(new ImageTooLargeError('the image is 20000×20000 pixels', 'send a smaller image'));
  assert.ok(tooLarge instanceof ImageTooLargeError);
  assert.equal(tooLarge.summary, 'the image is 20000×20000 pixels');
  assert.equal(tooLarge.message, 'the image is 20000×20000 pixels; send a smaller image');
  const invalid = crossed(new InvalidRequestError('give a question'));
  assert.ok(invalid instanceof InvalidRequestError);
  assert.equal(invalid.message, 'give a question');
});
