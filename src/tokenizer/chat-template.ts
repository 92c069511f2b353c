// Chat templates (the checkpoint's chat_template.jinja, or tokenizer_config.json's `chat_template`) rendered the way
// transformers' apply_chat_template renders them: Jinja with trim_blocks and lstrip_blocks, the messages,
// add_generation_prompt, tools/documents (None unless given), the tokenizer's special tokens and any further keyword
// arguments (enable_thinking, …), and raise_exception().
//
// Rendering uses @huggingface/jinja, with the Python semantics it lacks put right where chat templates rely on them
// for byte-exact prompts:
// * `s.strip/lstrip/rstrip(chars)` honour `chars` (the library ignores the argument and strips whitespace), and
//   `|trim` / `strip()` strip Python's whitespace set (JavaScript's differs: U+FEFF, U+0085, U+001C–U+001F);
// * None, True and False print as Python prints them, in `{{ … }}` and through `|string` (the library prints
//   "", "true", "false", or refuses `none|string`).
// raise_exception(message) throws an InvalidRequestError with the template's message.

import * as jinja from '@huggingface/jinja';
import { readText, type ModelFiles } from '../checkpoint/model-files.js';
import { readJsonFile } from '../config/json.js';
import { InvalidRequestError, TokenizerError } from '../errors.js';
import { pythonLstrip, pythonRstrip, pythonStrip, pythonStripChars } from './python-strings.js';
import { isObject } from './tokenizer-json-spec.js';

/** A part of a message's content, as the official processors take it. */
export type ChatContentPart = { type: 'text'; text: string } | { type: 'image' } | { type: 'video' } | Readonly<Record<string, unknown>>;

export interface ChatTemplateMessage {
  role: string;
  content?: string | readonly ChatContentPart[] | null;
  /** Other fields a template may read (reasoning_content, tool_calls, …). */
  readonly [key: string]: unknown;
}

export interface ChatTemplateInput {
  messages: readonly ChatTemplateMessage[];
  /** End with the opening of the assistant's turn (default false). */
  addGenerationPrompt?: boolean;
  /** The tokenizer's special tokens (`bos_token` → text, …), visible to the template as transformers passes them. */
  specialTokens?: Readonly<Record<string, string>>;
  /** Further keyword arguments of apply_chat_template: enable_thinking, tools, documents, … */
  kwargs?: Readonly<Record<string, unknown>>;
}

export class ChatTemplate {
  private readonly program: unknown;

  /**
   * The template of a checkpoint folder: chat_template.jinja, else tokenizer_config.json's `chat_template` (a string,
   * or a list of named templates of which `name` is taken, "default" unless given).
   */
  static fromFiles(files: ModelFiles, name = 'default'): ChatTemplate {
    if (files.has('chat_template.jinja')) {
      return new ChatTemplate(readText(files, 'chat_template.jinja', TokenizerError), files.describe('chat_template.jinja'));
    }
    const configFile = files.describe('tokenizer_config.json');
    if (!files.has('tokenizer_config.json')) {
      throw new TokenizerError(`${files.where} has neither chat_template.jinja nor tokenizer_config.json, so it has no chat template`);
    }
    const config = readJsonFile(files, 'tokenizer_config.json', TokenizerError);
    const value = isObject(config) ? config['chat_template'] : undefined;
    if (typeof value === 'string') return new ChatTemplate(value, `${configFile} (chat_template)`);
    if (Array.isArray(value)) {
      const named = value.find((t: unknown) => isObject(t) && t['name'] === name && typeof t['template'] === 'string') as { template: string } | undefined;
      if (named === undefined) throw new TokenizerError(`${configFile} has no chat template named ${JSON.stringify(name)}`);
      return new ChatTemplate(named.template, `${configFile} (chat_template ${name})`);
    }
    throw new TokenizerError(`${files.where} has no chat template (no chat_template.jinja, no "chat_template" in tokenizer_config.json)`);
  }

