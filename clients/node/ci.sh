#!/usr/bin/env bash
# The Node.js package as users install it: `npm pack` of clients/node, the
# tarball installed into fresh `npm init -y` projects, and scripts there
# (CommonJS, ES modules, this package's defineFunction in the product
# page's function shape, the README's examples copied verbatim) reading a
# secret from a real fluxd. (The page's function as printed imports
# @flux/functions: clients/node-functions/ci.sh runs it.)
#
# Run from the repository root:  bash clients/node/ci.sh
#
# Needs node and npm (else it prints SKIPPED and exits 0), the npm registry
# for the TypeScript check only (else that check is SKIPPED), and fluxd and
# fluxctl: from $FLUX_BIN_DIR, else target/debug, built here with
# `cargo build -p fluxd -p fluxctl` when cargo is present. FLUX_CI_NODE
# names another node binary to run the scripts with (npm still uses the
# machine's). No secret value is ever printed: scripts print its length and
# SHA-256, which this script compares.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
pkg=$repo/clients/node

skip_all() {
  echo "SKIPPED: node package checks: $*" >&2
  echo "SKIPPED: node package checks: $*"
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
work=$(mktemp -d /tmp/fxci.XXXXXX)
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
"$bin/fluxctl" projects create ci >/dev/null
# A fresh random value, given on stdin (never on a command line or printed).
secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf %s "$secret" | "$bin/fluxctl" secrets set OPENAI_API_KEY --project ci >/dev/null
want_len=${#secret}
want_sha=$(printf %s "$secret" | sha256sum | cut -d' ' -f1)
unset secret
export FLUX_SECRETS_SOCKET=$work/run/projects/ci.sock
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
digest="OPENAI_API_KEY $want_len $want_sha"

echo "::: npm pack"
(cd "$pkg" && npm pack --silent --pack-destination "$work" >/dev/null)
tarball=$(echo "$work"/flux-secrets-*.tgz)
[[ -f $tarball ]] || { echo "FAIL: npm pack made no tarball" >&2; exit 1; }
echo "$(basename "$tarball"): $(tar -tzf "$tarball" | sed 's#^package/##' | sort | tr '\n' ' ')"

# new_project DIR: a default `npm init -y` project with the tarball installed.
new_project() {
  mkdir -p "$1"
  (cd "$1" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$tarball" >/dev/null)
}

# A script body shared by the CommonJS and ES module checks: reads the
# secret, prints its name, length and SHA-256.
read_body='
const value = await secrets.get("OPENAI_API_KEY");
const fallback = await secrets.get("NOT_SET_ANYWHERE", "fallback");
const sha = createHash("sha256").update(value).digest("hex");
console.log(`OPENAI_API_KEY ${value.length} ${sha}`);
if (fallback !== "fallback") throw new Error("fallback not applied");'

echo "::: CommonJS: a default npm init -y project"
cjs=$work/cjs
new_project "$cjs"
cat >"$cjs/read.js" <<EOF
const { createHash } = require("node:crypto");
const { createSecrets } = require("@flux/secrets");
const secrets = createSecrets();
(async () => {$read_body
})().catch((err) => {
  console.error(\`\${err.name} [\${err.code}]: \${err.message}\`);
  process.exitCode = 1;
});
EOF
cat >"$cjs/call_openai.js" <<'EOF'
const { createHash } = require("node:crypto");
const { defineFunction } = require("@flux/secrets");
module.exports = defineFunction({
  name: "call_openai",
  handler: async ({ input, ctx }) => {
    const apiKey = await ctx.secrets.get("OPENAI_API_KEY");
    return `${input.name} ${apiKey.length} ${createHash("sha256").update(apiKey).digest("hex")}`;
  },
});
EOF
cat >"$cjs/run.js" <<'EOF'
const fn = require("./call_openai.js");
fn.invoke({ name: "OPENAI_API_KEY" }).then(console.log, (err) => {
  console.error(`${err.name} [${err.code}]: ${err.message}`);
  process.exitCode = 1;
});
EOF
# import and require in one process: one module instance, one shared client.
cat >"$cjs/one-instance.mjs" <<'EOF'
import { createRequire } from "node:module";
const required = createRequire(import.meta.url)("@flux/secrets");
const imported = await import("@flux/secrets");
const keys = Object.keys(required).sort();
if (keys.join() !== Object.keys(imported).sort().join()) throw new Error("different export lists");
for (const k of keys) if (imported[k] !== required[k]) throw new Error(`${k}: two copies`);
const seen = [];
const grab = ({ ctx }) => seen.push(ctx.secrets);
await required.defineFunction({ name: "a", handler: grab }).invoke();
await imported.defineFunction({ name: "b", handler: grab }).invoke();
if (seen[0] !== seen[1]) throw new Error("two shared clients");
const err = await imported.createSecrets().get("NOPE").catch((e) => e);
if (!(err instanceof required.SecretNotFoundError)) throw new Error("error classes differ");
console.log(`one instance, ${keys.length} exports`);
EOF
check "require() in a .js file" "$digest" "$NODE" "$cjs/read.js"
if "$NODE" --no-experimental-require-module -e 0 >/dev/null 2>&1; then
  check "require() with --no-experimental-require-module (no require(esm))" "$digest" \
    "$NODE" --no-experimental-require-module "$cjs/read.js"
  check "defineFunction from CommonJS, without require(esm)" "$digest" \
    "$NODE" --no-experimental-require-module "$cjs/run.js"
else
  echo "     (node $node_version has no --no-experimental-require-module flag: it has no require(esm) to turn off)"
  check "defineFunction from CommonJS" "$digest" "$NODE" "$cjs/run.js"
fi
check "import and require share one module instance" "one instance, $("$NODE" -p "Object.keys(require('$pkg/src/index.cjs')).length") exports" \
  "$NODE" "$cjs/one-instance.mjs"

echo "::: ES modules: a project with \"type\": \"module\", and a .mjs file in a default one"
esm=$work/esm
new_project "$esm"
(cd "$esm" && npm pkg set type=module)
cat >"$esm/read.js" <<EOF
import { createHash } from "node:crypto";
import { createSecrets } from "@flux/secrets";
const secrets = createSecrets();$read_body
EOF
cp "$esm/read.js" "$cjs/read.mjs"
# A function in the product page's shape, with this package's
# defineFunction (the page imports @flux/functions).
cat >"$esm/call_openai.js" <<'EOF'
import { createHash } from "node:crypto";
import { defineFunction } from "@flux/secrets";

export default defineFunction({
  name: "call_openai",
  handler: async ({ input, ctx }) => {
    const apiKey = await ctx.secrets.get("OPENAI_API_KEY");
    return `${input.name} ${apiKey.length} ${createHash("sha256").update(apiKey).digest("hex")}`;
  },
});
EOF
cat >"$esm/run.js" <<'EOF'
import fn from "./call_openai.js";
if (fn.name !== "call_openai") throw new Error(`name: ${fn.name}`);
console.log(await fn.invoke({ name: "OPENAI_API_KEY" }, { requestId: "ci-1" }));
EOF
check "import in a type-module project" "$digest" "$NODE" "$esm/read.js"
check "import in a .mjs file of a default project" "$digest" "$NODE" "$cjs/read.mjs"
check "defineFunction of @flux/secrets, in the page's function shape" "$digest" "$NODE" "$esm/run.js"

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
  if (!/^```js$/.test(lines[j] ?? "")) throw new Error(`README.md:${i + 1}: no \`\`\`js block after the marker`);
  const end = lines.indexOf("```", j + 1);
  if (end < 0) throw new Error(`README.md:${j + 1}: unclosed block`);
  fs.writeFileSync(path.join(dir, m[1]), lines.slice(j + 1, end).join("\n") + "\n");
  console.log(m[1]);
}
EOF
extracted=$(tr '\n' ' ' <"$work/extracted")
echo "extracted: $extracted"
readme_line="OPENAI_API_KEY is set ($want_len characters); model: gpt-4o-mini"
for f in index.mjs index.js call_openai.mjs run.mjs; do
  if [[ ! -f $readme/$f ]]; then
    echo "FAIL README.md has no \`<!-- ci.sh: $f -->\` example"
    failed=$((failed + 1))
  fi
done
[[ -f $readme/index.mjs ]] && check "README: node index.mjs" "$readme_line" "$NODE" "$readme/index.mjs"
[[ -f $readme/index.js ]] && check "README: node index.js (CommonJS)" "$readme_line" "$NODE" "$readme/index.js"
[[ -f $readme/run.mjs ]] && check "README: node run.mjs (defineFunction)" \
  "call_openai: {\"model\":\"gpt-4o-mini\",\"keyLength\":$want_len}" "$NODE" "$readme/run.mjs"
# And the failure the README warns about: import in a default project's .js
# (when npm wrote "type": "commonjs"; without a type, newer Node.js guesses).
if [[ -f $readme/index.mjs && $(cd "$readme" && npm pkg get type) != '"commonjs"' ]]; then
  echo "     (this npm's init wrote no \"type\": \"commonjs\"; not checking that import in a .js file fails)"
elif [[ -f $readme/index.mjs ]]; then
  cp "$readme/index.mjs" "$readme/wrong.js"
  if out=$(cd "$readme" && "$NODE" wrong.js 2>&1); then
    echo "FAIL import in a default project's .js file ran; the README says it does not"
    failed=$((failed + 1))
  elif grep -q "Cannot use import statement outside a module" <<<"$out"; then
    echo "ok   import in a default project's .js fails as the README says"
    passed=$((passed + 1))
  else
    echo "FAIL import in a default project's .js failed otherwise:"
    sed 's/^/     /' <<<"$out" | head -5
    failed=$((failed + 1))
  fi
fi

echo "::: TypeScript: the types for import and for require"
ts=$work/ts
new_project "$ts"
if (cd "$ts" && npm install --silent --no-audit --no-fund typescript@5.9.3 >/dev/null 2>"$work/npm-ts.log"); then
  cat >"$ts/check.mts" <<'EOF'
import { createSecrets, defineFunction, FluxSecretsError, UntrustedSocketError } from "@flux/secrets";
import type { FluxSecrets, FunctionContext } from "@flux/secrets";
const s: FluxSecrets = createSecrets({ socketPath: "/tmp/x.sock" });
const v: Promise<string> = s.get("A");
const w: Promise<string | number> = s.get("A", 1);
const fn = defineFunction({
  name: "call_openai",
  handler: async ({ input, ctx }) => {
    const apiKey = await ctx.secrets.get("OPENAI_API_KEY");
    return { keyLength: apiKey.length, input };
  },
});
const r: Promise<{ keyLength: number; input: unknown }> = fn.invoke({ prompt: "x" }, { requestId: "r" });
const ctx: FunctionContext = { secrets: s, requestId: "x" };
declare const e: unknown;
if (e instanceof UntrustedSocketError) {
  const why: "not_a_socket" | "untrusted_owner" | "writable_folder" = e.reason;
  const p: string = e.path;
}
if (e instanceof FluxSecretsError && e.code === "unavailable") {}
// @ts-expect-error: a function needs a name
defineFunction({ handler: async () => 1 });
export { v, w, r, ctx };
EOF
  sed -e 's#^import { \(.*\) } from "@flux/secrets";#import flux = require("@flux/secrets");\nconst { \1 } = flux;#' \
    -e 's#^import type { FluxSecrets, FunctionContext } from "@flux/secrets";#type FluxSecrets = flux.FluxSecrets;\ntype FunctionContext = flux.FunctionContext;#' \
    "$ts/check.mts" >"$ts/check.cts"
  cp "$ts/check.mts" "$ts/check.ts"
  tsc() { (cd "$ts" && "$NODE" node_modules/typescript/bin/tsc --noEmit --strict "$@"); }
  check "tsc: import (.mts) and require (.cts), node16" "" tsc --module node16 --moduleResolution node16 check.mts check.cts
  check "tsc: moduleResolution bundler" "" tsc --module esnext --moduleResolution bundler check.ts
  check "tsc: moduleResolution node10" "" tsc --module commonjs --moduleResolution node10 check.ts
else
  echo "SKIPPED: TypeScript checks: npm install typescript failed (is the npm registry reachable?):"
  sed 's/^/     /' "$work/npm-ts.log" | tail -5
fi

echo "::: node package: $passed passed, $failed failed"
echo "$passed passed, $failed failed"
((failed == 0))
