// MiniCPM-V 4.6 end to end on the minicpmv46-tiny fixture (README §4.4): every chat's prompt ids, greedy answer and
// text through the public API, beam search where the official run saw the right image rows, the video case, a
// follow-up turn that resumes from the decoder's state snapshot, and the CLI's tokenize / inspect-image / chat.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, test } from 'node:test';
import { promisify } from 'node:util';
import OpenAI from 'openai';
import { toChatInput } from '../src/chat/chat-input.js';
import { LocalEngine } from '../src/chat/local-engine.js';
import { decodeImage } from '../src/image/index.js';
import { ChatServer, loadModel, type Model } from '../src/index.js';
import { familyOf, loadModelConfig } from '../src/models/registry.js';
import { tokenizerJsonFromDir } from '../src/tokenizer/load-folder.js';
import { fixturePath, readFixtureJson, repoRoot } from './helpers/fixtures.js';
import { chatCase, videoOptionsOf, type ChatCase } from './helpers/minicpmv46-chats.js';

const FIXTURE = 'minicpmv46-tiny';
const MODEL = fixturePath(FIXTURE, 'model');
const CLI = join(repoRoot, 'dist', 'src', 'cli', 'main.js');

const CHATS = [
  'text_only', 'single_image_grad', 'multi_image_uniform', 'multi_turn_system', 'long_prompt_hk_4x',
  'mixed_grid_16x', 'mixed_grid_two_images_16x', 'eos_stop', 'video_16x',
];
/**
 * The chats whose image rows come from one visual unit (or none). In the others, the official beam runs saw other
 * rows than the image's: transformers 5.18's `_expand_multimodal_outputs` repeats each slice's features in place for
 * the beams ([s0,s0,s0,s1,…]) where every beam should see [s0,s1,…], so those beam3 goldens are not the model's
 * answer about the image; test/qwen35-decoder.test.ts reproduces them from the rows the official code used.
 */
const BEAM_CHATS = ['text_only', 'single_image_grad', 'multi_turn_system', 'long_prompt_hk_4x', 'eos_stop'];

const chat = chatCase;

/** The request fields of a chat case, as the library takes them. */
function requestOf(c: ChatCase) {
  return {
    messages: c.messages as never,
    images: c.images.map((image) => readFileSync(fixturePath(FIXTURE, image.file))),
    ...(c.video && {
      video: {
        frames: c.video.frames.map((frame) => readFileSync(fixturePath(FIXTURE, frame))),
        fps: c.video.video_metadata.fps,
        ...videoOptionsOf(c),
      },
    }),
    downsampleMode: c.downsample_mode,
    thinking: c.chat_template_kwargs.enable_thinking ?? false,
  };
}