  /** @param source the template text; `origin` names it in errors */
  constructor(
    readonly source: string,
    private readonly origin = 'the chat template',
  ) {
    try {
      this.program = new jinja.Template(source).parsed;
    } catch (err) {
      throw new TokenizerError(`${origin} is not a valid Jinja template: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The prompt text (`apply_chat_template(messages, tokenize=False, add_generation_prompt=…, **kwargs)`). */
  render(input: ChatTemplateInput): string {
    const env = new JinjaEnvironment();
    const context: Record<string, unknown> = {
      ...input.specialTokens,
      tools: null,
      documents: null,
      ...input.kwargs,
      messages: input.messages,
      add_generation_prompt: input.addGenerationPrompt ?? false,
      raise_exception: (message: unknown): never => {
        throw new InvalidRequestError(`the chat template refused the messages: ${String(message)}`);
      },
      range: pythonRange,
      strftime_now: strftimeNow,
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
    };
    for (const [key, value] of Object.entries(context)) env.set(key, value);
    try {
      return new PythonInterpreter(env).run(this.program).value as string;
    } catch (err) {
      if (err instanceof InvalidRequestError) throw err;
      throw new InvalidRequestError(`${this.origin} could not render these messages: ${(err as Error).message}`, { cause: err });
    }
  }
}

/** Renders `source` once (parse and render); use ChatTemplate to parse once and render many times. */
export function renderChatTemplate(source: string, input: ChatTemplateInput): string {
  return new ChatTemplate(source).render(input);
}

// ---- Python string semantics on top of @huggingface/jinja's interpreter ----

// The library's declaration files import without extensions, which NodeNext resolution cannot follow, so the
// parts of its environment, interpreter and values used here are declared locally.
interface Environment {
  set(name: string, value: unknown): unknown;
}
const JinjaEnvironment = jinja.Environment as unknown as new () => Environment;
const JinjaInterpreter = jinja.Interpreter as unknown as new (env: Environment) => { run(program: unknown): RuntimeValue };

interface RuntimeValue {
  type: string;
  value: unknown;
}
interface AstNode {
  type: string;
  [key: string]: unknown;
}
interface InterpreterInternals {
  evaluate(node: AstNode, env: Environment): RuntimeValue;
  renderBlock(statements: AstNode[], env: Environment): string;
  evaluateCallExpression(expr: AstNode, env: Environment): RuntimeValue;
  evaluateFilterExpression(node: AstNode, env: Environment): RuntimeValue;
  applyFilter(operand: RuntimeValue, filter: AstNode, env: Environment): RuntimeValue;
}

type StripSide = 'both' | 'left' | 'right';
const STRIP_METHODS: Readonly<Record<string, StripSide>> = { strip: 'both', lstrip: 'left', rstrip: 'right' };

/** Python's str.strip family: whitespace when chars is None/absent, else the given characters. */
function pythonStripWith(text: string, chars: RuntimeValue | undefined, side: StripSide): string {
  if (chars === undefined || chars.type === 'NullValue' || chars.type === 'UndefinedValue') {
    return side === 'both' ? pythonStrip(text) : side === 'left' ? pythonLstrip(text) : pythonRstrip(text);
  }
  if (chars.type !== 'StringValue') throw new Error(`strip arg must be None or str, not ${chars.type}`);
  return pythonStripChars(text, chars.value as string, side);
}

/** Python's str() of None, True and False (and Jinja's of an undefined value), else null. */
function pythonScalarString(value: RuntimeValue): string | null {
  switch (value.type) {
    case 'NullValue':
      return 'None';
    case 'UndefinedValue':
      return '';
    case 'BooleanValue':
      return value.value ? 'True' : 'False';
    default:
      return null;
  }
}

/** Node types whose value `{{ … }}` prints (statements such as Set, If, For or Macro print their own output). */
const PRINTED_EXPRESSIONS = new Set([
  'Identifier', 'MemberExpression', 'CallExpression', 'FilterExpression', 'TestExpression', 'Ternary',
  'BinaryExpression', 'UnaryExpression', 'SelectExpression',
]);

/** The call's arguments when they are at most one positional argument (the forms handled here), else null. */
function singleOptionalArgument(args: AstNode[]): AstNode[] | null {
  return args.length <= 1 && args.every((a) => !a.type.startsWith('Keyword') && a.type !== 'SpreadExpression') ? args : null;
}

class PythonInterpreter extends JinjaInterpreter {}

const base = JinjaInterpreter.prototype as unknown as InterpreterInternals;
const overrides = PythonInterpreter.prototype as unknown as InterpreterInternals;

/** A new StringValue (the library does not export its value classes; a string literal node makes one). */
function stringValue(interpreter: InterpreterInternals, env: Environment, text: string): RuntimeValue {
  return interpreter.evaluate({ type: 'StringLiteral', value: text }, env);
}

// `text.strip(chars)`, `text.lstrip(chars)`, `text.rstrip(chars)` on strings.
overrides.evaluateCallExpression = function (this: InterpreterInternals, expr: AstNode, env: Environment): RuntimeValue {
  const callee = expr['callee'] as AstNode;
  const property = callee['property'] as AstNode | undefined;
  const side = callee.type === 'MemberExpression' && !callee['computed'] && property?.type === 'Identifier' ? STRIP_METHODS[property['value'] as string] : undefined;
  const args = singleOptionalArgument(expr['args'] as AstNode[]);
  if (side !== undefined && args !== null) {
    const object = this.evaluate(callee['object'] as AstNode, env);
    if (object.type === 'StringValue') {
      const chars = args.length === 1 ? this.evaluate(args[0]!, env) : undefined;
      return stringValue(this, env, pythonStripWith(object.value as string, chars, side));
    }
  }
  return base.evaluateCallExpression.call(this, expr, env);
};

// `text|trim`, `text|trim(chars)` (Jinja2's trim is Python's str.strip), `none|string`, `true|string`.
overrides.evaluateFilterExpression = function (this: InterpreterInternals, node: AstNode, env: Environment): RuntimeValue {
  const filter = node['filter'] as AstNode;
  const name = filter.type === 'Identifier' ? filter['value'] : filter.type === 'CallExpression' ? (filter['callee'] as AstNode)['value'] : undefined;
  const args = filter.type === 'Identifier' ? [] : filter.type === 'CallExpression' ? singleOptionalArgument(filter['args'] as AstNode[]) : null;
  if ((name !== 'trim' && name !== 'string') || args === null || (name === 'string' && args.length > 0)) {
    return base.evaluateFilterExpression.call(this, node, env);
  }
  const operand = this.evaluate(node['operand'] as AstNode, env);
  if (name === 'trim' && operand.type === 'StringValue') {
    const chars = args.length === 1 ? this.evaluate(args[0]!, env) : undefined;
    return stringValue(this, env, pythonStripWith(operand.value as string, chars, 'both'));
  }
  const text = name === 'string' ? pythonScalarString(operand) : null;
  return text !== null ? stringValue(this, env, text) : this.applyFilter(operand, filter, env);
};

// `{{ none }}`, `{{ true }}` print as Python prints them; other values as the library prints them.
overrides.renderBlock = function (this: InterpreterInternals, statements: AstNode[], env: Environment): string {
  let out = '';
  let pending: AstNode[] = [];
  for (const statement of statements) {
    if (!PRINTED_EXPRESSIONS.has(statement.type)) {
      pending.push(statement);
      continue;
    }
    if (pending.length > 0) out += base.renderBlock.call(this, pending, env);
    pending = [];
    const value = this.evaluate(statement, env);
    out += pythonScalarString(value) ?? String(value);
  }
  if (pending.length > 0) out += base.renderBlock.call(this, pending, env);
  return out;
};

/** Python's range(stop) / range(start, stop[, step]). */
function pythonRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() arg 3 must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];

/** transformers' strftime_now: the local time formatted as Python's strftime in the C locale (common directives). */
function strftimeNow(format: string): string {
  const d = new Date();
  const pad = (n: number, width = 2): string => String(n).padStart(width, '0');
  return format.replace(/%(.)/g, (directive: string, c: string) => {
    switch (c) {
      case 'Y': return String(d.getFullYear());
      case 'y': return pad(d.getFullYear() % 100);
      case 'm': return pad(d.getMonth() + 1);
      case 'd': return pad(d.getDate());
      case 'B': return MONTHS[d.getMonth()]!;
      case 'b': return MONTHS[d.getMonth()]!.slice(0, 3);
      case 'A': return DAYS[d.getDay()]!;
      case 'a': return DAYS[d.getDay()]!.slice(0, 3);
      case 'H': return pad(d.getHours());
      case 'I': return pad(((d.getHours() + 11) % 12) + 1);
      case 'p': return d.getHours() < 12 ? 'AM' : 'PM';
      case 'M': return pad(d.getMinutes());
      case 'S': return pad(d.getSeconds());
      case '%': return '%';
      default: throw new Error(`strftime_now does not support the directive ${directive}`);
    }
  });
}
