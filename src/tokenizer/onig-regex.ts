// tokenizers runs a Split pre-tokenizer's pattern with Oniguruma; this translates such a pattern into a JavaScript
// RegExp (flag `u`) that matches exactly the same text, and refuses, naming it, any construct it cannot translate.
//
// Where the two dialects differ:
// * `(?i:…)` (a case-insensitive group; Node 20 has no inline modifiers): each ASCII letter inside becomes the class
//   of the characters Oniguruma's case folding equates with it, e.g. `s` → `[sSſ]`, `k` → `[kKK]`.
// * `\s` / `\S`: Oniguruma's Unicode whitespace is the White_Space property (it has U+0085, not U+FEFF);
//   JavaScript's `\s` is another set. `\d` / `\w` become their Unicode meanings too.
// * `.`: Oniguruma (Ruby syntax) excludes only `\n`. `\p{Han}`-style script names become `\p{Script=Han}`.
// Anchors (`^ $ \A \z \b …`), atomic groups, possessive quantifiers, nested classes and non-ASCII letters in a
// case-insensitive group are refused.

import { TokenizerError } from '../errors.js';

/** Characters that case folding equates with an ASCII letter, besides its two cases (Unicode CaseFolding.txt). */
const EXTRA_FOLDS: Readonly<Record<string, string>> = { s: '\u017f', k: '\u212a' };

const WHITE_SPACE = '\\p{White_Space}';
const NOT_WHITE_SPACE = '\\P{White_Space}';
const WORD_CHARS = '\\p{L}\\p{M}\\p{Nd}\\p{Pc}';
/** Characters that need a backslash in a `u`-mode pattern to be literal. */
const SYNTAX_CHARS = new Set('^$\\.*+?()[]{}|/-');

/** The RegExp (flags `gu`) that matches what the Oniguruma `pattern` matches. */
export function onigToRegExp(pattern: string): RegExp {
  const source = new OnigTranslator(pattern).translate();
  try {
    return new RegExp(source, 'gu');
  } catch (err) {
    throw refuse(pattern, `its translation /${source}/u is not a valid JavaScript pattern (${(err as Error).message})`);
  }
}

class OnigTranslator {
  private pos = 0;
  private inClass = false;
  /** Depth of open groups, and the depth at which the current case-insensitive group opened (-1: none). */
  private depth = 0;
  private ignoreCaseDepth = -1;

  constructor(private readonly pattern: string) {}

  translate(): string {
    let out = '';
    while (this.pos < this.pattern.length) out += this.next();
    if (this.inClass || this.depth !== 0) throw refuse(this.pattern, 'its brackets or parentheses are unbalanced');
    return out;
  }

