// Named errors. Every message says what went wrong and what to do about it; the CLI prints
// `error: <message>` for any OmnilmmError and exits non-zero, never a stack trace.

export class OmnilmmError extends Error {
  /** Process exit code the CLI uses for this error. */
  readonly exitCode: number = 1;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A file or folder the user named does not exist or cannot be read. */
export class FileNotFoundError extends OmnilmmError {}

/** A checkpoint file (safetensors, index, config) is missing, truncated or malformed. */
export class CheckpointError extends OmnilmmError {}

/** config.json asks for something this engine cannot run. */
export class UnsupportedModelError extends OmnilmmError {}

/** The Hugging Face hub could not be reached or refused the request. */
export class HubError extends OmnilmmError {}

/** The tokenizer files are missing or malformed. */
export class TokenizerError extends OmnilmmError {}

/** An image cannot be decoded or is too large to process. */
export class ImageError extends OmnilmmError {}

/** An image has more pixels than the decoder accepts (decompression-bomb guard). */
export class ImageTooLargeError extends ImageError {
  constructor(
    /** What is too large, without advice: the library, the CLI and the server each say what to do in their terms. */
    readonly summary: string,
    advice: string,
  ) {
    super(`${summary}; ${advice}`);
  }
}

/** A video cannot be read: no frames in a folder, a file ffmpeg cannot decode, or no ffmpeg to decode it with. */
export class VideoError extends OmnilmmError {}

/** The user's request (CLI flags, messages, API body) is invalid. */
export class InvalidRequestError extends OmnilmmError {
  override readonly exitCode = 2;
}

/** The prompt fills the model's context: no room is left for an answer. */
export class ContextFullError extends InvalidRequestError {}

/** A call to an engine after its close() (requests running or waiting then end with an AbortError instead). */
export class EngineClosedError extends InvalidRequestError {
  constructor(message = 'the engine is closed: start a new one') {
    super(message);
  }
}

/** The ONNX graph could not be built or run. */
export class RuntimeError extends OmnilmmError {}

/**
 * A JSON value from a user's file or request, for an error message: strings quoted, nesting and length cut short.
 * Never JSON.stringify on such a value: a deeply nested one overflows the stack (a RangeError instead of our error).
 */
export function describeJson(value: unknown, maxLength = 60): string {
  const text = shortJson(value, 3);
  return text.length > maxLength ? `${text.slice(0, maxLength - 3)}...` : text;
}

function shortJson(value: unknown, depth: number): string {
  if (typeof value === 'string') return JSON.stringify(value.slice(0, 200));
  if (value === null || typeof value !== 'object') return String(value);
  if (depth === 0) return Array.isArray(value) ? '[...]' : '{...}';
  const more = (n: number) => (n > 8 ? ',...' : '');
  if (Array.isArray(value)) return `[${value.slice(0, 8).map((v) => shortJson(v, depth - 1)).join(',')}${more(value.length)}]`;
  const entries = Object.entries(value);
  return `{${entries.slice(0, 8).map(([k, v]) => `${JSON.stringify(k.slice(0, 50))}:${shortJson(v, depth - 1)}`).join(',')}${more(entries.length)}}`;
}
