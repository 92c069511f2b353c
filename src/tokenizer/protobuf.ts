// A minimal protocol-buffers wire-format reader, enough to read a SentencePiece ModelProto.
// It walks fields (tag = field number << 3 | wire type) and lets the caller pick the ones it knows; unknown fields
// and extensions are skipped. Every read is bounds-checked and throws ProtobufError on truncated or corrupt data.

/** The bytes are not a well-formed protocol-buffers message. */
export class ProtobufError extends Error {}

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LENGTH_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

const utf8 = new TextDecoder('utf-8', { fatal: true });

export class ProtoReader {
  private pos: number;
  private readonly end: number;
  private readonly view: DataView;

  constructor(private readonly bytes: Uint8Array, start = 0, end = bytes.length) {
    this.pos = start;
    this.end = end;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Where the next read starts (a byte index into the whole buffer). */
  get offset(): number {
    return this.pos;
  }

  /** Reads the next field's tag, or returns null at the end of the message. */
  nextField(): { field: number; wireType: number } | null {
    if (this.pos >= this.end) return null;
    const tag = this.varint();
    const field = Math.floor(tag / 8);
    if (field === 0) throw new ProtobufError(`field number 0 at byte ${this.pos}`);
    return { field, wireType: tag % 8 };
  }

  /** An unsigned varint that fits a double exactly (lengths, enums, booleans, tags). */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const byte = this.byte();
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (result > Number.MAX_SAFE_INTEGER) throw new ProtobufError('varint too large');
        return result;
      }
      scale *= 128;
    }
    throw new ProtobufError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** A varint read as a proto `int32` (negative values are sign-extended to 10 bytes on the wire). */
  int32(): number {
    let result = 0n;
    for (let i = 0n; i < 10n; i++) {
      const byte = this.byte();
      result |= BigInt(byte & 0x7f) << (7n * i);
      if (byte < 0x80) return Number(BigInt.asIntN(32, result));
    }
    throw new ProtobufError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  float(): number {
    this.need(4);
    const value = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return value;
  }

  /** The body of a length-delimited field, as a view into the same buffer. */
  bytesField(): Uint8Array {
    const [start, end] = this.lengthDelimited();
    return this.bytes.subarray(start, end);
  }

  string(): string {
    try {
      return utf8.decode(this.bytesField());
    } catch (err) {
      if (err instanceof ProtobufError) throw err;
      throw new ProtobufError('a string field is not valid UTF-8');
    }
  }

  /** A reader over an embedded message. */
  message(): ProtoReader {
    const [start, end] = this.lengthDelimited();
    return new ProtoReader(this.bytes, start, end);
  }

  /** Skips a field's value of the given wire type. */
  skip(wireType: number): void {
    switch (wireType) {
      case WIRE_VARINT:
        this.varintSkip();
        return;
      case WIRE_FIXED64:
        this.need(8);
        this.pos += 8;
        return;
      case WIRE_LENGTH_DELIMITED:
        this.lengthDelimited();
        return;
      case WIRE_FIXED32:
        this.need(4);
        this.pos += 4;
        return;
      default:
        throw new ProtobufError(`unsupported wire type ${wireType} at byte ${this.pos}`);
    }
  }

  /** Checks that a field has the wire type its declaration implies. */
  expect(wireType: number, expected: number, what: string): void {
    if (wireType !== expected) throw new ProtobufError(`${what} has wire type ${wireType}, expected ${expected}`);
  }

  private lengthDelimited(): [number, number] {
    const length = this.varint();
    this.need(length);
    const start = this.pos;
    this.pos += length;
    return [start, this.pos];
  }

  private varintSkip(): void {
    for (let i = 0; i < 10; i++) if (this.byte() < 0x80) return;
    throw new ProtobufError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  private byte(): number {
    if (this.pos >= this.end) throw new ProtobufError('message is truncated');
    return this.bytes[this.pos++]!;
  }

  private need(n: number): void {
    if (n > this.end - this.pos) throw new ProtobufError('message is truncated');
  }
}
