// Python's str.strip()/lstrip()/rstrip() without arguments. Python's whitespace set (str.isspace) differs from
// JavaScript's trim(): Python also strips U+001C..U+001F and U+0085; JavaScript also strips U+FEFF.

const PYTHON_WHITESPACE = new Set<number>([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680,
  0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
  0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

/** Python's str.isspace() for one character (all whitespace characters are in the BMP). */
export function isPythonWhitespace(char: string): boolean {
  return char.length === 1 && PYTHON_WHITESPACE.has(char.charCodeAt(0));
}

export function pythonLstrip(text: string): string {
  let start = 0;
  while (start < text.length && PYTHON_WHITESPACE.has(text.charCodeAt(start))) start++;
  return text.slice(start);
}

export function pythonRstrip(text: string): string {
  let end = text.length;
  while (end > 0 && PYTHON_WHITESPACE.has(text.charCodeAt(end - 1))) end--;
  return text.slice(0, end);
}

export function pythonStrip(text: string): string {
  return pythonRstrip(pythonLstrip(text));
}

/** Python's str.strip/lstrip/rstrip(chars): removes any of the characters (code points) in `chars` from the ends. */
export function pythonStripChars(text: string, chars: string, side: 'both' | 'left' | 'right'): string {
  const set = new Set(chars);
  const units = [...text];
  let start = 0;
  let end = units.length;
  if (side !== 'right') while (start < end && set.has(units[start]!)) start++;
  if (side !== 'left') while (end > start && set.has(units[end - 1]!)) end--;
  return units.slice(start, end).join('');
}