  private next(): string {
    const p = this.pattern;
    const c = String.fromCodePoint(p.codePointAt(this.pos)!);
    this.pos += c.length;
    if (c === '\\') return this.escape();
    if (this.inClass) {
      if (c === ']') this.inClass = false;
      else if (c === '[') throw refuse(p, 'it nests a character class inside another');
      else if (c === '&' && p[this.pos] === '&') throw refuse(p, 'it uses a class intersection (&&)');
      return c === '/' ? '\\/' : c;
    }
    switch (c) {
      case '[':
        this.inClass = true;
        if (p[this.pos] === '^') {
          this.pos++;
          return '[^';
        }
        return '[';
      case '(':
        return this.openGroup();
      case ')':
        if (this.depth === 0) throw refuse(p, 'it closes a group it never opened');
        if (this.depth-- === this.ignoreCaseDepth) this.ignoreCaseDepth = -1;
        return ')';
      case '|':
        return '|';
      case '.':
        return '[^\\n]';
      case '^':
      case '$':
        throw refuse(p, `it uses the anchor ${c}, whose meaning differs between the two regex dialects`);
      case '*':
      case '+':
      case '?':
        if (p[this.pos] === '+') throw refuse(p, `it uses a possessive quantifier (${c}+)`);
        return c;
      case '{': {
        const bounds = /^\d+(,\d*)?\}/.exec(p.slice(this.pos));
        if (bounds === null) return '\\{';
        this.pos += bounds[0].length;
        if (p[this.pos] === '+') throw refuse(p, 'it follows a {n,m} quantifier with +, whose meaning differs between the dialects');
        return '{' + bounds[0];
      }
      case '/':
        return '\\/';
      default:
        return this.literal(c);
    }
  }

  private openGroup(): string {
    const p = this.pattern;
    this.depth++;
    if (p[this.pos] !== '?') return '(';
    for (const prefix of ['?:', '?=', '?!', '?<=', '?<!']) {
      if (p.startsWith(prefix, this.pos)) {
        this.pos += prefix.length;
        return '(' + prefix;
      }
    }
    if (p.startsWith('?i:', this.pos)) {
      this.pos += 3;
      if (this.ignoreCaseDepth === -1) this.ignoreCaseDepth = this.depth;
      return '(?:';
    }
    throw refuse(p, `it uses the group syntax "(${p.slice(this.pos, this.pos + 3)}…", which is not supported`);
  }

  /** A literal character; inside a case-insensitive group an ASCII letter matches its case variants. */
  private literal(c: string): string {
    const escaped = SYNTAX_CHARS.has(c) ? '\\' + c : c;
    if (this.ignoreCaseDepth === -1 || c.toLowerCase() === c.toUpperCase()) return escaped;
    if (!/^[A-Za-z]$/.test(c)) throw refuse(this.pattern, `its case-insensitive group contains the non-ASCII letter ${c}`);
    const lower = c.toLowerCase();
    const variants = lower + lower.toUpperCase() + (EXTRA_FOLDS[lower] ?? '');
    return this.inClass ? variants : `[${variants}]`;
  }

  private escape(): string {
    const p = this.pattern;
    const c = p[this.pos++];
    if (c === undefined) throw refuse(p, 'it ends with a lone backslash');
    const inClass = this.inClass;
    switch (c) {
      case 's':
        return WHITE_SPACE;
      case 'S':
        return NOT_WHITE_SPACE;
      case 'd':
        return '\\p{Nd}';
      case 'D':
        return '\\P{Nd}';
      case 'w':
        return inClass ? WORD_CHARS : `[${WORD_CHARS}]`;
      case 'W':
        if (inClass) throw refuse(p, 'it uses \\W inside a character class');
        return `[^${WORD_CHARS}]`;
      case 'n':
      case 'r':
      case 't':
      case 'f':
      case 'v':
        return '\\' + c;
      case 'p':
      case 'P':
        return this.property(c);
      case 'x':
        return this.hexEscape();
      case 'u': {
        const hex = p.slice(this.pos, this.pos + 4);
        if (!/^[0-9A-Fa-f]{4}$/.test(hex)) throw refuse(p, 'it has a malformed \\u escape');
        this.pos += 4;
        return '\\u' + hex;
      }
      default:
        if (/[0-9A-Za-z]/.test(c)) throw refuse(p, `it uses the escape \\${c}, which is not supported`);
        return this.literal(c);
    }
  }

  /** `\p{Name}` / `\P{Name}`: general categories and binary properties as they are, scripts as `Script=Name`. */
  private property(kind: 'p' | 'P'): string {
    const p = this.pattern;
    const close = p.indexOf('}', this.pos);
    if (p[this.pos] !== '{' || close === -1) throw refuse(p, `it has a \\${kind} without {name}`);
    let name = p.slice(this.pos + 1, close);
    this.pos = close + 1;
    let negated = kind === 'P';
    if (name.startsWith('^')) {
      negated = !negated;
      name = name.slice(1);
    }
    if (!/^[A-Za-z_]+$/.test(name)) throw refuse(p, `it uses the Unicode property {${name}}, which is not supported`);
    const letter = negated ? 'P' : 'p';
    for (const candidate of [name, `Script=${name}`]) {
      const source = `\\${letter}{${candidate}}`;
      try {
        new RegExp(source, 'u');
        return source;
      } catch {
        // Not a property of that kind; try the next.
      }
    }
    throw refuse(p, `it uses the Unicode property {${name}}, which JavaScript does not know`);
  }

  /** `\xHH` or `\x{H…}`. */
  private hexEscape(): string {
    const p = this.pattern;
    const braced = /^\{([0-9A-Fa-f]{1,6})\}/.exec(p.slice(this.pos));
    if (braced !== null) {
      this.pos += braced[0].length;
      return `\\u{${braced[1]}}`;
    }
    const hex = p.slice(this.pos, this.pos + 2);
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw refuse(p, 'it has a malformed \\x escape');
    this.pos += 2;
    return '\\x' + hex;
  }
}

function refuse(pattern: string, why: string): TokenizerError {
  return new TokenizerError(`the pre-tokenizer regex ${JSON.stringify(pattern)} cannot be used: ${why}`);
}
