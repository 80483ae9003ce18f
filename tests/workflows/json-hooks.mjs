// @actions/workflow-parser imports its JSON schemas without an import attribute (it is written
// for bundlers); Node 20 insists on `with { type: "json" }`. This loader hook adds it.
export async function load(url, context, nextLoad) {
  if (url.endsWith(".json")) {
    return nextLoad(url, { ...context, importAttributes: { ...context.importAttributes, type: "json" } });
  }
  return nextLoad(url, context);
}
