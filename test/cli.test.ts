// The CLI contract, driven in a subprocess as users and other checks drive it: what each command answers, its help and
// its flags. Bad input is in cli-errors.test.ts, sessions on a terminal in cli-terminal.test.ts.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { SafetensorsFile } from '../src/checkpoint/safetensors.js';
import { assertCleanError, CLI, cli, copyModel, FIXTURE, MODEL, scratch, type GreedyChat, type Outcome } from './helpers/cli.js';
import { fixturePath, maxAbsDiff, readFixtureJson, repoRoot } from './helpers/fixtures.js';

interface EncodeCase { text: string; input_ids: number[] }

test('tokenize --json prints the official prompt ids', async () => {
  const { encode } = readFixtureJson<{ encode: EncodeCase[] }>(FIXTURE, 'tokenizer', 'cases.json');
  for (const c of encode.filter((_, i) => i % 8 === 0)) {
    const out = await cli(['tokenize', '--model', MODEL, '--json', c.text]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), { ids: c.input_ids });
  }
});

interface PreprocessCase {
  input: { file: string; decoded_png?: string };
  best_grid: [number, number] | null;
  source_size_wh: [number, number];
  patches_size_wh: [number, number][][];
  n_slices: number;
  placeholder: string;
}

test('inspect-image --json reports the official slice plan and placeholder for every image', async () => {
  for (const file of readdirSync(fixturePath(FIXTURE, 'preprocess')).filter((f) => f.endsWith('.json'))) {
    const c = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', file);
    const out = await cli(['inspect-image', '--model', MODEL, '--json', fixturePath(FIXTURE, c.input.file)]);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), {
      source: c.source_size_wh,
      grid: c.best_grid,
      slices: c.patches_size_wh.flat(),
      placeholder: c.placeholder,
      image_tokens: c.n_slices * 16,
    }, file);
  }
});

test('inspect-image --pixels writes every slice\'s normalised pixels', async () => {
  const c = readFixtureJson<PreprocessCase>(FIXTURE, 'preprocess', 'wide_1000x300.json');
  const path = join(scratch, 'pixels.safetensors');
  const out = await cli(['inspect-image', '--model', MODEL, '--json', '--pixels', path, fixturePath(FIXTURE, c.input.file)]);
  assert.equal(out.code, 0, out.stderr);
  const pixels = new SafetensorsFile(path);
  const golden = new SafetensorsFile(fixturePath(FIXTURE, 'preprocess', 'wide_1000x300.safetensors'));
  try {
    assert.deepEqual([...pixels.tensors.keys()], ['slice_00', 'slice_01', 'slice_02', 'slice_03']);
    for (const name of pixels.tensors.keys()) {
      const [, h, w] = pixels.info(name).shape as [number, number, number];
      const full = pixels.float32(name);
      const crop = new Float32Array(3 * 28 * 42);
      for (let ch = 0; ch < 3; ch++) for (let y = 0; y < 28; y++) for (let x = 0; x < 42; x++) {
        crop[(ch * 28 + y) * 42 + x] = full[(ch * h + y) * w + x]!;
      }
      assert.ok(maxAbsDiff(crop, golden.float32(`${name}.pixel_values_crop`)) <= 1e-6, name);
    }
  } finally {
    pixels.close();
    golden.close();
  }
});

test('chat --json answers token-exact (greedy) with prompt and output ids', async () => {
  const c = readFixtureJson<{ msgs: { content: string }[]; input: { file: string }; input_ids: number[]; runs: Record<string, { new_token_ids: number[]; text: string }> }>(
    FIXTURE, 'llm', 'single_turn_grad.json');
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy',
    '--max-new-tokens', '24', '--precision', 'fp32', '--vision-precision', 'fp32', '--json', c.msgs[0]!.content]);
  assert.equal(out.code, 0, out.stderr);
  const greedy = c.runs.greedy!;
  // The official answer ends with its EOS after 10 of the 24 tokens allowed: it stopped, nothing was cut.
  assert.deepEqual(JSON.parse(out.stdout), { text: greedy.text, prompt_ids: c.input_ids, output_ids: greedy.new_token_ids, finish_reason: 'stop' });
  assert.doesNotMatch(out.stderr, /note:/);
});

