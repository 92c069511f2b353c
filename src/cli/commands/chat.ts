// `omnilmm chat`: one answer (streamed, or as JSON), or an interactive multi-turn session on a terminal.

import { createInterface } from 'node:readline/promises';
import type { ChatResult } from '../../chat/chat.js';
import { DECODINGS, type Decoding, type DecodingSettings } from '../../chat/decoding.js';
import type { Engine, EngineRequest } from '../../chat/engine-types.js';
import { checkVideoPath, readVideoPath } from '../../chat/media-source.js';
import { WorkerEngine } from '../../chat/worker-engine.js';
import { ContextFullError, HubError, InvalidRequestError, OmnilmmError } from '../../errors.js';
import { DOWNSAMPLE_MODES, parseConversation, placeMedia, type DownsampleMode, type Message, type VideoFramePicker } from '../../models/messages.js';
import { familyOf, loadModelConfig, MODEL_FAMILIES, type ModelConfig } from '../../models/registry.js';
import { numberOption, parseCommandArgs, stringOption, stringsOption, type Parsed } from '../args.js';
import { decodeUserImage, outputClosed, readUserFile } from '../io.js';
import { WEIGHT_PRECISIONS, type WeightPrecision } from '../../graph/quantize.js';
import { DEFAULT_MODEL, resolveModelOption, THREADS_HELP, threadsOption, type Command } from './common.js';

const USAGE =
  'omnilmm chat --model <dir|org/name> [--image <path>]... [--video <folder|file>] [--video-fps F] [--messages <file.json>] ' +
  '[--downsample-mode 16x|4x] [--thinking] [--decoding sample|greedy|beam] ' +
  '[--num-beams N] [--repetition-penalty R] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--max-new-tokens N] ' +
  '[--threads N] [--precision P] [--vision-precision P] [--json] [question]';

