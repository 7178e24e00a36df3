// The product page's function example, taken from the page itself
// (FLUX_SEED_PAGE, else /work/shared/seed/flux-secrets.md), so the tests run
// the code the page prints, byte for byte.
//
// The page is prose with code in it, fenced or not. The example is the
// ```js block holding `from "@flux/functions"` when there is one; else it
// runs from the line that imports "@flux/functions" to the line that ends
// the `defineFunction(` call, found by matching brackets while skipping
// strings, template literals and comments.

import fs from 'node:fs';

export const SEED_PAGE = process.env.FLUX_SEED_PAGE || '/work/shared/seed/flux-secrets.md';

const IMPORT_RE = /^\s*import\s*\{\s*defineFunction\s*\}\s*from\s*["']@flux\/functions["'];?\s*$/;

/**
 * Where the bracket depth returns to zero after the first bracket in
 * `text`: the index just past it, or -1 when it never does.
 */
function balancedEnd(text, from) {
  const stack = [];
  let started = false;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (top === '`') {
      if (c === '\\') i++;
      else if (c === '`') stack.pop();
      else if (c === '$' && text[i + 1] === '{') {
        stack.push('${');
        i++;
      }
      continue;
    }
    if (c === '"' || c === "'") {
      for (i++; i < text.length && text[i] !== c; i++) if (text[i] === '\\') i++;
      continue;
    }
    if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      i = text.indexOf('*/', i + 2);
      if (i < 0) return -1;
      i++;
      continue;
    }
    if (c === '`') stack.push('`');
    else if (c === '(' || c === '[' || c === '{') {
      stack.push(c);
      started = true;
    } else if (c === ')' || c === ']' || c === '}') {
      stack.pop();
      if (started && stack.length === 0) return i + 1;
    }
  }
  return -1;
}

/**
 * The example's source, or `{ skipped: why }` when the page is missing. Throws
 * when the page is there but holds no such example (a page change to look at).
 */
export function pageExample(file = SEED_PAGE) {
  let page;
  try {
    page = fs.readFileSync(file, 'utf8');
  } catch (err) {
    return { skipped: `the product page ${file} cannot be read (${err.code}): set FLUX_SEED_PAGE to it` };
  }
  const fenced = /^```(?:js|javascript|ts|typescript)?[ \t]*\n([\s\S]*?)^```[ \t]*$/gm;
  for (const m of page.matchAll(fenced)) {
    if (m[1].split('\n').some((l) => IMPORT_RE.test(l))) return { source: m[1], file };
  }
  const lines = page.split('\n');
  const start = lines.findIndex((l) => IMPORT_RE.test(l));
  if (start < 0) throw new Error(`${file}: no line imports defineFunction from "@flux/functions"`);
  const rest = lines.slice(start).join('\n');
  const call = rest.indexOf('defineFunction(', lines[start].length);
  if (call < 0) throw new Error(`${file}:${start + 1}: no defineFunction( call after the import`);
  let end = balancedEnd(rest, call);
  if (end < 0) throw new Error(`${file}:${start + 1}: the defineFunction( call never closes`);
  if (rest[end] === ';') end++;
  return { source: `${rest.slice(0, end)}\n`, file, line: start + 1 };
}