test('chat --messages with --decoding beam follows the official non-sampling defaults', async () => {
  const c = readFixtureJson<{ msgs: unknown[]; input: { file: string }; runs: Record<string, { new_token_ids: number[]; text: string }> }>(
    FIXTURE, 'llm', 'two_turn_wide.json');
  const messages = join(scratch, 'msgs.json');
  writeFileSync(messages, JSON.stringify(c.msgs));
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--messages', messages,
    '--decoding', 'beam', '--max-new-tokens', '24', '--precision', 'fp32', '--vision-precision', 'fp32', '--json']);
  assert.equal(out.code, 0, out.stderr);
  const beam = c.runs['beam3_rp1.2']!;
  assert.deepEqual(JSON.parse(out.stdout).output_ids, beam.new_token_ids);
});

test('--vision-precision: convert caches the quantised tower as its own entry, and chat answers from it', async () => {
  const model = fixturePath('omnilmm12b-tiny', 'model');
  const cacheDir = join(scratch, 'vision-precision-cache');
  // convert prints one line per graph: "  <part> <size>  built|already converted".
  const parts = (out: Outcome) =>
    Object.fromEntries([...out.stdout.matchAll(/^ {2}(\S+) +\S+ \S+ {2}(built|already converted)$/gm)].map((m) => [m[1], m[2]]));
  const convert = async (...args: string[]) => {
    const out = await cli(['convert', '--model', model, '--cache-dir', cacheDir, '--threads', '1', '--precision', 'fp32', ...args]);
    assert.equal(out.code, 0, out.stderr);
    return parts(out);
  };
  const built = { 'eva-vision': 'built', resampler: 'built', decoder: 'built' };
  assert.deepEqual(await convert('--vision-precision', 'int8'), built);
  assert.deepEqual(await convert('--vision-precision', 'int8'), { 'eva-vision': 'already converted', resampler: 'already converted', decoder: 'already converted' });
  // Another tower precision is another tower graph; the resampler and the decoder do not depend on it.
  assert.deepEqual(await convert('--vision-precision', 'int4'), { ...built, resampler: 'already converted', decoder: 'already converted' });
  assert.deepEqual(await convert('--vision-precision', 'fp32'), { ...built, resampler: 'already converted', decoder: 'already converted' });
  assert.deepEqual(await convert('--vision-precision', 'fp32'), { 'eva-vision': 'already converted', resampler: 'already converted', decoder: 'already converted' });

  const out = await cli(['chat', '--model', model, '--image', fixturePath('omnilmm12b-tiny', 'images', 'grad_100x80.png'), '--vision-precision', 'int8', '--precision', 'fp32',
    '--decoding', 'greedy', '--max-new-tokens', '4', '--threads', '1', '--json', 'What is in the image?'], { OMNILMM_CACHE: cacheDir });
  assert.equal(out.code, 0, out.stderr);
  assert.equal(JSON.parse(out.stdout).output_ids.length, 4);
  assert.equal(readdirSync(readdirSync(cacheDir).map((key) => join(cacheDir, key))[0]!).filter((f) => f.startsWith('eva-vision-')).length, 3,
    'chat used the converted int8 tower instead of building another');
});

test('convert refuses a cache folder it cannot write, before building; chat builds without it, with one warning line a part', async () => {
  const file = join(scratch, 'cache-is-a-file');
  writeFileSync(file, 'not a folder');
  const under = join(file, 'sub');
  assertCleanError(await cli(['convert', '--model', MODEL, '--cache-dir', under, '--threads', '1']), /the cache folder .*cache-is-a-file\/sub cannot be written \(ENOTDIR\): choose another with --cache-dir/);
  assertCleanError(await cli(['convert', '--model', MODEL, '--cache-dir', '', '--threads', '1']), /^error: --cache-dir needs a value, got an empty string\n$/);
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, 'images', 'grad_100x80.png'), '--precision', 'fp32', '--vision-precision', 'fp32',
    '--decoding', 'greedy', '--max-new-tokens', '2', '--threads', '1', '--json', 'What is in the image?'], { OMNILMM_CACHE: under });
  assert.equal(out.code, 0, out.stderr);
  const warnings = out.stderr.split('\n').filter((line) => line.includes('is not writable'));
  assert.ok(warnings.length >= 1 && warnings.every((line) => line.startsWith('warning: the model cache ')), out.stderr);
  assert.doesNotMatch(out.stderr, /\(node:\d+\)|--trace-warnings/);
});