describe('MiniCPM-V 4.6 through the library', () => {
  let model: Model;
  before(async () => {
    model = await loadModel(MODEL, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  });
  after(async () => model.release());

  it('answers every chat greedily with the official prompt ids, new ids (EOS included) and text', async () => {
    for (const name of CHATS) {
      const c = chat(name);
      const result = await model.run({ ...requestOf(c), decoding: 'greedy', maxNewTokens: c.runs.greedy.generate_kwargs.max_new_tokens });
      assert.deepEqual(result.promptIds, c.input_ids, `${name}: prompt ids`);
      assert.deepEqual(result.outputIds, c.runs.greedy.new_token_ids, `${name}: greedy ids`);
      assert.equal(result.text, c.runs.greedy.text, `${name}: text`);
      assert.equal(result.finishReason, c.runs.greedy.stopped_on_eos ? 'stop' : 'length', `${name}: finish reason`);
    }
  });

  it('reads the video case from its folder of frames for the frames it keeps: the same official answer', async () => {
    const c = chat('video_16x');
    const { frames, ...video } = requestOf(c).video!;
    assert.equal(frames.length, 20);
    const result = await model.run({
      ...requestOf(c), video: { ...video, file: fixturePath(FIXTURE, 'images', 'video_bars_96x72') }, decoding: 'greedy', maxNewTokens: c.runs.greedy.generate_kwargs.max_new_tokens,
    });
    assert.deepEqual(result.promptIds, c.input_ids);
    assert.deepEqual(result.outputIds, c.runs.greedy.new_token_ids);
  });

  it('streams the same text as the whole answer', async () => {
    for (const name of ['eos_stop', 'multi_turn_system']) {
      const c = chat(name);
      let streamed = '';
      for await (const chunk of model.stream({ ...requestOf(c), decoding: 'greedy', maxNewTokens: 24 })) streamed += chunk;
      assert.equal(streamed, c.runs.greedy.text, name);
    }
  });

  it('finds the official beam3 answers (3 beams, 8 new tokens)', async () => {
    for (const name of BEAM_CHATS) {
      const c = chat(name);
      const result = await model.run({ ...requestOf(c), decoding: 'beam', numBeams: 3, maxNewTokens: c.runs.beam3.generate_kwargs.max_new_tokens });
      assert.deepEqual(result.outputIds, c.runs.beam3.new_token_ids, `${name}: beam3 ids`);
      assert.equal(result.text, c.runs.beam3.text, `${name}: beam3 text`);
    }
  });

  it('resumes a follow-up turn from the state the first turn left (the image is not encoded again)', async () => {
    const c = chat('multi_turn_system');
    const request = requestOf(c);
    await model.run({ ...request, messages: c.messages.slice(0, 2) as never, decoding: 'greedy', maxNewTokens: 4 });
    const second = await model.run({ ...request, decoding: 'greedy', maxNewTokens: 24 });
    const imageEnd = c.input_ids.lastIndexOf(3012) + 1;
    assert.ok(second.cachedTokens > imageEnd, `reused ${second.cachedTokens} positions, the image ends at ${imageEnd}`);
    assert.deepEqual(second.outputIds, c.runs.greedy.new_token_ids);
  });

  it('ends the prompt with an open <think> when thinking is on (the template with enable_thinking=true)', async () => {
    const result = await model.run({ messages: [{ role: 'user', content: 'Hi' }], thinking: true, decoding: 'greedy', maxNewTokens: 1 });
    const tokenizer = tokenizerJsonFromDir(MODEL);
    assert.deepEqual(result.promptIds, tokenizer.encode('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n'));
  });

  it('refuses image markup typed into the text', async () => {
    await assert.rejects(
      model.run({ messages: [{ role: 'user', content: 'look: <|image_pad|>' }], decoding: 'greedy', maxNewTokens: 1 }),
      /remove it from the text/,
    );
  });
});

test('a video\'s frames are resized one at a time as the vision encoder reaches each, and not at all for a repeated turn', async () => {
  const c = chat('video_16x');
  const { messages, video } = requestOf(c);
  const { frames: encoded, ...options } = video!;
  const frames = await Promise.all(encoded.map((bytes) => decodeImage(bytes)));
  // Each frame notes when its pixels are read (hashing, resizing).
  let read = new Set<number>();
  const watched = frames.map((frame, i) => ({
    width: frame.width,
    height: frame.height,
    get data() {
      read.add(i);
      return frame.data;
    },
  }));
  const input = toChatInput(messages, { video: { ...options, frames: watched }, downsampleMode: c.downsample_mode });
  const config = loadModelConfig(MODEL);
  const model = await familyOf(config).load(MODEL, config, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  try {
    const prompt = model.prepare(input);
    assert.deepEqual(prompt.ids, c.input_ids);
    // video_16x keeps frames 0, 8 and 16, each one 96×72 slice (max_slice_nums 1): one encoder run per frame, and
    // before the k-th run only the first k kept frames have been read since the prompt was prepared.
    read = new Set();
    const readBeforeRuns: number[][] = [];
    const sequence = await model.startPrompt(prompt, async () => void readBeforeRuns.push([...read]));
    assert.deepEqual(readBeforeRuns, [[0], [0, 8], [0, 8, 16]]);
    const logits = await sequence.prefill();
    assert.equal(logits.indexOf(Math.max(...logits)), c.runs.greedy.new_token_ids[0], 'the official first greedy token');

    // The same turn again resumes after the video's rows: no frame is resized, no encoder run.
    const again = model.prepare(input);
    read = new Set();
    readBeforeRuns.length = 0;
    const resumed = await model.startPrompt(again, async () => void readBeforeRuns.push([...read]));
    assert.ok(resumed.reusedLength > c.input_ids.lastIndexOf(3013), `reused ${resumed.reusedLength} positions`);
    assert.deepEqual(readBeforeRuns, []);
    assert.deepEqual([...read], []);
  } finally {
    await model.release();
  }
});

const run = promisify(execFile);
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, HF_HUB_OFFLINE: '1' }, maxBuffer: 1 << 26 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout, stderr: e.stderr };
  }
}

test('CLI tokenize --json: the official ids, no BOS', async () => {
  const { encode } = readFixtureJson<{ encode: { text: string; input_ids: number[] }[] }>(FIXTURE, 'tokenizer', 'cases.json');
  for (const c of encode.filter((_, i) => i % 10 === 0)) {
    const out = await cli(['tokenize', '--model', MODEL, '--json', c.text]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), { ids: c.input_ids });
  }
});