export const chatCommand: Command = {
  name: 'chat',
  summary: 'ask the model about an image (one answer, or an interactive session)',
  help: `usage: ${USAGE}

  --model <dir|org/name>     checkpoint folder or hub id (default ${DEFAULT_MODEL})
  --image <path>             JPEG, PNG, WebP or GIF; may be given several times (MiniCPM-V 4.6 takes several
                             images, MiniCPM-V 1.0/2.0 and OmniLMM-12B one). Without image parts in --messages,
                             the images go before the first user message's text
  --video <folder|file>      a video (MiniCPM-V 4.6): a folder of frame images, taken in name order, or a video
                             file, decoded into frames with ffmpeg (which must be installed); only the frames the
                             model samples are kept in memory
  --video-fps F              frames per second of the folder's frames (default 1: one frame a second), or the
                             rate a video file is decoded at (default 1)
  --messages <file.json>     the conversation: [{"role":"user","content":"…"},{"role":"assistant","content":"…"},…],
                             with a "system" message first where the model has one (MiniCPM-V 4.6); a content may
                             be a list of parts [{"type":"image"},{"type":"video"},{"type":"text","text":"…"}]:
                             the --image files fill the image parts in order and --video the video part. A
                             question given on the command line is appended as the last user message
  --downsample-mode 16x|4x   MiniCPM-V 4.6's image tokens: 16x (default) or 4x (four times as many)
  --thinking                 MiniCPM-V 4.6 thinks before it answers (its answer starts with the reasoning, up to
                             "</think>")
  --decoding <mode>          sample (default), beam or greedy (one beam, repetition penalty 1.0), with the model
                             family's settings (below). Beam search settles its answer only at the end, so it
                             prints it whole (on a terminal a "thinking…" note shows meanwhile); sample and greedy
                             stream it
  --num-beams N              beams for --decoding beam (given alone, it chooses beam search)
  --repetition-penalty R     overrides the mode's repetition penalty
  --temperature T, --top-p P, --top-k K, --seed S
                             sampling settings: with --decoding beam or greedy they are an error, not ignored
  --max-new-tokens N         most tokens to generate (default: the model family's, below; at most the model's
                             context). An answer cut short by it or by the context gets a note on stderr
  --threads N                ${THREADS_HELP}
  --precision P              the language model's linear layers (lm_head included): int8-dq (default: int8
                             weights and int8 compute, a quarter of fp32's memory; answers drift from fp32 after
                             a few tokens), fp32 (exact, token for token the official answer), int8 (in blocks
                             of 128: slower prompts), int4 (coarser, half the memory); the embedding table stays fp32
  --vision-precision P       the same for the vision tower: int8-dq (default: int8 weights and int8 compute, moved
                             the fixtures' image features by 1–2% RMS), fp32 (exact), int8, int4 (coarser).
                             --precision fp32 --vision-precision fp32 is the exact path.
                             OmniLMM-12B's 4.4 B-parameter tower needs int8 or int4 on a 24 GiB machine
  --json                     print one JSON object {"text", "prompt_ids", "output_ids", "finish_reason"} instead
                             of streaming; finish_reason is "stop" (the answer ended) or "length" (cut short by
                             --max-new-tokens or the context), as in the server's OpenAI responses

The defaults of --decoding and --max-new-tokens are the model family's, from its official chat:
${MODEL_FAMILIES.flatMap((family) => family.decodingDefaultsHelp()).join('\n')}

The question is the last argument, or the text piped into stdin (echo "…" | omnilmm chat …). With no
question, no --messages and a terminal, starts an interactive session (Ctrl-C stops an answer; at the prompt
it quits):
  /image <path>  start a new conversation about another image
  /reset         start a new conversation (no image)
  /exit          quit
  //…            a question that starts with / (any other /word is refused as an unknown command)
Output that nobody reads any more (omnilmm chat … | head) ends the command quietly with status 141.`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs('chat', argv, {
      model: { type: 'string' },
      image: { type: 'string', multiple: true },
      video: { type: 'string' },
      'video-fps': { type: 'string' },
      messages: { type: 'string' },
      'downsample-mode': { type: 'string' },
      thinking: { type: 'boolean' },
      decoding: { type: 'string' },
      'num-beams': { type: 'string' },
      'repetition-penalty': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      'max-new-tokens': { type: 'string' },
      threads: { type: 'string' },
      precision: { type: 'string' },
      'vision-precision': { type: 'string' },
      json: { type: 'boolean' },
    }, USAGE);
    const settings = decodingSettings(values);
    const threads = threadsOption(values);
    const precision = precisionOption(values);
    const visionPrecision = precisionOption(values, 'vision-precision');
    const messages = await readMessages(stringOption(values, 'messages'), positionals);
    const media = await readMedia(values);
    // `echo "question" | omnilmm chat …`: the question comes from the pipe.
    if (messages.length === 0 && !process.stdin.isTTY) {
      const piped = (await readAll(process.stdin)).trim();
      if (!piped) {
        throw new InvalidRequestError(`no question: give one as the last argument, pipe it in, or pass --messages <file.json>\nusage: ${USAGE}`);
      }
      messages.push({ role: 'user', content: piped });
    }
    const interactive = messages.length === 0;
    // The images and the video must match the messages' parts: say so before the model loads.
    if (!interactive) placeMedia(parseConversation(messages), media.images.length, media.video ? 1 : 0);
    const engine = await WorkerEngine.start(stringOption(values, 'model') ?? DEFAULT_MODEL, {
      threads,
      precision,
      visionPrecision,
      maxBeams: Math.max(3, settings.numBeams ?? 1),
    });
    try {
      if (interactive) await interactiveSession(engine, media, settings);
      else if (values.json) {
        const stream = engine.stream({ messages, ...media, ...settings }, outputClosed);
        let next = await stream.next();
        while (!next.done) next = await stream.next();
        const sent = await writeOut(`${JSON.stringify(jsonReport(next.value))}\n`);
        if (sent) noteCutShort(next.value, settings.maxNewTokens, engine.info.contextLength);
      } else {
        await streamAnswer(engine, { messages, ...media, ...settings });
      }
    } finally {
      await engine.close();
    }
  },
};