test('chat --help tells about several images, video, the downsample mode, thinking and content parts', async () => {
  const out = await cli(['chat', '--help']);
  assert.equal(out.code, 0, out.stderr);
  for (const text of ['[--image <path>]...', '--video <folder|file>', '--video-fps F', '--downsample-mode 16x|4x', '--thinking', '"system"', '[{"type":"image"},{"type":"video"},{"type":"text","text":"…"}]']) {
    assert.ok(out.stdout.includes(text), text);
  }
  const inspect = await cli(['inspect-image', '--help']);
  assert.ok(inspect.stdout.includes('--downsample-mode 16x|4x'));
});

test('chat --messages with content parts: the --image file fills the image part, token-exact', async () => {
  const c = readFixtureJson<{ msgs: { content: string }[]; input: { file: string }; input_ids: number[]; runs: Record<string, { new_token_ids: number[]; text: string }> }>(
    FIXTURE, 'llm', 'single_turn_grad.json');
  const messages = join(scratch, 'parts.json');
  writeFileSync(messages, JSON.stringify([{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: c.msgs[0]!.content }] }]));
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--messages', messages, '--decoding', 'greedy',
    '--max-new-tokens', '24', '--downsample-mode', '16x', '--precision', 'fp32', '--vision-precision', 'fp32', '--json']);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout), {
    text: c.runs.greedy!.text, prompt_ids: c.input_ids, output_ids: c.runs.greedy!.new_token_ids, finish_reason: 'stop',
  });
});

test('a closed stdout (`| head -c 20`) ends chat at once and quietly with status 141, streamed or --json', async () => {
  for (const json of [false, true]) {
    const child = spawn(process.execPath, [CLI, 'chat', '--model', MODEL, '--decoding', 'greedy', '--max-new-tokens', json ? '300' : '1500',
      '--threads', '1', ...(json ? ['--json'] : []), 'Tell me a story.'], { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    // As `head -c 20` does: read a little, then close the pipe (--json writes once, at the end: close it at once).
    if (json) child.stdout.destroy();
    else child.stdout.once('data', () => child.stdout.destroy());
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(stderr, '', json ? '--json' : 'streamed');
    assert.equal(code, 141, json ? '--json' : 'streamed');
  }
});

/** Runs the CLI with its stdin fed from `input` (a pipe), as `echo … | omnilmm …` does. */
async function cliWithInput(args: string[], input: string): Promise<Outcome> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdin.end(input);
  const [code] = (await once(child, 'exit')) as [number];
  return { code, stdout, stderr };
}

test('a question piped into chat is asked; an empty pipe says how to give one', async () => {
  const c = readFixtureJson<{ msgs: { content: string }[]; input: { file: string }; runs: Record<string, { new_token_ids: number[] }> }>(
    FIXTURE, 'llm', 'single_turn_grad.json');
  const out = await cliWithInput(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy',
    '--max-new-tokens', '24', '--threads', '1', '--precision', 'fp32', '--vision-precision', 'fp32', '--json'], `${c.msgs[0]!.content}\n`);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout).output_ids, c.runs.greedy!.new_token_ids);
  assertCleanError(await cliWithInput(['chat', '--model', MODEL, '--json'], '  \n'), /^error: no question: .*pipe it in/);
});

test('serve knows --keep-vision-loaded as a flag, and refuses it with --web (which serves static files only)', async () => {
  assertCleanError(await cli(['serve', '--web', scratch, '--keep-vision-loaded']), /--keep-vision-loaded does not apply to it/);
  assertCleanError(await cli(['serve', '--keep-vision-loaded=yes']), /'--keep-vision-loaded' does not take an argument/);
});

test('--version prints the package version', async () => {
  const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-v']) {
    const out = await cli([flag]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(out.stdout, `omnilmm ${version}\n`);
  }
});

test('serve refuses a port in use before it loads the model', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', () => resolve()));
  try {
    const port = (taken.address() as AddressInfo).port;
    // The model folder does not exist: had serve loaded first, that would be the error.
    const out = await cli(['serve', '--model', join(scratch, 'no-such-model'), '--port', String(port)]);
    assertCleanError(out, new RegExp(`port ${port} is in use: pick another with --port`));
  } finally {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
  }
});

