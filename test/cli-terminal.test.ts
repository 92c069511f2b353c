// The CLI on a pseudo-terminal, as a user sees it: interactive chat sessions, beam search's note, the convert bar.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertCleanError, CLI, cli, copyModel, FIXTURE, MODEL, scratch, type GreedyChat } from './helpers/cli.js';
import { fixturePath, readFixtureJson } from './helpers/fixtures.js';

/** What readline draws before its "> " prompt. */
const PROMPT = '\x1b[0J> ';

/**
 * Runs a shell command on a pseudo-terminal of 80 columns (util-linux `script`), typing the lines of `input` one at
 * a time, each once the session shows its next prompt; resolves with everything the terminal showed.
 */
async function inTerminal(command: string, input: string[] = []): Promise<string> {
  const child = spawn('script', ['-qec', `stty cols 80 rows 24; ${command}`, '/dev/null'],
    { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: ['pipe', 'pipe', 'inherit'] });
  let shown = '';
  let typed = 0;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    shown += chunk;
    // stdin stays open after the last line: its end would hang up the terminal.
    if (typed < input.length && shown.split(PROMPT).length - 1 > typed) child.stdin.write(`${input[typed++]}\n`);
  });
  const [code] = (await once(child, 'exit')) as [number];
  child.stdin.destroy();
  assert.equal(code, 0, shown);
  return shown;
}

const quoted = (path: string) => `'${path}'`;
const cliCommand = (...args: string[]) => [process.execPath, CLI, ...args].map(quoted).join(' ');

test('on a terminal: beam search says it is thinking, then clears the note for the answer', async () => {
  const shown = await inTerminal(cliCommand('chat', '--model', MODEL, '--decoding', 'beam', '--max-new-tokens', '8', '--threads', '1', 'hi'));
  assert.match(shown, /^thinking… \(beam search shows the answer when it is complete\)\r\x1b\[K[^\r\n]+\r?\n/);
});

test('on a terminal: an unknown /command in a session is refused, not sent to the model; // asks literally', async () => {
  const shown = await inTerminal(cliCommand('chat', '--model', MODEL, '--decoding', 'greedy', '--max-new-tokens', '4', '--threads', '1'),
    ['/bogus now', '//etc what is it', '/exit']);
  assert.match(shown, /unknown command \/bogus: \/image <path>, \/reset, \/exit/);
  // One answer only: the literal question's (the model's answer is followed by the next prompt).
  const afterLiteral = shown.slice(shown.indexOf('//etc what is it'));
  assert.doesNotMatch(afterLiteral, /unknown command/);
  assert.equal(shown.split('unknown command').length, 2);
});

test('on a terminal: the convert bar fits 80 columns and ends at 100 %', async () => {
  const shown = await inTerminal(cliCommand('convert', '--model', MODEL, '--cache-dir', join(scratch, 'progress-cache'), '--threads', '1'));
  const frames = shown.split(/\r\n?|\n/).flatMap((line) => line.split('\r')).map((frame) => frame.replace('\x1b[K', ''));
  const bars = frames.filter((frame) => / \[[#-]+\] +\d+%/.test(frame));
  assert.ok(bars.length > 0, shown);
  for (const bar of bars) assert.ok(bar.length <= 79, `${bar.length} columns: ${bar}`);
  assert.match(bars.at(-1)!, /\] 100% 9\.5 MB\/9\.5 MB/);
});

test('on a terminal: /image without a path says that it needs one', async () => {
  const shown = await inTerminal(cliCommand('chat', '--model', MODEL, '--decoding', 'greedy', '--max-new-tokens', '4', '--threads', '1'), ['/image', '/exit']);
  assert.match(shown, /error: \/image needs the path of an image: \/image <path>/);
  assert.doesNotMatch(shown, /image not found/);
});

test('on a terminal: a turn that no longer fits the context says to type /reset; a one-shot chat does not', async () => {
  // The fixture question's official prompt leaves 3 positions: the first answer fits (cut short), the second turn's
  // prompt (the first turn, its answer and a new question) does not.
  const c = readFixtureJson<GreedyChat>(FIXTURE, 'llm', 'single_turn_grad.json');
  const small = copyModel('context-full');
  const context = c.input_ids.length + 3;
  const config = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
  writeFileSync(join(small, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: context }));
  const args = ['chat', '--model', small, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy', '--max-new-tokens', '24', '--threads', '1'];
  const shown = await inTerminal(cliCommand(...args), [c.msgs[0]!.content, 'and then?', '/reset', 'hi', '/exit']);
  const full = `the prompt has \\d+ tokens and fills the ${context}-token context`;
  assert.match(shown, new RegExp(`error: ${full}: type /reset to start a new conversation\\r?\\n`));
  assert.equal(shown.split('error:').length, 2, 'after /reset the question is answered');

  const messages = join(scratch, 'grown.json');
  writeFileSync(messages, JSON.stringify([c.msgs[0], { role: 'assistant', content: 'a long answer '.repeat(8) }, { role: 'user', content: 'and then?' }]));
  assertCleanError(await cli([...args, '--messages', messages]), new RegExp(`^error: ${full}\\n$`));
});

test('on a terminal: an answer cut short because the conversation filled the context says to type /reset; a one-shot chat does not', async () => {
  // In fp32 the first answer is the official one, 10 tokens ending in EOS; the second turn's prompt (the first turn, its
  // answer and a new question) is shorter than the context but leaves less room than --max-new-tokens.
  const c = readFixtureJson<GreedyChat & { runs: Record<string, { text: string }> }>(FIXTURE, 'llm', 'single_turn_grad.json');
  const small = copyModel('context-fills');
  const context = c.input_ids.length + c.runs.greedy!.new_token_ids.length + 16;
  const config = JSON.parse(readFileSync(join(small, 'config.json'), 'utf8'));
  writeFileSync(join(small, 'config.json'), JSON.stringify({ ...config, max_position_embeddings: context }));
  const args = ['chat', '--model', small, '--image', fixturePath(FIXTURE, c.input.file), '--decoding', 'greedy', '--max-new-tokens', '24',
    '--precision', 'fp32', '--vision-precision', 'fp32', '--threads', '1'];
  const shown = await inTerminal(cliCommand(...args), [c.msgs[0]!.content, 'and then?', '/exit']);
  const full = `note: the answer was cut short where the model's ${context}-token context is full \\(a \\d+-token prompt and \\d+ new tokens\\)`;
  assert.match(shown, new RegExp(`${full}: type /reset to start a new conversation for a longer answer\\r?\\n`));
  assert.equal(shown.split('note:').length, 2, 'the first answer came to its end');

  const messages = join(scratch, 'filling.json');
  writeFileSync(messages, JSON.stringify([c.msgs[0], { role: 'assistant', content: c.runs.greedy!.text }, { role: 'user', content: 'and then?' }]));
  const oneShot = await cli([...args, '--messages', messages]);
  assert.equal(oneShot.code, 0, oneShot.stderr);
  assert.match(oneShot.stderr, new RegExp(`^${full}: ask in a shorter conversation for a longer answer\\n$`));
});