/** `--precision` or `--vision-precision`: one of WEIGHT_PRECISIONS (absent = the default, see withDefaultPrecisions). */
export function precisionOption(values: Parsed['values'], flag = 'precision'): WeightPrecision | undefined {
  const precision = stringOption(values, flag);
  if (precision !== undefined && !WEIGHT_PRECISIONS.includes(precision as WeightPrecision)) {
    throw new InvalidRequestError(`--${flag} must be one of ${WEIGHT_PRECISIONS.join(', ')}, got "${precision}"`);
  }
  return precision as WeightPrecision | undefined;
}

/** What a chat request carries besides the messages and the decoding settings. */
type Media = Pick<EngineRequest, 'video' | 'downsampleMode' | 'thinking'> & { images: Uint8Array[] };

/**
 * --image (repeated), --video, --video-fps, --downsample-mode and --thinking; files are read and checked here. What
 * the model's family refuses of them (a video, a second image) is said before any file is read, where its config is
 * at hand (a model folder, or a hub model complete in the cache); a missing video, or a video file without ffmpeg,
 * before a hub model is downloaded.
 */
async function readMedia(values: Parsed['values']): Promise<Media> {
  const imagePaths = stringsOption(values, 'image');
  const videoPath = stringOption(values, 'video');
  const fps = numberOption(values, 'video-fps', { min: Number.MIN_VALUE });
  if (fps !== undefined && !videoPath) throw new InvalidRequestError('--video-fps goes with --video <folder|file>');
  const count = { images: imagePaths.length, video: Boolean(videoPath) };
  const refuseMedia = (config: ModelConfig) => {
    const refusal = familyOf(config).mediaRefusal(config, count);
    if (refusal) throw new InvalidRequestError(refusal);
  };
  const atHand = count.video || count.images > 1 ? await modelConfigAtHand(values) : null;
  if (atHand) refuseMedia(atHand);
  let pickFrames: VideoFramePicker | undefined;
  if (videoPath) {
    await checkVideoPath(videoPath);
    // The video is read before the model loads, for the frames it keeps only: its family knows them from its config.
    const config = atHand ?? loadModelConfig(await resolveModelOption(values));
    if (!atHand) refuseMedia(config);
    pickFrames = familyOf(config).videoFramePicker?.(config, {});
  }
  const media: Media = { images: await Promise.all(imagePaths.map(readImageBytes)) };
  // In shared memory, so that the engine's worker thread takes the frames, not a copy, on every turn of a session.
  if (videoPath) media.video = await readVideoPath(videoPath, { fps, pickFrames, shared: true });
  const downsampleMode = downsampleModeOption(values);
  if (downsampleMode) media.downsampleMode = downsampleMode;
  if (values.thinking) media.thinking = true;
  return media;
}

/** --model's config where no download is needed for it: a folder's, or a hub model's complete in the cache; else null. */
async function modelConfigAtHand(values: Parsed['values']): Promise<ModelConfig | null> {
  const dir = await resolveModelOption(values, { offline: true }).catch((err: unknown) => {
    if (err instanceof HubError) return null;
    throw err;
  });
  return dir === null ? null : loadModelConfig(dir);
}

/** `--downsample-mode`: 16x or 4x (absent = the model's default). */
export function downsampleModeOption(values: Parsed['values']): DownsampleMode | undefined {
  const mode = stringOption(values, 'downsample-mode');
  if (mode !== undefined && !DOWNSAMPLE_MODES.includes(mode as DownsampleMode)) {
    throw new InvalidRequestError(`--downsample-mode must be one of ${DOWNSAMPLE_MODES.join(', ')}, got "${mode}"`);
  }
  return mode as DownsampleMode | undefined;
}

