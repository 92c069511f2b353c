// The OpenAI-compatible server on the tiny fixture model, driven by the official `openai` client: answers are
// token-exact with the fixture's greedy and beam runs, whole and streamed. Several images, system messages and the
// extension fields reach the engine as they were sent; an answer's think part comes back as reasoning_content (a
// scripted engine supplies such answers).

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import type OpenAI from 'openai';
import { WorkerEngine } from '../src/chat/worker-engine.js';
import type { ChatServer } from '../src/server/server.js';
import { readFixtureJson } from './helpers/fixtures.js';
import { ScriptedEngine } from './helpers/scripted-engine.js';
import { apiError, client, pngDataUrl, withEngineServer, withServer } from './helpers/server.js';
import { dataUrl, FP32, fixturePng, grad, type LlmCase, serveTinyModel, TINY_FIXTURE, TINY_MODEL, wireMessages } from './helpers/tiny-model.js';

const startServer = serveTinyModel();

describe('answers equal the fixture', () => {
  let server: ChatServer;
  before(async () => {
    server = await startServer();
  });

  test('non-streaming greedy: token-exact text, usage and finish reason of single_turn_grad', async () => {
    const run = grad.runs.greedy!;
    const completion = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24,
    });
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.choices.length, 1);
    assert.equal(completion.choices[0]!.message.role, 'assistant');
    assert.equal(completion.choices[0]!.message.content, run.text);
    assert.equal(completion.choices[0]!.finish_reason, 'stop');
    assert.equal(completion.usage!.prompt_tokens, grad.input_ids.length);
    assert.equal(completion.usage!.completion_tokens, run.new_token_ids.length);
    assert.equal(completion.usage!.total_tokens, grad.input_ids.length + run.new_token_ids.length);
    assert.equal(completion.model, TINY_MODEL);
  });

  test('streaming: chunks add up to the same answer, then finish_reason, usage and [DONE]', async () => {
    const run = grad.runs.greedy!;
    const stream = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24, stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.equal(chunks[0]!.object, 'chat.completion.chunk');
    assert.equal(chunks[0]!.choices[0]!.delta.role, 'assistant');
    const contents = chunks.flatMap((c) => c.choices.map((choice) => choice.delta.content ?? ''));
    assert.equal(contents.join(''), run.text);
    assert.ok(contents.filter(Boolean).length > 1, 'the answer arrives in several chunks');
    const finishes = chunks.flatMap((c) => c.choices.map((choice) => choice.finish_reason).filter(Boolean));
    assert.deepEqual(finishes, ['stop']);
    const usage = chunks.at(-1)!.usage!;
    assert.equal(usage.prompt_tokens, grad.input_ids.length);
    assert.equal(usage.completion_tokens, run.new_token_ids.length);
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1);
  });

  test('a multi-turn conversation (two_turn_wide) and a Chinese one (zh_plain_gray), greedy', async () => {
    for (const name of ['two_turn_wide', 'zh_plain_gray']) {
      const c = readFixtureJson<LlmCase>(TINY_FIXTURE, 'llm', `${name}.json`);
      const run = c.runs.greedy!;
      const completion = await client(server).chat.completions.create({
        model: 'tiny', messages: wireMessages(c), temperature: 0, max_tokens: run.chat_kwargs.max_new_tokens,
      });
      assert.equal(completion.choices[0]!.message.content, run.text, name);
      assert.equal(completion.usage!.prompt_tokens, c.input_ids.length, name);
      assert.equal(completion.usage!.completion_tokens, run.new_token_ids.length, name);
      assert.equal(completion.choices[0]!.finish_reason, 'length', name);
    }
  });

  test('num_beams 3 (an extension field) is beam search: the fixture beam run, streamed as one chunk', async () => {
    const run = grad.runs['beam3_rp1.2']!;
    const body = { model: 'tiny', messages: wireMessages(grad), max_tokens: 24, num_beams: 3 };
    const completion = await client(server).chat.completions.create(body);
    assert.equal(completion.choices[0]!.message.content, run.text);
    assert.equal(completion.usage!.completion_tokens, run.new_token_ids.length);
    assert.equal(completion.choices[0]!.finish_reason, 'length');
    const stream = await client(server).chat.completions.create({ ...body, stream: true });
    const contents: string[] = [];
    for await (const chunk of stream) contents.push(...chunk.choices.map((c) => c.delta.content ?? '').filter(Boolean));
    assert.deepEqual(contents, [run.text]);
  });

  test('stop: the answer ends before the first stop string, with finish_reason "stop"', async () => {
    const run = grad.runs.greedy!;
    const stop = ' first';
    const expected = run.text.slice(0, run.text.indexOf(stop));
    const completion = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24, stop: [stop, 'never appears'],
    });
    assert.equal(completion.choices[0]!.message.content, expected);
    assert.equal(completion.choices[0]!.finish_reason, 'stop');
    assert.ok(completion.usage!.completion_tokens < run.new_token_ids.length);
  });
});