interface PreprocessCase {
  input: { file: string };
  get_sliced_grid: [number, number] | null;
  source_size_hw: [number, number];
  target_sizes_hw: [number, number][];
  slices: { size_wh: [number, number] }[];
  placeholder_16x: string;
  placeholder_4x: string;
  num_image_tokens_16x: number;
  num_image_tokens_4x: number;
}

test('CLI inspect-image --json: source, grid [cols, rows], slices, placeholder and tokens of the official processor', async () => {
  for (const stem of ['grad_100x80', 'wide_1000x300', 'checker_1344x1344', 'thin_30x900']) {
    const c = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', `${stem}.json`);
    for (const mode of ['16x', '4x'] as const) {
      const out = await cli(['inspect-image', '--model', MODEL, '--json', '--downsample-mode', mode, fixturePath(FIXTURE, c.input.file)]);
      assert.equal(out.code, 0, out.stderr);
      const [source, ...slices] = c.slices.map((s) => s.size_wh);
      assert.deepEqual(JSON.parse(out.stdout), {
        source,
        grid: c.get_sliced_grid ? [c.get_sliced_grid[1], c.get_sliced_grid[0]] : null,
        slices,
        placeholder: mode === '16x' ? c.placeholder_16x : c.placeholder_4x,
        image_tokens: mode === '16x' ? c.num_image_tokens_16x : c.num_image_tokens_4x,
      }, `${stem} ${mode}`);
    }
  }
});

test('CLI chat --json: --image fills the image parts of --messages; the official prompt and greedy ids', async () => {
  const scratch = mkdtempSync(join(tmpdir(), 'omnilmm-46-cli-'));
  try {
    const c = chat('mixed_grid_two_images_16x');
    const messages = join(scratch, 'messages.json');
    writeFileSync(messages, JSON.stringify(c.messages));
    const images = c.images.flatMap((image) => ['--image', fixturePath(FIXTURE, image.file)]);
    const out = await cli(['chat', '--model', MODEL, '--json', '--decoding', 'greedy', '--max-new-tokens', '24', '--threads', '1',
      '--precision', 'fp32', '--vision-precision', 'fp32', '--messages', messages, ...images]);
    assert.equal(out.code, 0, out.stderr);
    const result = JSON.parse(out.stdout) as { text: string; prompt_ids: number[]; output_ids: number[] };
    assert.deepEqual(result.prompt_ids, c.input_ids);
    assert.deepEqual(result.output_ids, c.runs.greedy.new_token_ids);
    assert.equal(result.text, c.runs.greedy.text);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
});

test('OpenAI server: two image_url parts and a system message give the official greedy answer', async () => {
  const engine = await LocalEngine.start(MODEL, { threads: 1, precision: 'fp32', visionPrecision: 'fp32' });
  const server = await ChatServer.start({ engine, port: 0, log: () => {} });
  try {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const c = chat('mixed_grid_two_images_16x');
    const dataUrl = (file: string) => `data:image/png;base64,${readFileSync(fixturePath(FIXTURE, file)).toString('base64')}`;
    const [first, second] = c.images.map((image) => dataUrl(image.file));
    const question = (c.messages[0]!.content as { type: string; text?: string }[]).find((p) => p.type === 'text')!.text!;
    const reply = await client.chat.completions.create({
      model: 'minicpmv46-tiny',
      messages: [{ role: 'user', content: [
        { type: 'image_url', image_url: { url: first! } },
        { type: 'image_url', image_url: { url: second! } },
        { type: 'text', text: question },
      ] }],
      temperature: 0,
      max_tokens: 24,
    });
    assert.equal(reply.choices[0]!.message.content, c.runs.greedy.text);
    const system = chat('multi_turn_system');
    const withSystem = await client.chat.completions.create({
      model: 'minicpmv46-tiny',
      messages: system.messages.map((m) => ({
        role: m.role,
        content: (m.content as { type: string; text?: string }[]).map((p) => (p.type === 'image'
          ? { type: 'image_url', image_url: { url: dataUrl(system.images[0]!.file) } }
          : { type: 'text', text: p.text! })),
      })) as never,
      temperature: 0,
      max_tokens: 24,
    });
    assert.equal(withSystem.choices[0]!.message.content, system.runs.greedy.text);
  } finally {
    await server.close();
    await engine.close();
  }
});