test('an answer cut short says which limit cut it: a note on stderr, and finish_reason "length" in --json', async () => {
  // The official greedy answer is 10 tokens long (EOS last): 5 tokens, or a context with room for 3, cut it short.
  const c = readFixtureJson<GreedyChat>(FIXTURE, 'llm', 'single_turn_grad.json');
  const official = c.runs.greedy!.new_token_ids;
  const ask = (model: string, ...args: string[]) => cli(['chat', '--model', model, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy',
    '--precision', 'fp32', '--vision-precision', 'fp32', '--threads', '1', ...args, c.msgs[0]!.content]);
  const limited = await ask(MODEL, '--max-new-tokens', '5', '--json');
  assert.equal(limited.code, 0, limited.stderr);
  const report = JSON.parse(limited.stdout);
  assert.deepEqual([report.prompt_ids, report.output_ids, report.finish_reason], [c.input_ids, official.slice(0, 5), 'length']);
  assert.equal(limited.stderr, 'note: the answer was cut short at --max-new-tokens 5: raise it for a longer answer\n');
  const streamed = await ask(MODEL, '--max-new-tokens', '5');
  assert.equal(streamed.code, 0, streamed.stderr);
  assert.notEqual(streamed.stdout.trim(), '');
  assert.equal(streamed.stderr, limited.stderr);

  const small = copyModel('small-context');
  const context = c.input_ids.length + 3;
  const config = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
  writeFileSync(join(small, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: context }));
  const full = await ask(small, '--max-new-tokens', '24', '--json');
  assert.equal(full.code, 0, full.stderr);
  assert.deepEqual(JSON.parse(full.stdout).output_ids, official.slice(0, 3));
  assert.equal(JSON.parse(full.stdout).finish_reason, 'length');
  assert.equal(full.stderr, `note: the answer was cut short where the model's ${context}-token context is full ` +
    `(a ${c.input_ids.length}-token prompt and 3 new tokens): ask in a shorter conversation for a longer answer\n`);
});

test('MiniCPM-V 4.6: an answer cut at the default limit (generation_config\'s max_new_tokens) says so; one that ends does not', async () => {
  // The official greedy answer: 13 tokens, the last one <|endoftext|>.
  const c = readFixtureJson<{ images: { file: string }[]; messages: { content: { type: string; text?: string }[] }[]; runs: { greedy: { new_token_ids: number[] } } }>(
    'minicpmv46-tiny', 'llm', 'eos_stop.json');
  const official = c.runs.greedy.new_token_ids;
  const model46 = fixturePath('minicpmv46-tiny', 'model');
  const capped = copyModel('minicpmv46-capped', model46);
  const generation = JSON.parse(readFileSync(join(capped, 'generation_config.json'), 'utf8'));
  writeFileSync(join(capped, 'generation_config.json'), JSON.stringify({ ...generation, max_new_tokens: 3 }));
  const ask = (model: string) => cli(['chat', '--model', model, '--image', fixturePath('minicpmv46-tiny', c.images[0]!.file), '--decoding', 'greedy',
    '--precision', 'fp32', '--vision-precision', 'fp32', '--threads', '1', '--json', c.messages[0]!.content.find((p) => p.type === 'text')!.text!]);
  const cut = await ask(capped);
  assert.equal(cut.code, 0, cut.stderr);
  assert.deepEqual([JSON.parse(cut.stdout).output_ids, JSON.parse(cut.stdout).finish_reason], [official.slice(0, 3), 'length']);
  assert.equal(cut.stderr, 'note: the answer was cut short at the model\'s default limit of 3 new tokens: raise it with --max-new-tokens\n');
  const whole = await ask(model46);
  assert.equal(whole.code, 0, whole.stderr);
  assert.deepEqual([JSON.parse(whole.stdout).output_ids, JSON.parse(whole.stdout).finish_reason], [official, 'stop']);
  assert.doesNotMatch(whole.stderr, /note:/);
});

