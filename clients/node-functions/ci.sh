#!/usr/bin/env bash
# @flux/functions as users install it: `npm pack` of clients/node
# (@flux/secrets) and clients/node-functions (@flux/functions), both
# tarballs installed together into fresh `npm init -y` projects with
# `npm install --offline` (neither package is published), and there:
#
# - the product page's function, copied from the page
#   (/work/shared/seed/flux-secrets.md, or FLUX_SEED_PAGE) byte for byte,
#   invoked against a real fluxd with its fetch answered locally: the
#   secret must reach the Authorization header;
# - the same function from CommonJS, without require(esm);
# - this package's README examples marked `<!-- ci.sh: FILE -->`, verbatim;
# - `tsc --strict --noEmit` on the page's function and on the types
#   (TypeScript 5.9 and @types/node from npm: SKIPPED when npm cannot
#   reach the registry).
#
# Run from the repository root:  bash clients/node-functions/ci.sh
#
# Needs node and npm (else SKIPPED, exit 0), and fluxd and fluxctl: from
# $FLUX_BIN_DIR, else target/debug, built here with
# `cargo build -p fluxd -p fluxctl` when cargo is present. Without the
# product page, the checks of its example print SKIPPED. No secret value is
# ever printed: scripts print its length and SHA-256, which this script
# compares.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
pkg=$repo/clients/node-functions
secrets_pkg=$repo/clients/node

skip_all() {
  echo "SKIPPED: @flux/functions package checks: $*" >&2
  echo "SKIPPED: @flux/functions package checks: $*"
  exit 0
}

command -v node >/dev/null 2>&1 || skip_all "node is not installed"
command -v npm >/dev/null 2>&1 || skip_all "npm is not installed"
NODE=${FLUX_CI_NODE:-$(command -v node)}
node_version=$("$NODE" -p 'process.versions.node')
min_major=$(node -p "require('$pkg/package.json').engines.node.match(/^>=(\\d+)/)[1]")
if ((${node_version%%.*} < min_major)); then
  skip_all "node $node_version is older than the package's engines (>=$min_major)"
fi
echo "::: node $node_version ($NODE), npm $(npm --version)"

# ------------------------------------------------------------ fluxd, fluxctl
if [[ -n ${FLUX_BIN_DIR:-} ]]; then
  bin=$FLUX_BIN_DIR
else
  bin=$repo/target/debug
  if command -v cargo >/dev/null 2>&1; then
    echo "::: cargo build -p fluxd -p fluxctl"
    cargo build -q -p fluxd -p fluxctl
  fi
fi
for b in fluxd fluxctl; do
  [[ -x $bin/$b ]] || { echo "FAIL: $bin/$b is missing: run cargo build -p fluxd -p fluxctl" >&2; exit 1; }
done