function decodingSettings(values: Parsed['values']): DecodingSettings {
  // A flag that the decoding would ignore is an error, not a silent no-op; --num-beams alone asks for beam search.
  const given = (flag: string) => values[flag] !== undefined;
  const decoding = stringOption(values, 'decoding') ?? (given('num-beams') ? 'beam' : 'sample');
  if (!DECODINGS.includes(decoding as Decoding)) {
    throw new InvalidRequestError(`--decoding must be one of ${DECODINGS.join(', ')}, got "${decoding}"`);
  }
  for (const flag of ['temperature', 'top-p', 'top-k', 'seed']) {
    if (given(flag) && decoding !== 'sample') {
      throw new InvalidRequestError(`--${flag} is a sampling setting, and --decoding ${decoding} does not sample: drop it, or use --decoding sample`);
    }
  }
  if (given('num-beams') && decoding !== 'beam') throw new InvalidRequestError(`--num-beams is for --decoding beam, not ${decoding}`);
  return {
    decoding: decoding as Decoding,
    numBeams: numberOption(values, 'num-beams', { integer: true, min: 1, max: 16 }),
    repetitionPenalty: numberOption(values, 'repetition-penalty', { min: Number.MIN_VALUE }),
    temperature: numberOption(values, 'temperature', { min: Number.MIN_VALUE }),
    topP: numberOption(values, 'top-p', { min: Number.MIN_VALUE, max: 1 }),
    topK: numberOption(values, 'top-k', { integer: true, min: 0 }),
    seed: numberOption(values, 'seed', { integer: true, min: 0, max: 2 ** 32 - 1 }),
    maxNewTokens: numberOption(values, 'max-new-tokens', { integer: true, min: 1 }),
  };
}

async function readMessages(path: string | undefined, positionals: string[]): Promise<Message[]> {
  const messages: Message[] = [];
  if (path) {
    // A leading byte order mark (Windows editors write one) is no part of the JSON.
    const text = (await readUserFile(path, 'messages file')).toString('utf8').replace(/^\uFEFF/, '');
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new InvalidRequestError(`${path} is not valid JSON: ${(err as Error).message}`);
    }
    messages.push(...parseConversation(parsed));
  }
  if (positionals.length > 1) {
    throw new InvalidRequestError(`expected one question, got ${positionals.length} arguments: quote the question\nusage: ${USAGE}`);
  }
  if (positionals.length === 1) {
    // Refused for every family, as an empty piped question is (MiniCPM-V 1.0 and 2.0 refuse it themselves, 4.6 does not).
    if (positionals[0]!.trim() === '') throw new InvalidRequestError('the question is empty: ask something');
    messages.push({ role: 'user', content: positionals[0]! });
  }
  return messages;
}

/** `--json`'s object; finish_reason as the server's OpenAI responses give it. */
function jsonReport(result: ChatResult) {
  return { text: result.text, prompt_ids: result.promptIds, output_ids: result.outputIds, finish_reason: result.finishReason };
}

/**
 * A note on stderr when the answer did not come to its end but was cut short, naming the limit that cut it (the
 * --max-new-tokens given, the model's context, or the family's default limit), so that it is not taken for complete.
 * When a session's earlier turns are in the prompt (`grownConversation`), only a new conversation makes room.
 */
function noteCutShort(result: ChatResult, maxNewTokens: number | undefined, contextLength: number, grownConversation = false): void {
  if (result.finishReason !== 'length') return;
  const tokens = result.outputIds.length;
  const prompt = result.promptIds.length;
  const why =
    tokens === maxNewTokens
      ? `at --max-new-tokens ${tokens}: raise it for a longer answer`
      : prompt + tokens >= contextLength
        ? `where the model's ${contextLength}-token context is full (a ${prompt}-token prompt and ${tokens} new tokens): ` +
          (grownConversation ? 'type /reset to start a new conversation' : 'ask in a shorter conversation') + ' for a longer answer'
        : `at the model's default limit of ${tokens} new tokens: raise it with --max-new-tokens`;
  process.stderr.write(`note: the answer was cut short ${why}\n`);
}