test('with the worker-thread engine (what serve runs) num_beams 3 is the fixture beam run, and 4 is over the limit', async () => {
  await withEngineServer(() => WorkerEngine.start(TINY_MODEL, FP32), async (server) => {
    const body = { model: 'tiny', messages: wireMessages(grad), max_tokens: 24 };
    const completion = await client(server).chat.completions.create({ ...body, num_beams: 3 } as never) as OpenAI.ChatCompletion;
    assert.equal(completion.choices[0]!.message.content, grad.runs['beam3_rp1.2']!.text);
    const err = await apiError(client(server).chat.completions.create({ ...body, num_beams: 4 } as never));
    assert.equal(err.status, 400);
    assert.equal(err.param, 'num_beams');
  });
});

describe('several images, system messages, downsample_mode and thinking', () => {
  test('image_url parts reach the engine in order, each as an image part where it was sent', async () => {
    const engine = new ScriptedEngine(['Two pictures.']);
    await withServer(engine, async (server) => {
      const [a, b, c] = [fixturePng('grad_100x80.png'), fixturePng('shapes_448x448.png'), fixturePng('gray_500x375.png')];
      const completion = await client(server).chat.completions.create({
        model: 'scripted',
        messages: [
          { role: 'developer', content: 'Be brief.' },
          { role: 'user', content: [{ type: 'image_url', image_url: { url: pngDataUrl(a) } }, { type: 'text', text: 'and' }, { type: 'image_url', image_url: { url: pngDataUrl(b) } }] },
          { role: 'assistant', content: 'Two.' },
          { role: 'user', content: [{ type: 'text', text: 'And this?' }, { type: 'image_url', image_url: { url: pngDataUrl(c) } }] },
        ],
        downsample_mode: '4x',
        thinking: true,
      } as never) as OpenAI.ChatCompletion;
      // Thinking was asked for and the answer never closed its think part: all of it is reasoning.
      assert.deepEqual(completion.choices[0]!.message, { role: 'assistant', content: '', reasoning_content: 'Two pictures.' });
      const request = engine.requests[0]!;
      assert.deepEqual(request.messages, [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'and' }, { type: 'image' }] },
        { role: 'assistant', content: 'Two.' },
        { role: 'user', content: [{ type: 'text', text: 'And this?' }, { type: 'image' }] },
      ]);
      assert.deepEqual(request.images!.map((bytes) => Buffer.from(bytes)), [a, b, c]);
      assert.equal(request.downsampleMode, '4x');
      assert.equal(request.thinking, true);
      // vLLM's form of the switch.
      await client(server).chat.completions.create({ model: 'scripted', messages: [{ role: 'user', content: 'Hi' }], chat_template_kwargs: { enable_thinking: true } } as never);
      assert.equal(engine.requests[1]!.thinking, true);
      assert.equal(engine.requests[1]!.downsampleMode, undefined);
    });
  });

  test('a data: URL in any case is read: URL schemes and media types are case-insensitive', async () => {
    const engine = new ScriptedEngine(['A gradient.']);
    await withServer(engine, async (server) => {
      const bytes = fixturePng('grad_100x80.png');
      const base64 = bytes.toString('base64');
      for (const url of [`DATA:IMAGE/PNG;BASE64,${base64}`, `Data:Image/Png;Base64,${base64}`]) {
        await client(server).chat.completions.create({
          model: 'scripted', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }],
        });
        assert.deepEqual(engine.requests.map((r) => r.images!.map((image) => Buffer.from(image))).at(-1), [bytes], url.slice(0, 24));
      }
    });
  });

  test('no tools, "tool_choice": "none" and text-only "modalities" ask for nothing more and are answered; real asks are 400', async () => {
    const engine = new ScriptedEngine(['Hello.']);
    await withServer(engine, async (server) => {
      const messages = [{ role: 'user', content: 'Hi' }];
      const answered: Record<string, unknown>[] = [
        { tools: [] }, { tools: [], tool_choice: 'none' }, { functions: [] }, { modalities: ['text'] },
      ];
      for (const fields of answered) {
        const completion = await client(server).chat.completions.create({ model: 'scripted', messages, ...fields } as never) as OpenAI.ChatCompletion;
        assert.equal(completion.choices[0]!.message.content, 'Hello.', JSON.stringify(fields));
      }
      const tool = { type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } };
      const refused: [Record<string, unknown>, string][] = [
        [{ tools: [tool] }, 'tools'], [{ tools: {} }, 'tools'], [{ tool_choice: 'auto' }, 'tool_choice'],
        [{ modalities: ['text', 'audio'] }, 'modalities'], [{ modalities: ['audio'] }, 'modalities'], [{ modalities: [] }, 'modalities'],
      ];
      for (const [fields, param] of refused) {
        const err = await apiError(client(server).chat.completions.create({ model: 'scripted', messages, ...fields } as never));
        assert.equal(err.status, 400, JSON.stringify(fields));
        assert.equal(err.param, param, JSON.stringify(fields));
      }
    });
  });

  test('bad extension fields and misplaced system messages are 400 and name the field', async () => {
    const server = await startServer();
    const image = { type: 'image_url', image_url: { url: dataUrl(grad.input.file) } };
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: wireMessages(grad), downsample_mode: '8x' }, 'downsample_mode'],
      [{ messages: wireMessages(grad), thinking: 'yes' }, 'thinking'],
      [{ messages: wireMessages(grad), chat_template_kwargs: { enable_thinking: 1 } }, 'chat_template_kwargs.enable_thinking'],
      [{ messages: [{ role: 'user', content: 'Hi' }, { role: 'system', content: 'Late.' }] }, 'messages[1].role'],
      [{ messages: [{ role: 'system', content: [image] }, { role: 'user', content: 'Hi' }] }, 'messages[0].content[0].type'],
    ];
    for (const [body, param] of cases) {
      const err = await apiError(client(server).chat.completions.create({ model: 'tiny', ...body } as never));
      assert.equal(err.status, 400, JSON.stringify(body).slice(0, 80));
      assert.equal(err.param, param);
    }
  });

  test('MiniCPM-V 2.0 answers with 16x as without it, and refuses 4x, thinking and a system message by name', async () => {
    const server = await startServer();
    const completion = await client(server).chat.completions.create({
      model: 'tiny', messages: wireMessages(grad), temperature: 0, max_tokens: 24, downsample_mode: '16x', thinking: false,
    } as never) as OpenAI.ChatCompletion;
    assert.equal(completion.choices[0]!.message.content, grad.runs.greedy!.text);
    assert.equal('reasoning_content' in completion.choices[0]!.message, false);
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ downsample_mode: '4x' }, /MiniCPM-V 2\.0 has no 4x downsample mode/],
      [{ thinking: true }, /MiniCPM-V 2\.0 has no thinking mode/],
      [{ messages: [{ role: 'developer', content: 'Be brief.' }, ...wireMessages(grad)] }, /MiniCPM-V 2\.0 has no system prompt/],
      [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(grad.input.file) } }, { type: 'image_url', image_url: { url: dataUrl('images/gray_500x375.png') } }, { type: 'text', text: 'Compare' }] }] },
        /MiniCPM-V 2\.0 takes one image per conversation, got 2/],
    ];
    for (const [body, pattern] of refusals) {
      const err = await apiError(client(server).chat.completions.create({ model: 'tiny', messages: wireMessages(grad), max_tokens: 4, ...body } as never));
      assert.equal(err.status, 400);
      assert.match(err.message, pattern);
    }
  });

  test('an answer\'s think part comes back as reasoning_content, whole and streamed', async () => {
    const cases = [
      { chunks: ['<think>\nThe picture', ' is dark.\n</th', 'ink>\n\nIt is ', 'night.'], thinking: false, reasoning: 'The picture is dark.', content: 'It is night.' },
      { chunks: ['Dark', ' sky', '.</think>', '\n\nNight.'], thinking: true, reasoning: 'Dark sky.', content: 'Night.' },
      { chunks: ['It is ', 'night.'], thinking: false, reasoning: undefined, content: 'It is night.' },
    ];
    for (const c of cases) {
      const engine = new ScriptedEngine(c.chunks);
      await withServer(engine, async (server) => {
        const body = { model: 'scripted', messages: [{ role: 'user', content: 'What time is it?' }], thinking: c.thinking };
        const completion = await client(server).chat.completions.create(body as never) as OpenAI.ChatCompletion;
        const message = completion.choices[0]!.message as { content: string; reasoning_content?: string };
        assert.equal(message.content, c.content);
        assert.equal(message.reasoning_content, c.reasoning);
        const stream = await client(server).chat.completions.create({ ...body, stream: true } as never) as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>;
        let reasoning = '';
        let content = '';
        for await (const chunk of stream) {
          const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
          reasoning += delta?.reasoning_content ?? '';
          content += delta?.content ?? '';
        }
        assert.equal(reasoning, c.reasoning ?? '');
        assert.equal(content, c.content);
      });
    }
  });
});