# Short: Unix socket paths are limited to 107 bytes.
work=$(mktemp -d /tmp/fxfci.XXXXXX)
fluxd_pid=
cleanup() {
  if [[ -n $fluxd_pid ]] && kill -0 "$fluxd_pid" 2>/dev/null; then
    kill -TERM "$fluxd_pid" 2>/dev/null || true
    wait "$fluxd_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export FLUX_RUNTIME_DIR=$work/run
"$bin/fluxd" --state-dir "$work/state" --runtime-dir "$work/run" 2>"$work/fluxd.log" &
fluxd_pid=$!
for ((i = 0; ; i++)); do
  if ! kill -0 "$fluxd_pid" 2>/dev/null; then
    echo "FAIL: fluxd exited before it was ready:" >&2
    cat "$work/fluxd.log" >&2
    exit 1
  fi
  [[ -S $work/run/control.sock ]] && "$bin/fluxctl" status >/dev/null 2>&1 && break
  if ((i >= 200)); then
    echo "FAIL: fluxd not ready after 20 s:" >&2
    cat "$work/fluxd.log" >&2
    exit 1
  fi
  sleep 0.1
done
"$bin/fluxctl" projects create my-app >/dev/null
# A fresh random value, given on stdin (never on a command line or printed).
secret=sk-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf %s "$secret" | "$bin/fluxctl" secrets set OPENAI_API_KEY --project my-app >/dev/null
want_len=${#secret}
want_sha=$(printf %s "$secret" | sha256sum | cut -d' ' -f1)
unset secret
export FLUX_SECRETS_SOCKET=$work/run/projects/my-app.sock
echo "::: fluxd running; FLUX_SECRETS_SOCKET=$FLUX_SECRETS_SOCKET"

# ------------------------------------------------------------------- checks
passed=0
failed=0
# check NAME EXPECTED_OUTPUT COMMAND...: runs COMMAND, compares its stdout.
check() {
  local name=$1 want=$2 out status=0
  shift 2
  out=$("$@" 2>"$work/stderr") || status=$?
  if [[ $status -eq 0 && $out == "$want" ]]; then
    echo "ok   $name"
    passed=$((passed + 1))
  else
    echo "FAIL $name (exit $status)"
    echo "     expected: $want"
    echo "     got:      $out"
    sed 's/^/     stderr: /' "$work/stderr"
    failed=$((failed + 1))
  fi
}
fail() {
  echo "FAIL $*"
  failed=$((failed + 1))
}

echo "::: npm pack (@flux/secrets, @flux/functions)"
(cd "$secrets_pkg" && npm pack --silent --pack-destination "$work" >/dev/null)
(cd "$pkg" && npm pack --silent --pack-destination "$work" >/dev/null)
secrets_tgz=$(echo "$work"/flux-secrets-*.tgz)
functions_tgz=$(echo "$work"/flux-functions-*.tgz)
for t in "$secrets_tgz" "$functions_tgz"; do
  [[ -f $t ]] || { echo "FAIL: npm pack made no tarball ($t)" >&2; exit 1; }
done
echo "$(basename "$functions_tgz"): $(tar -tzf "$functions_tgz" | sed 's#^package/##' | sort | tr '\n' ' ')"

# new_project DIR: a default `npm init -y` project with both tarballs
# installed in one `npm install --offline`: @flux/functions' dependency on
# @flux/secrets must be met by the other tarball, not by the registry.
new_project() {
  mkdir -p "$1"
  (cd "$1" && npm init -y >/dev/null &&
    npm install --silent --no-audit --no-fund --offline "$secrets_tgz" "$functions_tgz" >/dev/null)
}

# The page's example, extracted from the page (SKIPPED without it).
"$NODE" --input-type=module -e '
import { pageExample } from "'"$pkg"'/testing/seed.js";
const ex = pageExample();
if (ex.skipped) { console.log(`SKIPPED: ${ex.skipped}`); process.exit(0); }
process.stdout.write(ex.source);
' >"$work/page.js"
if grep -q '^SKIPPED: ' "$work/page.js"; then
  page_skip=$(cat "$work/page.js")
  echo "$page_skip: the product page's example is not checked" >&2
  echo "$page_skip: the product page's example is not checked"
  page_skip=yes
else
  page_skip=
  echo "::: the product page's example: $(wc -l <"$work/page.js") lines from ${FLUX_SEED_PAGE:-/work/shared/seed/flux-secrets.md}"
fi

# The host: stubs fetch (answers locally, remembers the request), invokes
# the function given as argv[2] with the page's input shape, and prints
# what reached the request: the method, URL, the bearer token's length and
# SHA-256, the model, and the answer's content.
cat >"$work/host.mjs" <<'EOF'
import { createHash } from "node:crypto";
import path from "node:path";
import { pathToFileURL } from "node:url";
const calls = [];
globalThis.fetch = async (url, init) => {
  calls.push({ url: String(url), init });
  const reply = { choices: [{ message: { role: "assistant", content: "Hello!" } }] };
  return new Response(JSON.stringify(reply), { headers: { "content-type": "application/json" } });
};
const mod = await import(pathToFileURL(path.resolve(process.argv[2])).href);
const fn = mod.default ?? mod;
const out = await fn.invoke({ messages: [{ role: "user", content: "Say hello." }] });
if (calls.length !== 1) throw new Error(`${calls.length} fetch calls`);
const { url, init } = calls[0];
const token = init.headers.Authorization.replace(/^Bearer /, "");
const body = JSON.parse(init.body);
console.log(`${fn.name} ${init.method} ${url}`);
console.log(`Bearer OPENAI_API_KEY ${token.length} ${createHash("sha256").update(token).digest("hex")}`);
console.log(`${body.model} ${out.choices[0].message.content}`);
EOF
page_out="call_openai POST https://api.openai.com/v1/chat/completions
Bearer OPENAI_API_KEY $want_len $want_sha
gpt-4o Hello!"

echo "::: ES modules: the page's function in a default project's .mjs and a type-module project's .js"
esm=$work/esm
new_project "$esm"
if [[ -z $page_skip ]]; then
  cp "$work/page.js" "$esm/call_openai.mjs"
  check "the page's function, as printed, from .mjs" "$page_out" "$NODE" "$work/host.mjs" "$esm/call_openai.mjs"
  mod=$work/mod
  new_project "$mod"
  (cd "$mod" && npm pkg set type=module)
  cp "$work/page.js" "$mod/call_openai.js"
  check "the page's function, as printed, from .js with \"type\": \"module\"" "$page_out" \
    "$NODE" "$work/host.mjs" "$mod/call_openai.js"
  cmp -s "$work/page.js" "$esm/call_openai.mjs" || fail "the page's function was changed on the way"
fi

echo "::: CommonJS: the same function with require, without require(esm)"
cat >"$esm/call_openai.cjs" <<'EOF'
const { defineFunction } = require("@flux/functions");
module.exports = defineFunction({
  name: "call_openai",
  handler: async ({ input, ctx }) => {
    const apiKey = await ctx.secrets.get("OPENAI_API_KEY");
    const res = await fetch("https://api.openai.com/v1/chat/completions", {
      method: "POST",
      headers: { "Authorization": `Bearer ${apiKey}`, "Content-Type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o", messages: input.messages }),
    });
    return res.json();
  },
});
EOF
if "$NODE" --no-experimental-require-module -e 0 >/dev/null 2>&1; then
  check "require() with --no-experimental-require-module" "$page_out" \
    "$NODE" --no-experimental-require-module "$work/host.mjs" "$esm/call_openai.cjs"
else
  check "require()" "$page_out" "$NODE" "$work/host.mjs" "$esm/call_openai.cjs"
fi
cat >"$esm/one-instance.mjs" <<'EOF'
import { createRequire } from "node:module";
const required = createRequire(import.meta.url)("@flux/functions");
const imported = await import("@flux/functions");
const secrets = await import("@flux/secrets");
for (const k of Object.keys(required)) if (imported[k] !== required[k]) throw new Error(`${k}: two copies`);
if (imported.SecretNotFoundError !== secrets.SecretNotFoundError) throw new Error("two @flux/secrets");
const grab = ({ ctx }) => ctx.secrets;
const a = await required.defineFunction({ name: "a", handler: grab }).invoke();
const b = await imported.defineFunction({ name: "b", handler: grab }).invoke();
if (a !== b) throw new Error("two shared clients");
console.log("one instance");
EOF
check "import and require share one module instance and one client" "one instance" "$NODE" "$esm/one-instance.mjs"

echo "::: errors a host sees"
cat >"$esm/errors.mjs" <<'EOF'
import { defineFunction } from "@flux/functions";
try {
  defineFunction({ name: "call_openai" });
} catch (e) {
  console.log(`${e.name}: ${e.message}`);
}
delete process.env.FLUX_SECRETS_SOCKET;
delete process.env.FLUX_PROJECT;
const fn = defineFunction({ name: "call_openai", handler: ({ ctx }) => ctx.secrets.get("OPENAI_API_KEY") });
await fn.invoke({}).catch((e) => console.log(`${e.code}: ${e.message.split(":")[0]}`));
EOF
check "a missing handler, and no socket configured" "TypeError: defineFunction: function call_openai has no handler: add handler: async ({ input, ctx }) => { ... }
not_configured: function call_openai read ctx.secrets, but FLUX_SECRETS_SOCKET is not set" \
  "$NODE" "$esm/errors.mjs"

echo "::: the README's examples, copied verbatim into a default npm init -y project"
readme=$work/readme
new_project "$readme"
# Each ```js block right after a `<!-- ci.sh: FILE -->` line of the README.
"$NODE" - "$pkg/README.md" "$readme" >"$work/extracted" <<'EOF'
const fs = require("node:fs");
const path = require("node:path");
const [readme, dir] = process.argv.slice(2);
const lines = fs.readFileSync(readme, "utf8").split("\n");
for (let i = 0; i < lines.length; i++) {
  const m = /^<!-- ci\.sh: (\S+) -->$/.exec(lines[i]);
  if (!m) continue;
  let j = i + 1;
  while (j < lines.length && lines[j].trim() === "") j++;
  if (!/^```(js|ts)$/.test(lines[j] ?? "")) throw new Error(`README.md:${i + 1}: no \`\`\`js block after the marker`);
  const end = lines.indexOf("```", j + 1);
  if (end < 0) throw new Error(`README.md:${j + 1}: unclosed block`);
  fs.writeFileSync(path.join(dir, m[1]), lines.slice(j + 1, end).join("\n") + "\n");
  console.log(m[1]);
}
EOF
echo "extracted: $(tr '\n' ' ' <"$work/extracted")"
for f in call_openai.mjs host.mjs chat.mts; do
  [[ -f $readme/$f ]] || fail "README.md has no \`<!-- ci.sh: $f -->\` example"
done
if [[ -f $readme/host.mjs ]]; then
  check "README: node host.mjs" "call_openai: {\"model\":\"gpt-4o-mini\",\"keyLength\":$want_len,\"region\":\"eu-west-1\"}" \
    env AWS_REGION=eu-west-1 "$NODE" "$readme/host.mjs"
fi

echo "::: TypeScript: tsc --strict --noEmit"
ts=$work/ts
new_project "$ts"
if (cd "$ts" && npm install --silent --no-audit --no-fund typescript@5.9.3 @types/node@20 >/dev/null 2>"$work/npm-ts.log"); then
  tsc() { (cd "$ts" && "$NODE" node_modules/typescript/bin/tsc --noEmit --strict --target es2022 --types node "$@"); }
  if [[ -z $page_skip ]]; then
    cp "$work/page.js" "$ts/page.mts"
    cp "$work/page.js" "$ts/page.ts"
    check "tsc: the page's function (.mts, node16)" "" tsc --module node16 --moduleResolution node16 page.mts
    check "tsc: the page's function (bundler)" "" tsc --module esnext --moduleResolution bundler page.ts
    # And why the default matters: with `input: unknown` the page does not compile.
    sed 's/^handler: async ({ input, ctx }) => {$/handler: async ({ input, ctx }: { input: unknown; ctx: FunctionContext }) => {/; 1s/^import { defineFunction }/import { defineFunction, type FunctionContext }/' \
      "$work/page.js" >"$ts/unknown.mts"
    if out=$(tsc --module node16 --moduleResolution node16 unknown.mts 2>&1); then
      fail "tsc accepted input.messages with input: unknown (the check above proves nothing)"
    elif grep -q "TS18046" <<<"$out"; then
      echo "ok   tsc: with input: unknown the page's function fails with TS18046, as expected"
      passed=$((passed + 1))
    else
      fail "tsc on the unknown-input variant failed otherwise: $(head -3 <<<"$out")"
    fi
  fi
  [[ -f $readme/chat.mts ]] && cp "$readme/chat.mts" "$ts/chat.mts"
  cat >"$ts/types.mts" <<'EOF'
import { defineFunction, FluxSecretsError, SecretNotFoundError } from "@flux/functions";
import type { FluxFunction, FunctionContext, FunctionEnv } from "@flux/functions";

// The default: input is whatever JSON the host passes.
const loose = defineFunction({
  name: "loose",
  handler: async ({ input, ctx }) => {
    const key: string = await ctx.secrets.get("OPENAI_API_KEY");
    const region: string = await ctx.secrets.get("AWS_REGION", "us-east-1");
    const maybe: string | null = await ctx.secrets.get("X", null);
    const tier: string | undefined = ctx.env.TIER;
    return { n: input.messages.length as number, key: key.length, region, maybe, tier };
  },
});
const r1: Promise<{ n: number; key: number; region: string; maybe: string | null; tier: string | undefined }> =
  loose.invoke({ messages: [] });
loose.invoke(42);

// A typed input, inferred from the handler's annotation.
interface Chat { messages: { role: "user" | "assistant"; content: string }[] }
const typed = defineFunction({
  name: "typed",
  handler: async ({ input }: { input: Chat; ctx: FunctionContext }) => input.messages.length,
});
const r2: Promise<number> = typed.invoke({ messages: [{ role: "user", content: "hi" }] });
// @ts-expect-error: a typed function takes only its input type
typed.invoke({ prompt: "hi" });

// Or given explicitly.
const explicit: FluxFunction<Chat> = defineFunction<Chat>({
  name: "explicit",
  handler: ({ input }) => input.messages[0]?.content,
});
// @ts-expect-error: input is a Chat
defineFunction<Chat>({ name: "bad", handler: ({ input }) => input.prompt });

// A host's own pieces.
const env: FunctionEnv = { TIER: "free" };
const r3 = loose.invoke({ messages: [] }, { requestId: "r-1", env });
// @ts-expect-error: env values are strings
loose.invoke({}, { env: { N: 1 } });
// @ts-expect-error: a function needs a name
defineFunction({ handler: async () => 1 });
// @ts-expect-error: a definition has only name and handler
defineFunction({ name: "f", handler: async () => 1, timeout: 5 });

declare const e: unknown;
if (e instanceof SecretNotFoundError) { const k: string = e.key; }
if (e instanceof FluxSecretsError && e.code === "not_configured") {}
export { r1, r2, r3, explicit };
EOF
  sed -e 's#^import { defineFunction, FluxSecretsError, SecretNotFoundError } from "@flux/functions";#import fx = require("@flux/functions");\nconst { defineFunction, FluxSecretsError, SecretNotFoundError } = fx;#' \
    -e 's#^import type { FluxFunction, FunctionContext, FunctionEnv } from "@flux/functions";#type FluxFunction<I = any, O = unknown> = fx.FluxFunction<I, O>;\ntype FunctionContext = fx.FunctionContext;\ntype FunctionEnv = fx.FunctionEnv;#' \
    "$ts/types.mts" >"$ts/types.cts"
  cp "$ts/types.mts" "$ts/types.ts"
  ts_files=(types.mts types.cts)
  [[ -f $ts/chat.mts ]] && ts_files+=(chat.mts)
  check "tsc: the types, import (.mts) and require (.cts), node16" "" \
    tsc --module node16 --moduleResolution node16 "${ts_files[@]}"
  check "tsc: the types, moduleResolution bundler" "" tsc --module esnext --moduleResolution bundler types.ts
  check "tsc: the types, moduleResolution node10" "" tsc --module commonjs --moduleResolution node10 types.ts
else
  echo "SKIPPED: TypeScript checks: npm install typescript @types/node failed (is the npm registry reachable?):" >&2
  echo "SKIPPED: TypeScript checks: npm install typescript @types/node failed (is the npm registry reachable?):"
  sed 's/^/     /' "$work/npm-ts.log" | tail -5
fi

echo "::: @flux/functions package: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
((failed == 0))