/** Writes to stdout; resolves to whether the text went out (not when its reader is gone: then nothing more is said). */
function writeOut(text: string): Promise<boolean> {
  return new Promise((resolve) => process.stdout.write(text, (err) => resolve(!err)));
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** An image file's bytes, decoded once here so that a bad file is reported before the model loads. */
async function readImageBytes(path: string): Promise<Uint8Array> {
  const bytes = await readUserFile(path, 'image');
  await decodeUserImage(bytes);
  return bytes;
}

/**
 * Streams the answer to stdout (a note on stderr when it was cut short); resolves to its text. In an interactive
 * session, `session.signal` stops the answer and `session.grownConversation` says that earlier turns are in the prompt.
 */
async function streamAnswer(engine: Engine, request: EngineRequest, session?: { signal: AbortSignal; grownConversation: boolean }): Promise<string> {
  const stream = engine.stream(request, session ? AbortSignal.any([session.signal, outputClosed]) : outputClosed);
  // Beam search settles the answer only at its end: on a terminal, a note says that work is going on meanwhile.
  let note = request.decoding === 'beam' && process.stderr.isTTY;
  if (note) process.stderr.write('thinking… (beam search shows the answer when it is complete)');
  for (;;) {
    const next = await stream.next().finally(() => {
      if (note) process.stderr.write('\r\x1b[K');
      note = false;
    });
    if (next.done) {
      if (await writeOut('\n')) noteCutShort(next.value, request.maxNewTokens, engine.info.contextLength, session?.grownConversation);
      return next.value.text;
    }
    process.stdout.write(next.value);
  }
}

const INTERACTIVE_COMMANDS = '/image <path>, /reset, /exit';

/** A multi-turn session. Ctrl-C while an answer streams stops that answer; at the prompt it ends the session. */
async function interactiveSession(engine: Engine, firstMedia: Media, settings: DecodingSettings): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  let answering: AbortController | null = null;
  rl.on('SIGINT', () => {
    if (answering) answering.abort();
    else rl.close();
  });
  // Node 20 leaves a pending question unsettled when the interface closes (Ctrl-C, Ctrl-D).
  const closed = new Promise<string>((resolve) => rl.once('close', () => resolve('/exit')));
  let media = firstMedia;
  let messages: Message[] = [];
  const about = media.video ? ' about the video' : media.images.length > 1 ? ' about the images' : media.images.length ? ' about the image' : '';
  process.stdout.write(`Ask a question${about}. Commands: ${INTERACTIVE_COMMANDS}\n`);
  try {
    for (;;) {
      const line = (await Promise.race([rl.question('> ').catch(() => '/exit'), closed])).trim();
      if (line === '/exit' || line === '/quit') return;
      if (line === '') continue;
      if (line === '/reset') {
        media = { ...media, images: [], video: null };
        messages = [];
        process.stdout.write('New conversation.\n');
        continue;
      }
      if (/^\/image(\s|$)/.test(line)) {
        const path = line.slice('/image'.length).trim();
        if (!path) {
          process.stdout.write('error: /image needs the path of an image: /image <path>\n');
          continue;
        }
        try {
          media = { ...media, images: [await readImageBytes(path)], video: null };
          messages = [];
          process.stdout.write(`New conversation about ${path}.\n`);
        } catch (err) {
          if (!(err instanceof OmnilmmError)) throw err;
          process.stdout.write(`error: ${err.message}\n`);
        }
        continue;
      }
      if (/^\/[^/]/.test(line)) {
        process.stdout.write(`unknown command ${line.split(/\s/)[0]}: ${INTERACTIVE_COMMANDS} (start with // to ask something that begins with /)\n`);
        continue;
      }
      const question = line.startsWith('//') ? line.slice(1) : line;
      const turn = [...messages, { role: 'user' as const, content: question }];
      const answer = new AbortController();
      answering = answer;
      try {
        const text = await streamAnswer(engine, { messages: turn, ...media, ...settings }, { signal: answer.signal, grownConversation: messages.length > 0 });
        messages = [...turn, { role: 'assistant', content: text }];
      } catch (err) {
        if (answer.signal.aborted) process.stdout.write('\n(stopped)\n');
        // The conversation grew past the context: only a new one makes room.
        else if (err instanceof ContextFullError && messages.length > 0) process.stdout.write(`error: ${err.message}: type /reset to start a new conversation\n`);
        else if (err instanceof OmnilmmError) process.stdout.write(`error: ${err.message}\n`);
        else throw err;
      } finally {
        answering = null;
      }
    }
  } finally {
    rl.close();
  }
}
