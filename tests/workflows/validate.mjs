// Validates GitHub Actions workflow files against GitHub's workflow schema with
// @actions/workflow-parser (the parser behind GitHub's own workflow language services): parsing
// reports schema errors, then conversion reports semantic ones (bad `needs`, inputs, cron, ...).
//
// Usage: node validate.mjs FILE...   Prints "ok FILE" per valid file and every error as
// "FILE: message"; exits 1 when any file has an error, 2 on a usage error.
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { register } from "node:module";

// The parser imports its JSON schemas the bundler way; json-hooks.mjs makes Node 20 accept that.
register("./json-hooks.mjs", import.meta.url);
const { NoOperationTraceWriter, convertWorkflowTemplate, parseWorkflow } = await import(
  "@actions/workflow-parser"
);

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node validate.mjs FILE...");
  process.exit(2);
}

let failed = false;
for (const path of files) {
  const content = readFileSync(path, "utf8");
  const parsed = parseWorkflow({ name: basename(path), content }, new NoOperationTraceWriter());
  const errors = [...parsed.context.errors.getErrors()];
  if (errors.length === 0 && parsed.value !== undefined) {
    const template = await convertWorkflowTemplate(parsed.context, parsed.value);
    errors.push(...(template.errors ?? []).map((error) => ({ message: error.Message ?? String(error) })));
  } else if (parsed.value === undefined && errors.length === 0) {
    errors.push({ message: "the file holds no workflow" });
  }
  for (const error of errors) {
    console.error(`${path}: ${error.message ?? error.Message ?? String(error)}`);
  }
  if (errors.length > 0) {
    failed = true;
  } else {
    console.log(`ok ${path}`);
  }
}
process.exit(failed ? 1 : 0);