test('chat --help gives each model family\'s own decoding defaults', async () => {
  const help = (await cli(['chat', '--help'])).stdout.replace(/\s+/g, ' ');
  // The official chat()s' settings (the fixtures' READMEs quote them), and MiniCPM-V 4.6's generation_config.json.
  const official = [
    'MiniCPM-V 2.0 sample: temperature 0.7, top_p 0.8, top_k 100, repetition penalty 1.05 beam: 3 beams, repetition penalty 1.2; --max-new-tokens 1024',
    'MiniCPM-V 1.0 sample: temperature 0.6, top_p 0.8, top_k 100, repetition penalty 1.0 beam: 3 beams, repetition penalty 1.2; --max-new-tokens 2048',
    'OmniLMM-12B sample: temperature 0.6, top_p 0.9, top_k 30, repetition penalty 1.1 beam: 3 beams, repetition penalty 1.0; --max-new-tokens 1024 ' +
      '(its official chat has no beam search; here beam search takes no penalty)',
  ];
  for (const line of official) assert.ok(help.includes(line), line);
  const g = JSON.parse(readFileSync(fixturePath('minicpmv46-tiny', 'model', 'generation_config.json'), 'utf8'));
  const released = `temperature ${g.temperature}, top_p ${g.top_p.toFixed(1)}, top_k ${g.top_k} (off), repetition penalty ${g.repetition_penalty.toFixed(1)}`;
  assert.ok(help.includes(`MiniCPM-V 4.6 the checkpoint's generation_config.json`) && help.includes(released), released);
  assert.doesNotMatch(help, /sample \(default: top_p 0\.8/, 'no one family\'s settings given as everyone\'s');
});

test('tokenize --help is true for every family; help <command> is that command\'s help; after -- nothing is an option', async () => {
  const help = await cli(['tokenize', '--help']);
  assert.equal(help.code, 0);
  assert.doesNotMatch(help.stdout, /BOS comes first/);
  assert.match(help.stdout.replace(/\s+/g, ' '), /MiniCPM-V 4\.6: byte-level BPE \(tokenizer\.json\), no BOS/);
  // As the help says: MiniCPM-V 4.6's ids have no BOS (the official tokenizer's ids for a case).
  const { encode } = readFixtureJson<{ encode: EncodeCase[] }>('minicpmv46-tiny', 'tokenizer', 'cases.json');
  const ids = await cli(['tokenize', '--model', fixturePath('minicpmv46-tiny', 'model'), '--json', encode[0]!.text]);
  assert.deepEqual(JSON.parse(ids.stdout), { ids: encode[0]!.input_ids });

  for (const command of ['chat', 'tokenize', 'export-web']) {
    const viaHelp = await cli(['help', command]);
    assert.equal(viaHelp.code, 0, command);
    assert.equal(viaHelp.stdout, (await cli([command, '--help'])).stdout, command);
  }
  assertCleanError(await cli(['help', 'bogus']), /unknown command "bogus"/);

  const bos = readFixtureJson<{ special_ids: { bos_id: number } }>(FIXTURE, 'tokenizer', 'cases.json').special_ids.bos_id;
  for (const text of ['--help', '-h']) {
    const out = await cli(['tokenize', '--model', MODEL, '--json', '--', text]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).ids[0], bos, text);
    assert.ok(JSON.parse(out.stdout).ids.length > 1, text);
  }
});

test('--threads above the machine\'s cores is allowed with a warning; the help says so', async () => {
  const cores = availableParallelism();
  const out = await cli(['chat', '--model', MODEL, '--threads', String(cores + 1), '--decoding', 'greedy', '--max-new-tokens', '2', '--json', 'hi']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stderr, new RegExp(`^warning: --threads ${cores + 1} is more than this machine's ${cores} cores: .*leave --threads out for one per core\n`));
  for (const command of ['chat', 'serve', 'convert']) {
    assert.match((await cli([command, '--help'])).stdout.replace(/\s+/g, ' '), /more than the cores are allowed, with a warning/, command);
  }
});

test('an empty question is refused for every family; a --messages file may start with a byte order mark', async () => {
  for (const model of [MODEL, fixturePath('minicpmv46-tiny', 'model')]) {
    const out = await cli(['chat', '--model', model, '--json', ' \t ']);
    assertCleanError(out, /^error: the question is empty: ask something\n$/);
    assert.equal(out.code, 2);
  }
  const c = readFixtureJson<GreedyChat & { runs: Record<string, { text: string }> }>(FIXTURE, 'llm', 'single_turn_grad.json');
  const messages = join(scratch, 'bom.json');
  writeFileSync(messages, `\uFEFF${JSON.stringify(c.msgs)}`);
  const out = await cli(['chat', '--model', MODEL, '--image', fixturePath(FIXTURE, c.input.file), '--messages', messages, '--decoding', 'greedy',
    '--max-new-tokens', '24', '--precision', 'fp32', '--vision-precision', 'fp32', '--json']);
  assert.equal(out.code, 0, out.stderr);
  assert.deepEqual(JSON.parse(out.stdout).output_ids, c.runs.greedy!.new_token_ids);
});
