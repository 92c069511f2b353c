// Coverage instrumentation of compiled JavaScript for the fuzzer: a counter increment at the start of every function
// body and of every branch (if/else, including the implicit else, loop bodies, switch cases, catch/finally, both arms
// of `?:`, the right side of `&&`, `||`, `??` and their assignments). The edits are text insertions without line
// breaks, so every line keeps its number and stack traces still point at the right line.
//
//   if (a) b();            →  if (a) {__fuzzHits[1]++;b();} else {__fuzzHits[2]++;}
//   x = a ? b : c          →  x = a ? (__fuzzHits[3]++, b) : (__fuzzHits[4]++, c)
//
// TypeScript's parser (a devDependency already) reads the source; nothing is reprinted.

import ts from 'typescript';

export const COUNTERS = '__fuzzHits';

/** A counter: where it sits in the original source, and whether it counts calls of a function. */
export interface CounterSite {
  offset: number;
  isFunction: boolean;
}

interface Edit {
  pos: number;
  text: string;
  /** Closers go before openers at one position; inner closers first, outer openers first. */
  closing: boolean;
  depth: number;
}

/** The instrumented source and its counter sites (counter i is `__fuzzHits[i]`). */
export function instrument(source: string, fileName: string): { code: string; sites: CounterSite[] } {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const edits: Edit[] = [];
  const sites: CounterSite[] = [];
  const counter = (offset: number, isFunction = false) => {
    sites.push({ offset, isFunction });
    return `${COUNTERS}[${sites.length - 1}]++`;
  };
  const startOf = (node: ts.Node) => node.getStart(file);

  /** Counts at the start of a block, or wraps a single statement in a block that counts. */
  const countStatement = (statement: ts.Statement, depth: number) => {
    if (ts.isBlock(statement)) {
      edits.push({ pos: startOf(statement) + 1, text: `${counter(startOf(statement))};`, closing: false, depth: depth + 1 });
    } else {
      edits.push({ pos: startOf(statement), text: `{${counter(startOf(statement))};`, closing: false, depth: depth - 0.5 });
      edits.push({ pos: statement.end, text: '}', closing: true, depth: depth - 0.5 });
    }
  };
  /** Wraps an expression as `(count, expression)`. */
  const countExpression = (expression: ts.Expression, depth: number, isFunction = false) => {
    edits.push({ pos: startOf(expression), text: `(${counter(startOf(expression), isFunction)}, `, closing: false, depth: depth - 0.5 });
    edits.push({ pos: expression.end, text: ')', closing: true, depth: depth - 0.5 });
  };

  const visit = (node: ts.Node, depth: number): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const body = node.body as ts.Node;
      if (ts.isBlock(body)) {
        edits.push({ pos: startOf(body) + 1, text: `${counter(startOf(node), true)};`, closing: false, depth: depth + 2 });
      } else if (ts.isArrowFunction(node)) {
        countExpression(body as ts.Expression, depth + 1, true);
      }
    } else if (ts.isIfStatement(node)) {
      countStatement(node.thenStatement, depth + 1);
      if (node.elseStatement) countStatement(node.elseStatement, depth + 1);
      else edits.push({ pos: node.end, text: ` else {${counter(node.end)};}`, closing: true, depth });
    } else if (ts.isIterationStatement(node, false)) {
      countStatement(node.statement, depth + 1);
    } else if (ts.isCaseClause(node) || ts.isDefaultClause(node)) {
      const first = node.statements[0];
      if (first) edits.push({ pos: startOf(first), text: `${counter(startOf(first))};`, closing: false, depth: depth - 0.5 });
    } else if (ts.isCatchClause(node)) {
      countStatement(node.block, depth + 1);
    } else if (ts.isTryStatement(node) && node.finallyBlock) {
      countStatement(node.finallyBlock, depth + 1);
    } else if (ts.isConditionalExpression(node)) {
      countExpression(node.whenTrue, depth + 1);
      countExpression(node.whenFalse, depth + 1);
    } else if (ts.isBinaryExpression(node) && LOGICAL_OPERATORS.has(node.operatorToken.kind)) {
      countExpression(node.right, depth + 1);
    }
    ts.forEachChild(node, (child) => visit(child, depth + 1));
  };
  visit(file, 0);

  edits.sort((a, b) => {
    if (a.pos !== b.pos) return a.pos - b.pos;
    if (a.closing !== b.closing) return a.closing ? -1 : 1;
    return a.closing ? b.depth - a.depth : a.depth - b.depth;
  });
  let code = '';
  let at = 0;
  for (const edit of edits) {
    code += source.slice(at, edit.pos) + edit.text;
    at = edit.pos;
  }
  code += source.slice(at);
  return { code, sites };
}

const LOGICAL_OPERATORS = new Set<ts.SyntaxKind>([
  ts.SyntaxKind.AmpersandAmpersandToken, ts.SyntaxKind.BarBarToken, ts.SyntaxKind.QuestionQuestionToken,
  ts.SyntaxKind.AmpersandAmpersandEqualsToken, ts.SyntaxKind.BarBarEqualsToken, ts.SyntaxKind.QuestionQuestionEqualsToken,
]);
